"""Nurse credentials (护士执业证书、职称、执业年限、执业责任保险), kept in ``nurse_credentials``
(``_id`` = nurse id) beside the nurse record of ``scheduling.nurses``.

A nurse whose licence or liability insurance has expired — or will have expired on the day of
the visit — cannot be assigned: ``check_assignable`` is called from the confirm path of
``scheduling.bookings`` inside its transaction. A nurse without a credentials record is not
blocked here (the qualification rule of ``scheduling.nurses`` still applies); the console lists
such nurses (``missing``) so staff complete them.

Admin staff are told ``ALERT_DAYS`` days before a licence or insurance ends: the job writes one
alert per (nurse, document, end date) into ``staff_alerts`` (unique ``_id``), which the console
shows; staff accounts have no WeChat channel of their own.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.db import declare_indexes
from bot.errors import ApiError, bad_request
from scheduling.calendar import SHANGHAI
from scheduling.nurses import COLLECTION as NURSES
from scheduling.nurses import TITLES

COLLECTION = "nurse_credentials"
ALERTS = "staff_alerts"
ALERT_DAYS = 30
DOCUMENTS = {"licence": "护士执业证书", "insurance": "执业责任保险"}

declare_indexes(COLLECTION, IndexModel([("institution_id", ASCENDING)], name="institution"),
                IndexModel([("licence_valid_until", ASCENDING)], name="licence_until"),
                IndexModel([("insurance.valid_until", ASCENDING)], name="insurance_until"))
declare_indexes(ALERTS, IndexModel([("institution_id", ASCENDING), ("created_at", ASCENDING)],
                                   name="institution_created"))


def _date(value: Any, label: str) -> str:
    if not isinstance(value, str):
        raise bad_request("invalid_credentials", f"「{label}」应为日期 YYYY-MM-DD")
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise bad_request("invalid_credentials", f"「{label}」应为日期 YYYY-MM-DD") from None


def _text(value: Any, label: str, limit: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= limit:
        raise bad_request("invalid_credentials", f"请填写「{label}」（不超过 {limit} 字）")
    return value.strip()


def parse(body: dict[str, Any]) -> dict[str, Any]:
    """Validate a staff request (every field required)."""
    years = body.get("years_of_practice")
    if isinstance(years, bool) or not isinstance(years, int) or not 0 <= years <= 60:
        raise bad_request("invalid_credentials", "「执业年限」应为 0 到 60 之间的整数")
    if body.get("title") not in TITLES:
        raise bad_request("invalid_credentials", f"「职称」应为以下之一：{'、'.join(TITLES)}")
    insurance = body.get("insurance")
    if not isinstance(insurance, dict):
        raise bad_request("invalid_credentials", "请填写执业责任保险（insurer、policy_number、valid_until）")
    return {
        "licence_number": _text(body.get("licence_number"), "执业证书编号", 30),
        "licence_valid_until": _date(body.get("licence_valid_until"), "执业证书有效期至"),
        "title": body["title"], "years_of_practice": years,
        "insurance": {"insurer": _text(insurance.get("insurer"), "承保公司", 50),
                      "policy_number": _text(insurance.get("policy_number"), "保单号", 50),
                      "valid_until": _date(insurance.get("valid_until"), "保险有效期至")},
    }


async def put(db: AsyncDatabase, institution_id: str, nurse_id: str, fields: dict[str, Any], *,
              by: str) -> dict[str, Any]:
    nurse = await db[NURSES].find_one({"_id": nurse_id, "institution_id": institution_id})
    if nurse is None:
        raise ApiError(404, "nurse_not_found", "找不到该护士，或该护士不属于本机构")
    now = datetime.now(UTC)
    document = {"_id": nurse_id, "institution_id": institution_id, **fields, "updated_at": now, "updated_by": by}
    await db[COLLECTION].replace_one({"_id": nurse_id}, document, upsert=True)
    return document


async def get(db: AsyncDatabase, nurse_id: str) -> dict[str, Any] | None:
    return await db[COLLECTION].find_one({"_id": nurse_id})


def problems(credentials: dict[str, Any] | None, on: date) -> list[tuple[str, str]]:
    """Pure: (code, Chinese message) for each document not valid on ``on``."""
    if credentials is None:
        return []
    found = []
    if date.fromisoformat(credentials["licence_valid_until"]) < on:
        found.append(("nurse_licence_expired",
                      f"该护士的护士执业证书已于 {credentials['licence_valid_until']} 到期，不能派单"))
    if date.fromisoformat(credentials["insurance"]["valid_until"]) < on:
        found.append(("nurse_insurance_expired",
                      f"该护士的执业责任保险已于 {credentials['insurance']['valid_until']} 到期，不能派单"))
    return found


async def check_assignable(db: AsyncDatabase, nurse_id: str, visit_start: datetime, *,
                           session: AsyncClientSession | None = None, now: datetime | None = None) -> None:
    """Raise 409 when the nurse's licence or insurance is not valid on the visit day (or today)."""
    now = now or datetime.now(UTC)
    day = max(now, visit_start).astimezone(SHANGHAI).date()
    found = problems(await db[COLLECTION].find_one({"_id": nurse_id}, session=session), day)
    if found:
        code, message = found[0]
        raise ApiError(409, code, message)


def view(credentials: dict[str, Any], today: date) -> dict[str, Any]:
    return {"nurse_id": credentials["_id"], "institution_id": credentials["institution_id"],
            "licence_number": credentials["licence_number"],
            "licence_valid_until": credentials["licence_valid_until"], "title": credentials["title"],
            "years_of_practice": credentials["years_of_practice"], "insurance": credentials["insurance"],
            "problems": [message for _code, message in problems(credentials, today)],
            "updated_at": credentials["updated_at"]}


async def alert_expiring(db: AsyncDatabase, now: datetime | None = None) -> int:
    """Write a staff alert for each licence or insurance ending within ``ALERT_DAYS`` (once each)."""
    now = now or datetime.now(UTC)
    today = now.astimezone(SHANGHAI).date()
    horizon = (today + timedelta(days=ALERT_DAYS)).isoformat()
    written = 0
    query = {"$or": [{"licence_valid_until": {"$lte": horizon}}, {"insurance.valid_until": {"$lte": horizon}}]}
    async for credentials in db[COLLECTION].find(query):
        nurse = await db[NURSES].find_one({"_id": credentials["_id"]}) or {}
        for document, until in (("licence", credentials["licence_valid_until"]),
                                ("insurance", credentials["insurance"]["valid_until"])):
            if until > horizon:
                continue
            expired = until < today.isoformat()
            alert = {"_id": f"credential:{credentials['_id']}:{document}:{until}", "kind": "credential_expiry",
                     "institution_id": credentials["institution_id"], "audience": "admin",
                     "nurse_id": credentials["_id"], "document": document, "valid_until": until,
                     "message": f"护士{nurse.get('name', credentials['_id'])}的{DOCUMENTS[document]}"
                                f"{'已于' if expired else '将于'} {until} 到期"
                                f"{'，已不能派单' if expired else '，请及时续期'}",
                     "created_at": now, "read_at": None}
            try:
                await db[ALERTS].insert_one(alert)
                written += 1
            except DuplicateKeyError:
                pass  # told before
    return written


async def alerts(db: AsyncDatabase, institution_id: str | None, limit: int = 100) -> list[dict[str, Any]]:
    query = {} if institution_id is None else {"institution_id": institution_id}
    return await db[ALERTS].find(query).sort("created_at", -1).limit(limit).to_list(None)
