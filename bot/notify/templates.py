"""Message templates of the notification kinds (``bot/notify/data/templates.yaml``).

For each kind the file gives the subscribe-message template (id, page, fields with WeChat types)
and the Chinese text of the customer-service message and the inbox entry. ``TemplateBook.load``
validates the whole file once at start: every kind present, every field key of a known WeChat type
that agrees with its declared type, every placeholder one the kind offers (``CONTEXT_KEYS``), and a
sample of every kind rendered and checked against WeChat's value rules (``bot.wechat.template_fields``).

Rendering (``TemplateBook.render``) turns a notification payload into a context of display strings
(amounts as "1,234.56" for texts and "1234.56元" for ``amount`` fields, times as
"2026年11月25日 09:30" for ``time``/``date`` fields …) and fills the templates. Truncation rules, per
field type: ``thing`` keeps 19 characters + "…" when longer than 20; ``name`` keeps 10 (Chinese) or
20 (letters); ``phrase`` keeps the first 5 (Chinese only). Other types are never cut: a value that
still breaks WeChat's rule makes the subscribe message unavailable for that notification (it goes
by the next channel), never a wrong message.
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from aiohttp import web

from bot.settlements.rules import AMOUNT_KEYS, FUND_PARTS, STATUS_LABELS, VISIT_TYPES, format_yuan
from bot.wechat.template_fields import RULES, field_type, problems

log = logging.getLogger(__name__)

DEFAULT_PATH = Path(__file__).parent / "data" / "templates.yaml"
SHANGHAI = ZoneInfo("Asia/Shanghai")

SETTLEMENT_KEYS = frozenset({
    "settlement_id", "status_label", "status_hint", "insured_name", "id_number_masked", "institution_name",
    "visit_type_label", "admitted_on", "discharged_on", "total", "basic_insurance", "critical_illness",
    "medical_assistance", "other_funds", "self_pay", "total_amount", "self_pay_amount", "funds_amount",
    "occurred_date", "occurred_local", "reason", "reason_text",
})
BOOKING_KEYS = frozenset({
    "booking_id", "service_name", "institution_name", "start_local", "start_time", "status_label", "reason",
    "reason_text", "reason_or_hint", "nurse_name", "nurse_text", "confirm_hint", "remind_text",
    "code", "code_text", "end_time_only", "visit_window", "contact_text", "cancel_text", "cancel_hint",
    "provisional_text", "review_text", "previous_nurse_text", "until_local", "until_time",
})
WAITLIST_KEYS = frozenset({
    "waitlist_id", "service_name", "institution_name", "start_local", "start_time", "offer_expires_local",
    "offer_expires_time",
})
CONTEXT_KEYS: dict[str, frozenset[str]] = {
    "settlement_status": SETTLEMENT_KEYS,
    "booking_confirmed": BOOKING_KEYS,
    "booking_rejected": BOOKING_KEYS,
    "booking_cancelled": BOOKING_KEYS,
    "booking_expired": BOOKING_KEYS,
    "waitlist_offer": WAITLIST_KEYS,
    "booking_reminder": BOOKING_KEYS,
    "booking_made": BOOKING_KEYS,
    "booking_requested": BOOKING_KEYS,
    "booking_reassigned": BOOKING_KEYS,
    "booking_suspended": BOOKING_KEYS,
    "rating_invitation": BOOKING_KEYS,  # issue 16: 好差评 invitation after a completed visit
    "follow_up_result": BOOKING_KEYS,  # issue 16: the result of the follow-up of a bad rating
}
KINDS = tuple(CONTEXT_KEYS)

SETTLEMENT_HINTS = {
    "submitted": "结算申请已提交，请耐心等待审核",
    "reviewing": "正在审核，请耐心等待",
    "needs_materials": "请按要求补充材料后等待复审",
    "approved": "审核通过，等待支付",
    "paid": "报销款已支付，请留意到账",
    "rejected": "如有疑问可拨打12393咨询",
    "settled": "已在医院直接结算",
}
REMIND_TEXTS = {"24h": "明天就要开始了", "2h": "还有 2 小时就开始了"}
PROVISIONAL_TEXT = "节假日安排以国务院通知为准，如有调整我们会通知您。"
GENERIC_TITLE = "消息通知"
GENERIC_TEXT = "您有一条新通知，请在小程序「消息」中查看。"

_KEY = re.compile(r"^[a-z_]+\d+$")
_HAN_ONLY = re.compile(r"[^\u4e00-\u9fff]")


class TemplateError(ValueError):
    """The template file or WECHAT_TEMPLATE_IDS is wrong (message names the place)."""


@dataclass(frozen=True)
class TemplateField:
    key: str
    type: str
    value: str


@dataclass(frozen=True)
class KindTemplate:
    kind: str
    template_id: str
    title: str
    page: str | None
    fields: tuple[TemplateField, ...]
    text: str


@dataclass(frozen=True)
class Rendered:
    title: str
    text: str
    template_id: str | None  # None: no subscribe message for this notification
    data: dict[str, str] | None
    page: str | None
    problem: str | None = None  # why the subscribe message is unavailable, when it is


# --- display values --------------------------------------------------------------------------


def fit(kind: str, value: str) -> str:
    """Apply the truncation rule of a WeChat field type (see the module docstring)."""
    value = " ".join(value.split())
    if kind in ("thing", "short_thing"):
        limit = RULES.get(kind, (5,))[0] or 5
        return value if len(value) <= limit else value[: limit - 1] + "…"
    if kind == "name":
        limit = 10 if re.search(r"[\u4e00-\u9fff]", value) else 20
        return value[:limit]
    if kind == "phrase":
        return _HAN_ONLY.sub("", value)[:5]
    return value


def _wechat_time(local_text: str) -> str:
    """"2026-11-25 09:30" (how bookings write local times) -> "2026年11月25日 09:30"."""
    try:
        moment = datetime.strptime(local_text, "%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return ""
    return f"{moment.year}年{moment.month}月{moment.day}日 {moment:%H:%M}"


def _local(instant: Any) -> datetime | None:
    if isinstance(instant, datetime):
        return (instant if instant.tzinfo else instant.replace(tzinfo=UTC)).astimezone(SHANGHAI)
    if isinstance(instant, str):
        try:
            return _local(datetime.fromisoformat(instant))
        except ValueError:
            return None
    return None


def _text(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    return "" if value is None else str(value)


def settlement_context(payload: Mapping[str, Any]) -> dict[str, str]:
    amounts = {key: Decimal(str(value)) for key, value in (payload.get("amounts") or {}).items()}
    for key in AMOUNT_KEYS:
        amounts.setdefault(key, Decimal("0"))
    funds = sum((amounts[k] for k, _ in FUND_PARTS if k != "self_pay"), Decimal("0"))
    occurred = _local(payload.get("occurred_at"))
    status = _text(payload, "status")
    reason = _text(payload, "reason")
    return {
        "settlement_id": _text(payload, "settlement_id"),
        "status_label": STATUS_LABELS.get(status, status),
        "status_hint": SETTLEMENT_HINTS.get(status, ""),
        "insured_name": _text(payload, "insured_name") or "参保人",
        "id_number_masked": _text(payload, "id_number_masked"),
        "institution_name": _text(payload, "institution_name"),
        "visit_type_label": VISIT_TYPES.get(_text(payload, "visit_type"), "就医"),
        "admitted_on": _text(payload, "admitted_on"),
        "discharged_on": _text(payload, "discharged_on"),
        **{key: format_yuan(amounts[key]) for key in AMOUNT_KEYS},
        "total_amount": f"{amounts['total']:.2f}元",
        "self_pay_amount": f"{amounts['self_pay']:.2f}元",
        "funds_amount": f"{funds:.2f}元",
        "occurred_date": f"{occurred.year}年{occurred.month}月{occurred.day}日" if occurred else "",
        "occurred_local": f"{occurred:%Y-%m-%d %H:%M}" if occurred else "",
        "reason": reason,
        "reason_text": f"原因：{reason}。" if reason else "",
    }


def _slot_context(payload: Mapping[str, Any]) -> dict[str, str]:
    """The service, the place and the time: what booking and waitlist messages share."""
    start_local = _text(payload, "start_local")
    return {
        "service_name": _text(payload, "service_name") or "预约服务",
        "institution_name": _text(payload, "institution_name") or "服务机构",
        "start_local": start_local,
        "start_time": _wechat_time(start_local),
    }


def booking_context(payload: Mapping[str, Any]) -> dict[str, str]:
    reason = _text(payload, "reason")
    nurse = _text(payload, "nurse_name")
    code = _text(payload, "code")
    start_local, end_local = _text(payload, "start_local"), _text(payload, "end_local")
    end_time = end_local[-5:] if end_local[:10] == start_local[:10] else end_local
    phone = _text(payload, "institution_phone")
    deadline = _text(payload, "cancel_deadline_local")
    free_cancel = payload.get("free_cancel")
    if free_cancel and deadline:
        cancel_text = f"如需取消，请在 {deadline} 前在小程序「我的预约」中操作。"
    elif free_cancel is False:
        cancel_text = "已过免费取消时间，如需取消请联系机构工作人员。"
    else:
        cancel_text = "如需取消，请在小程序「我的预约」中操作。"
    until_local = _text(payload, "until_local")
    previous = _text(payload, "previous_nurse_name")
    return {
        "booking_id": _text(payload, "booking_id"),
        **_slot_context(payload),
        "status_label": _text(payload, "status_label"),
        "reason": reason,
        "reason_text": f"原因：{reason}。" if reason else "",
        "reason_or_hint": reason or "如有疑问请联系服务机构",
        "nurse_name": nurse,
        "nurse_text": f"服务护士：{nurse}。" if nurse else "",
        "confirm_hint": f"服务护士：{nurse}" if nurse else "请按时到达，如需取消请提前操作",
        "remind_text": REMIND_TEXTS.get(_text(payload, "remind_before"), "即将开始"),
        "code": code,
        "code_text": (f"预约码：{code}（" + ("护士上门时可核对" if payload.get("booking_kind") == "nursing"
                                          else "到场时出示给工作人员签到") + "）。") if code else "",
        "end_time_only": end_time,
        "visit_window": f"{start_local}–{end_time}" if end_time else start_local,
        "contact_text": f"机构联系电话：{phone}。" if phone else "",
        "cancel_text": cancel_text,
        "cancel_hint": "如需取消请提前操作" if free_cancel is not False else "已过免费取消时间",
        "provisional_text": PROVISIONAL_TEXT if payload.get("provisional") else "",
        "review_text": (f"机构将在 {_text(payload, 'review_deadline_local')} 前完成审核，结果会通知您。"
                        if payload.get("review_deadline_local") else "机构审核后会通知您结果。"),
        "previous_nurse_text": f"原护士：{previous}。" if previous else "",
        "until_local": until_local,
        "until_time": _wechat_time(until_local),
    }


def waitlist_context(payload: Mapping[str, Any]) -> dict[str, str]:
    expires_local = _text(payload, "offer_expires_local")
    return {
        "waitlist_id": _text(payload, "waitlist_id"),
        **_slot_context(payload),
        "offer_expires_local": expires_local,
        "offer_expires_time": _wechat_time(expires_local),
    }


def context_for(kind: str, payload: Mapping[str, Any]) -> dict[str, str]:
    if kind == "settlement_status":
        return settlement_context(payload)
    if kind == "waitlist_offer":
        return waitlist_context(payload)
    return booking_context(payload)


SAMPLE_PAYLOADS: dict[str, dict[str, Any]] = {
    "settlement_status": {
        "settlement_id": "JS2026112000012345", "status": "needs_materials", "insured_name": "欧阳修文",
        "id_number_masked": "110105********002X", "institution_name": "金华市中心医院（浙江大学金华医院）本部院区",
        "visit_type": "inpatient", "admitted_on": "2026-11-10", "discharged_on": "2026-11-20",
        "amounts": {"total": "12345.67", "basic_insurance": "8000.00", "critical_illness": "1500.00",
                    "medical_assistance": "500.00", "other_funds": "0.00", "self_pay": "2345.67"},
        "reason": "缺少出院小结", "occurred_at": datetime(2026, 11, 20, 1, 30, tzinfo=UTC),
    },
    "booking": {
        "booking_id": "b-1", "service_name": "更换导尿管（上门护理）服务项目名称很长的情况",
        "institution_name": "金华市中心医院互联网护理服务中心", "start_local": "2026-11-25 09:30",
        "status_label": "已确认", "reason": "该地址不在服务范围内，请选择其他机构", "nurse_name": "吕丽",
        "remind_before": "24h", "code": "ACD347", "end_local": "2026-11-25 11:30", "institution_phone": "0579-82552114",
        "free_cancel": True, "cancel_deadline_local": "2026-11-25 05:30", "provisional": True,
        "review_deadline_local": "2026-11-24 20:00", "until_local": "2026-12-31 10:00",
        "previous_nurse_name": "陈静",
    },
    "waitlist_offer": {
        "waitlist_id": "w-1", "service_name": "异地就医备案", "institution_name": "达州市高新区政务服务中心",
        "start_local": "2026-11-25 17:30", "offer_expires_local": "2026-11-24 10:00",
    },
}


def sample_payload(kind: str) -> dict[str, Any]:
    return SAMPLE_PAYLOADS.get(kind) or SAMPLE_PAYLOADS["booking"]


# --- the book of templates -------------------------------------------------------------------


def _placeholders(text: str, where: str) -> set[str]:
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"{where}: {exc}") from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise TemplateError(f"{where}: 占位符 {{{name}}} 只能是简单名称")
        names.add(name)
    return names


def parse_template_ids(raw: str | None) -> dict[str, str]:
    """``WECHAT_TEMPLATE_IDS``: "settlement_status=ID1,booking_confirmed=ID2"."""
    ids: dict[str, str] = {}
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        kind, sep, template_id = (part.strip() for part in item.partition("="))
        if not sep or kind not in CONTEXT_KEYS or not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", template_id):
            raise TemplateError(
                f"WECHAT_TEMPLATE_IDS 格式应为 kind=模板ID,…（kind 取 {', '.join(KINDS)}）：{item.strip()!r}"
            )
        ids[kind] = template_id
    return ids


class TemplateBook:
    def __init__(self, kinds: Mapping[str, KindTemplate]) -> None:
        self.kinds = dict(kinds)

    @classmethod
    def load(cls, path: Path = DEFAULT_PATH, template_ids: str | None = None) -> TemplateBook:
        try:
            document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise TemplateError(f"{path}: {exc}") from None
        entries = document.get("kinds") if isinstance(document, dict) else None
        if not isinstance(entries, dict):
            raise TemplateError(f"{path}: 缺少 kinds")
        missing = [kind for kind in KINDS if kind not in entries]
        unknown = [kind for kind in entries if kind not in CONTEXT_KEYS]
        if missing or unknown:
            raise TemplateError(f"{path}: 缺少 {missing}，未知 {unknown}")
        overrides = parse_template_ids(template_ids)
        kinds = {kind: cls._kind(kind, entries[kind], overrides.get(kind)) for kind in KINDS}
        book = cls(kinds)
        for kind in KINDS:  # every kind must render a realistic sample within WeChat's rules
            rendered = book.render(kind, sample_payload(kind), require_template=False)
            if rendered.problem:
                raise TemplateError(f"{kind}: 示例数据无法生成订阅消息：{rendered.problem}")
        return book

    @staticmethod
    def _kind(kind: str, entry: Any, override: str | None) -> KindTemplate:
        if not isinstance(entry, dict):
            raise TemplateError(f"{kind}: 必须是映射")
        allowed = CONTEXT_KEYS[kind]
        template_id = override if override is not None else entry.get("template_id") or ""
        title, text, page = entry.get("title"), entry.get("text"), entry.get("page")
        if not isinstance(template_id, str):
            raise TemplateError(f"{kind}.template_id: 必须是字符串")
        if not isinstance(title, str) or not title or not isinstance(text, str) or not text:
            raise TemplateError(f"{kind}: 需要 title 和 text")
        if page is not None and not isinstance(page, str):
            raise TemplateError(f"{kind}.page: 必须是字符串")
        raw_fields = entry.get("fields")
        if not isinstance(raw_fields, dict) or not raw_fields:
            raise TemplateError(f"{kind}.fields: 至少需要一个字段")
        fields: list[TemplateField] = []
        for key, spec in raw_fields.items():
            where = f"{kind}.fields.{key}"
            if not isinstance(key, str) or not _KEY.match(key):
                raise TemplateError(f"{where}: 字段名应为 类型+编号，如 thing1")
            if not isinstance(spec, dict) or not isinstance(spec.get("value"), str):
                raise TemplateError(f"{where}: 需要 type 和 value")
            declared = spec.get("type")
            if declared not in RULES or declared != field_type(key):
                raise TemplateError(f"{where}: type {declared!r} 与字段名不符或不是微信支持的类型")
            fields.append(TemplateField(key, declared, spec["value"]))
        for where, template in [(f"{kind}.text", text), (f"{kind}.title", title), (f"{kind}.page", page or ""),
                                *((f"{kind}.fields.{f.key}", f.value) for f in fields)]:
            unknown = _placeholders(template, where) - allowed
            if unknown:
                raise TemplateError(f"{where}: 未知占位符 {sorted(unknown)}")
        return KindTemplate(kind, template_id, title, page, tuple(fields), text)

    def template_ids(self) -> set[str]:
        return {t.template_id for t in self.kinds.values() if t.template_id}

    def render(self, kind: str, payload: Mapping[str, Any], *, require_template: bool = True) -> Rendered:
        template = self.kinds.get(kind)
        if template is None:
            return Rendered(GENERIC_TITLE, GENERIC_TEXT, None, None, None, "unknown kind")
        context = context_for(kind, payload)
        text = template.text.format_map(context).strip()
        title = template.title.format_map(context)
        if require_template and not template.template_id:
            return Rendered(title, text, None, None, None, "no template id")
        data = {f.key: fit(f.type, f.value.format_map(context)) for f in template.fields}
        found = problems(data)
        page = template.page.format_map(context) if template.page else None
        if found:
            return Rendered(title, text, None, None, None, "; ".join(found))
        return Rendered(title, text, template.template_id or None, data, page)


TEMPLATES: web.AppKey[TemplateBook] = web.AppKey("templates")


async def templates_context(app: Any) -> AsyncIterator[None]:
    """Cleanup context: load and validate the template file (and WECHAT_TEMPLATE_IDS) once at start.

    A mistake fails readiness with the reason (/readyz) instead of crashing the process; the
    dispatcher and the subscription endpoint then have no templates and stay idle / answer 503.
    """
    from bot.keys import READINESS, SETTINGS

    try:
        app[TEMPLATES] = TemplateBook.load(template_ids=app[SETTINGS].wechat_template_ids)
    except TemplateError as exc:
        log.error("notification templates are invalid", extra={"reason": str(exc)})
        app[READINESS].fail("notification_templates", str(exc))
    yield
