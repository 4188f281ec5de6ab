"""Informed consent (知情同意书) of home nursing, versioned per institution and nursing item or category.

A consent text says what can go wrong (risks), what the nurse will and will not do, and the fees:
the item's price plus the visit fee (出诊费), with the refund rule (once the nurse has left for the
visit, the visit fee is not refunded). Staff publish a new version; it applies to bookings made
after it, never to existing ones (each booking keeps the version it accepted).

Scope: a text for one item (``service:<service_id>``) wins over the text of the item's category
(``category:<category>``). Versions are numbered per (institution, scope) from 1; a unique index
on (institution_id, scope, version) makes two staff publishing at once get different numbers.

The family fetches the current text (``current_for``) and sends its ``version`` with the booking
request; ``accept_for_booking`` refuses an outdated or missing version and returns what the
booking records: the version, its text id, when and by whom it was accepted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.db import declare_indexes
from bot.errors import ApiError, bad_request, not_found

COLLECTION = "consent_texts"

# The rule the national pilot plans ask platforms to state: the visit fee covers the nurse's trip.
NO_REFUND_RULE = ("护士出发前取消，项目费和出诊费全额退还；护士已出发后取消或因家属原因无法服务，"
                  "出诊费不予退还，未实施的项目费全额退还。")

declare_indexes(
    COLLECTION,
    IndexModel([("institution_id", ASCENDING), ("scope", ASCENDING), ("version", ASCENDING)], unique=True,
               name="institution_scope_version"),
)

CONSENT_REQUIRED = ApiError(409, "consent_required",
                            "请先阅读并同意最新版《上门护理服务知情同意书》（consent_version）")
CONSENT_OUTDATED = ApiError(409, "consent_outdated", "知情同意书已更新，请重新阅读并同意最新版本后再预约")
CONSENT_NOT_FOUND = not_found("该服务项目暂无知情同意书", "consent_not_found")


def service_scope(service_id: str) -> str:
    return f"service:{service_id}"


def category_scope(category: str) -> str:
    return f"category:{category}"


def scopes_for(service: dict[str, Any]) -> list[str]:
    """The scopes that may hold the text of ``service``, the most specific first."""
    scopes = [service_scope(service["_id"])]
    if service.get("category"):
        scopes.append(category_scope(service["category"]))
    return scopes


def _money(value: Any) -> Decimal:
    try:
        return Decimal(str(value if value not in (None, "") else "0")).quantize(Decimal("0.01"))
    except InvalidOperation:
        return Decimal("0.00")


def fees(service: dict[str, Any]) -> dict[str, str]:
    """Item price + 出诊费 = total, as the family sees it, with the refund rule."""
    item, visit = _money(service.get("service_fee")), _money(service.get("visit_fee"))
    return {"service_fee": f"{item:.2f}", "visit_fee": f"{visit:.2f}", "total": f"{item + visit:.2f}",
            "summary": f"项目费 {item:.2f} 元 + 出诊费 {visit:.2f} 元 = 合计 {item + visit:.2f} 元",
            "refund_rule": NO_REFUND_RULE}


def _texts(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate the staff-written parts of a consent text."""
    problems: list[str] = []

    def items(name: str, label: str) -> list[str]:
        value = fields.get(name)
        if not isinstance(value, list) or not value or not all(
                isinstance(v, str) and 0 < len(v.strip()) <= 300 for v in value) or len(value) > 30:
            problems.append(f"「{label}」应为 1 到 30 条、每条不超过 300 字")
            return []
        return [v.strip() for v in value]

    out = {"title": fields.get("title") or "上门护理服务知情同意书",
           "risks": items("risks", "风险告知"), "nurse_will": items("nurse_will", "护士将提供的服务"),
           "nurse_will_not": items("nurse_will_not", "护士不提供的服务"),
           "notes": fields.get("notes") or ""}
    if not isinstance(out["title"], str) or len(out["title"]) > 50:
        problems.append("「标题」不超过 50 字")
    if not isinstance(out["notes"], str) or len(out["notes"]) > 1000:
        problems.append("「其他说明」不超过 1000 字")
    if problems:
        raise bad_request("invalid_consent", "知情同意书内容有误：" + "；".join(problems))
    return out


async def publish(db: AsyncDatabase, institution_id: str, scope: str, fields: dict[str, Any], *,
                  published_by: str, now: datetime | None = None) -> dict[str, Any]:
    """Publish the next version of the text of ``scope``; it applies to new bookings only."""
    if not (scope.startswith("service:") or scope.startswith("category:")) or len(scope) > 100:
        raise bad_request("invalid_scope", "scope 应为 service:<服务项目编号> 或 category:<服务类别>")
    texts = _texts(fields)
    now = now or datetime.now(UTC)
    for _ in range(20):
        latest = await db[COLLECTION].find_one({"institution_id": institution_id, "scope": scope},
                                               sort=[("version", DESCENDING)])
        version = (latest["version"] if latest else 0) + 1
        document = {"_id": f"{institution_id}|{scope}|v{version}", "institution_id": institution_id,
                    "scope": scope, "version": version, **texts, "published_at": now,
                    "published_by": published_by}
        try:
            await db[COLLECTION].insert_one(document)
        except DuplicateKeyError:
            continue  # another publisher took this number: take the next one
        return document
    raise ApiError(409, "consent_busy", "知情同意书正在被同时修改，请稍后重试")


async def current_text(db: AsyncDatabase, institution_id: str, service: dict[str, Any]) -> dict[str, Any] | None:
    """The latest version for ``service`` at ``institution_id`` (item text first, then category)."""
    for scope in scopes_for(service):
        found = await db[COLLECTION].find_one({"institution_id": institution_id, "scope": scope},
                                              sort=[("version", DESCENDING)])
        if found is not None:
            return found
    return None


def view(text: dict[str, Any], service: dict[str, Any]) -> dict[str, Any]:
    return {"id": text["_id"], "institution_id": text["institution_id"], "scope": text["scope"],
            "version": text["version"], "title": text["title"], "risks": text["risks"],
            "nurse_will": text["nurse_will"], "nurse_will_not": text["nurse_will_not"], "notes": text["notes"],
            "fees": fees(service), "published_at": text["published_at"], "service_id": service["_id"],
            "service_name": service.get("name", "")}


async def current_for(db: AsyncDatabase, institution_id: str, service_id: str) -> dict[str, Any]:
    """The consent the family is shown before booking ``service_id`` at ``institution_id``."""
    service = await db["services"].find_one({"_id": service_id}) if isinstance(service_id, str) else None
    if service is None:
        raise CONSENT_NOT_FOUND
    text = await current_text(db, institution_id, service)
    if text is None:
        raise CONSENT_NOT_FOUND
    return view(text, service)


async def history(db: AsyncDatabase, institution_id: str, scope: str) -> list[dict[str, Any]]:
    return await db[COLLECTION].find({"institution_id": institution_id, "scope": scope}).sort(
        "version", ASCENDING).to_list(None)


async def accept_for_booking(
    db: AsyncDatabase, institution: dict[str, Any], service: dict[str, Any], version: Any, openid: str,
    now: datetime,
) -> dict[str, Any] | None:
    """Called by the booking create path (scheduling/bookings.py) for a nursing booking: what the
    booking records of the consent the family accepted. Refused (409) when the family did not send
    the current version. None when the institution has published no text for the item (nothing to
    accept; such bookings carry ``consent: null``)."""
    text = await current_text(db, institution["_id"], service)
    if text is None:
        return None
    if version is None:
        raise CONSENT_REQUIRED
    if isinstance(version, bool) or not isinstance(version, int) or version != text["version"]:
        raise CONSENT_OUTDATED
    return {"text_id": text["_id"], "scope": text["scope"], "version": text["version"], "accepted_at": now,
            "accepted_by": openid, "fees": fees(service)}
