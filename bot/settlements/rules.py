"""Settlement statuses, transitions and the validation of a settlement-system event (pure, no I/O).

Statuses: ``submitted → reviewing → approved → paid``, ``reviewing → needs_materials → reviewing``,
``reviewing → rejected`` (with a reason), and ``settled`` for a direct settlement at discharge
(一站式结算), which is only ever a first status.

Ordering: the settlement system numbers the events of one settlement with ``sequence``. An event
whose sequence is not higher than the settlement's is late: it is kept in the history and never
moves the settlement. A higher sequence may skip statuses (events can arrive out of order or be
lost), so it is applied when its status is *reachable* from the current one; an unreachable status
(``paid → reviewing``, anything after ``settled``) contradicts the record and is refused.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from bot.settlements.id_numbers import IdNumber, InvalidIdNumberError, parse, valid_name

SUBMITTED, REVIEWING, APPROVED, PAID = "submitted", "reviewing", "approved", "paid"
NEEDS_MATERIALS, REJECTED, SETTLED = "needs_materials", "rejected", "settled"

STATUS_LABELS: dict[str, str] = {
    SUBMITTED: "已提交",
    REVIEWING: "审核中",
    NEEDS_MATERIALS: "待补材料",
    APPROVED: "审核通过",
    PAID: "已支付",
    REJECTED: "审核未通过",
    SETTLED: "已结算",
}

TRANSITIONS: dict[str, frozenset[str]] = {
    SUBMITTED: frozenset({REVIEWING}),
    REVIEWING: frozenset({APPROVED, NEEDS_MATERIALS, REJECTED}),
    NEEDS_MATERIALS: frozenset({REVIEWING}),
    APPROVED: frozenset({PAID}),
    PAID: frozenset(),
    REJECTED: frozenset(),
    SETTLED: frozenset(),
}

REASON_REQUIRED = frozenset({REJECTED, NEEDS_MATERIALS})

# (key, Chinese label) of the parts that add up to the total, in display order
FUND_PARTS: tuple[tuple[str, str], ...] = (
    ("basic_insurance", "基本医保统筹"),
    ("critical_illness", "大病保险"),
    ("medical_assistance", "医疗救助"),
    ("other_funds", "其他基金"),
    ("self_pay", "个人自付"),
)
TOTAL_LABEL = "总费用"
AMOUNT_KEYS = ("total", *(key for key, _ in FUND_PARTS))

VISIT_TYPES = {"inpatient": "住院", "outpatient": "门诊"}

_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")
_AMOUNT = re.compile(r"^\d{1,10}(\.\d{1,2})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CENT = Decimal("0.01")


class EventInvalidError(ValueError):
    """The event does not validate; ``field`` names the field at fault (dotted path)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TransitionRefusedError(ValueError):
    def __init__(self, current: str, requested: str) -> None:
        super().__init__(f"{current} -> {requested}")
        self.current = current
        self.requested = requested


@dataclass(frozen=True)
class SettlementEvent:
    event_id: str
    settlement_id: str
    sequence: int
    status: str
    occurred_at: datetime
    id_number: IdNumber
    insured_name: str  # kept in memory only: stored as a keyed hash and a masked form
    institution_name: str
    visit: dict[str, Any]
    amounts: dict[str, Decimal]
    reason: str | None


@dataclass(frozen=True)
class Decision:
    apply: bool  # the event becomes the settlement's current state; otherwise it is late
    status_changed: bool  # residents are notified

    @property
    def late(self) -> bool:
        """Lower or equal sequence: kept in the history only."""
        return not self.apply


def reachable(current: str, target: str) -> bool:
    if current == target:
        return True
    seen, queue = {current}, deque([current])
    while queue:
        for following in TRANSITIONS[queue.popleft()]:
            if following == target:
                return True
            if following not in seen:
                seen.add(following)
                queue.append(following)
    return False


def decide(current_status: str | None, current_sequence: int | None, status: str, sequence: int) -> Decision:
    """What an event does to a settlement; raises ``TransitionRefusedError`` for a contradiction."""
    if current_status is None or current_sequence is None:
        return Decision(apply=True, status_changed=True)
    if sequence <= current_sequence:
        return Decision(apply=False, status_changed=False)
    if not reachable(current_status, status):
        raise TransitionRefusedError(current_status, status)
    return Decision(apply=True, status_changed=status != current_status)


def _identifier(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise EventInvalidError(field, "必须是 1 到 128 位字母、数字或 _ . : - 组成的字符串")
    return value


def _object(body: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = body.get(field)
    if not isinstance(value, dict):
        raise EventInvalidError(field, "必须是 JSON 对象")
    return value


def _date(visit: Mapping[str, Any], field: str, required: bool) -> str | None:
    value = visit.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _DATE.match(value):
        raise EventInvalidError(f"visit.{field}", "必须是 YYYY-MM-DD 格式的日期")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise EventInvalidError(f"visit.{field}", "不是有效的日期") from None
    return value


def _amounts(body: Mapping[str, Any]) -> dict[str, Decimal]:
    raw = _object(body, "amounts")
    amounts: dict[str, Decimal] = {}
    for key in AMOUNT_KEYS:
        value = raw.get(key)
        if not isinstance(value, str) or not _AMOUNT.match(value):
            raise EventInvalidError(f"amounts.{key}", "必须是不小于 0、最多两位小数的金额字符串，例如 \"1234.56\"")
        amounts[key] = Decimal(value).quantize(_CENT)
    parts = sum((amounts[key] for key, _ in FUND_PARTS), Decimal("0.00"))
    if parts != amounts["total"]:
        raise EventInvalidError(
            "amounts.total", f"各项金额之和 {parts} 与总费用 {amounts['total']} 不一致"
        )
    return amounts


EARLIEST_OCCURRED = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_AHEAD = timedelta(days=1)


def occurred_plausible(occurred_at: datetime, now: datetime) -> bool:
    """An event's time is after 2000 and at most a day ahead of ours (year 1 or 9999 is a mistake)."""
    if occurred_at.year < 2000 or occurred_at.year > now.year + 1:
        return False  # checked first: converting year 1 or 9999 across time zones can overflow
    return EARLIEST_OCCURRED <= occurred_at <= now + LATEST_AHEAD


def parse_event(body: Mapping[str, Any], now: datetime | None = None) -> SettlementEvent:
    """Validate a webhook body; raises ``EventInvalidError`` naming the first field at fault."""
    event_id = _identifier(body, "event_id")
    settlement_id = _identifier(body, "settlement_id")
    sequence = body.get("sequence")
    if not isinstance(sequence, int) or isinstance(sequence, bool) or not 0 <= sequence < 2**63:
        raise EventInvalidError("sequence", "必须是不小于 0 的整数")
    status = body.get("status")
    if status not in STATUS_LABELS:
        raise EventInvalidError("status", "必须是 " + "、".join(STATUS_LABELS) + " 之一")
    occurred_raw = body.get("occurred_at")
    try:
        occurred_at = datetime.fromisoformat(occurred_raw) if isinstance(occurred_raw, str) else None
    except ValueError:
        occurred_at = None
    if occurred_at is None or occurred_at.tzinfo is None:
        raise EventInvalidError("occurred_at", "必须是带时区的 ISO 8601 时间，例如 2026-11-20T09:30:00+08:00")
    if not occurred_plausible(occurred_at, now or datetime.now(UTC)):
        raise EventInvalidError("occurred_at", "时间不合理：应在 2000 年之后，且不晚于当前时间一天")
    try:
        id_number = parse(body.get("insured_id_number"))
    except InvalidIdNumberError as exc:
        raise EventInvalidError("insured_id_number", exc.message) from None
    insured_name = valid_name(body.get("insured_name"))
    if insured_name is None:
        raise EventInvalidError("insured_name", "必须是参保人姓名（汉字或字母，最多 30 个字符）")
    institution = _object(body, "institution")
    name = institution.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise EventInvalidError("institution.name", "必须是 1 到 100 个字符的机构名称")
    visit_raw = _object(body, "visit")
    if visit_raw.get("type") not in VISIT_TYPES:
        raise EventInvalidError("visit.type", "必须是 inpatient 或 outpatient")
    admitted_on = _date(visit_raw, "admitted_on", required=True)
    discharged_on = _date(visit_raw, "discharged_on", required=False)
    if discharged_on is not None and admitted_on is not None and discharged_on < admitted_on:
        raise EventInvalidError("visit.discharged_on", "出院日期不能早于入院日期")
    amounts = _amounts(body)
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
        raise EventInvalidError("reason", "必须是不超过 500 个字符的字符串")
    reason = reason.strip() if isinstance(reason, str) and reason.strip() else None
    if status in REASON_REQUIRED and reason is None:
        raise EventInvalidError("reason", f"状态 {status} 必须附带原因")
    return SettlementEvent(
        event_id=event_id,
        settlement_id=settlement_id,
        sequence=sequence,
        status=status,
        occurred_at=occurred_at.astimezone(UTC),
        id_number=id_number,
        insured_name=insured_name,
        institution_name=name.strip(),
        visit={"type": visit_raw["type"], "admitted_on": admitted_on, "discharged_on": discharged_on},
        amounts=amounts,
        reason=reason,
    )


def format_yuan(amount: Decimal | str) -> str:
    """1234.5 -> "1,234.50" (for texts people read; subscribe-message amounts use no separators)."""
    return f"{Decimal(amount).quantize(_CENT):,}"
