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

import json
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

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


_IdentifierStr = Annotated[str, StringConstraints(pattern=_IDENTIFIER.pattern)]
_AmountStr = Annotated[str, StringConstraints(pattern=_AMOUNT.pattern)]
_AMOUNT_HELP = "不小于 0、最多两位小数的金额字符串，例如 \"1234.56\""


class _Lenient(BaseModel):
    """Fields the settlement system may add later are ignored, not refused."""

    model_config = ConfigDict(extra="ignore")


class EventAmounts(_Lenient):
    """金额（元，字符串，最多两位小数）；五项之和必须等于 total"""

    # total last: its check sees the parts validated before it
    basic_insurance: _AmountStr = Field(description="基本医保统筹 · " + _AMOUNT_HELP, examples=["800.00"])
    critical_illness: _AmountStr = Field(description="大病保险", examples=["100.00"])
    medical_assistance: _AmountStr = Field(description="医疗救助", examples=["50.00"])
    other_funds: _AmountStr = Field(description="其他基金", examples=["0.00"])
    self_pay: _AmountStr = Field(description="个人自付", examples=["284.56"])
    total: _AmountStr = Field(description="总费用", examples=["1234.56"])

    @field_validator("total")
    @classmethod
    def _parts_add_up(cls, total: str, info: ValidationInfo) -> str:
        keys = [key for key, _ in FUND_PARTS]
        if all(key in info.data for key in keys):
            parts = sum((Decimal(info.data[key]).quantize(_CENT) for key in keys), Decimal("0.00"))
            if parts != Decimal(total).quantize(_CENT):
                raise ValueError(f"各项金额之和 {parts} 与总费用 {Decimal(total).quantize(_CENT)} 不一致")
        return total


class EventInstitution(_Lenient):
    name: str = Field(min_length=1, max_length=100, description="医疗机构名称")

    @field_validator("name")
    @classmethod
    def _named(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("必须是 1 到 100 个字符的机构名称")
        return name.strip()


class EventVisit(_Lenient):
    type: Literal["inpatient", "outpatient"]
    admitted_on: date
    discharged_on: date | None = Field(None, validate_default=True)

    @field_validator("discharged_on")
    @classmethod
    def _after_admission(cls, discharged: date | None, info: ValidationInfo) -> date | None:
        admitted = info.data.get("admitted_on")
        if discharged is not None and admitted is not None and discharged < admitted:
            raise ValueError("出院日期不能早于入院日期")
        return discharged


class SettlementEventIn(_Lenient):
    """结算系统推送的一个结算状态事件"""

    event_id: _IdentifierStr = Field(description="事件 id（幂等：重复推送只确认）")
    settlement_id: _IdentifierStr = Field(description="结算单号")
    sequence: int = Field(ge=0, lt=2**63, description="同一结算单的事件序号（只增不减）")
    status: Literal["submitted", "reviewing", "needs_materials", "approved", "paid", "rejected", "settled"]
    occurred_at: AwareDatetime = Field(description="带时区的 ISO 8601 时间；须在 2000 年之后且不晚于当前时间一天")
    insured_id_number: str = Field(max_length=40,
                                   description="18 位身份证号码（校验位有效），或以字母开头的 10–30 位医保编号")
    insured_name: str = Field(max_length=60, description="参保人姓名（只以加密哈希与掩码形式保存）")
    institution: EventInstitution
    visit: EventVisit
    amounts: EventAmounts
    reason: str | None = Field(None, max_length=500, validate_default=True,
                               description="rejected / needs_materials 时必填")

    @field_validator("occurred_at")
    @classmethod
    def _plausible(cls, occurred_at: datetime) -> datetime:
        if not occurred_plausible(occurred_at, datetime.now(UTC)):
            raise ValueError("时间不合理：应在 2000 年之后，且不晚于当前时间一天")
        return occurred_at.astimezone(UTC)

    @field_validator("insured_id_number")
    @classmethod
    def _id_number(cls, raw: str) -> str:
        try:
            return parse(raw).value
        except InvalidIdNumberError as exc:
            raise ValueError(exc.message) from None

    @field_validator("insured_name")
    @classmethod
    def _name(cls, raw: str) -> str:
        name = valid_name(raw)
        if name is None:
            raise ValueError("必须是参保人姓名（汉字或字母，最多 30 个字符）")
        return name

    @field_validator("reason")
    @classmethod
    def _reason(cls, reason: str | None, info: ValidationInfo) -> str | None:
        reason = reason.strip() if reason and reason.strip() else None
        status = info.data.get("status")
        if status in REASON_REQUIRED and reason is None:
            raise ValueError(f"状态 {status} 必须附带原因")
        return reason

    def to_event(self) -> SettlementEvent:
        return SettlementEvent(
            event_id=self.event_id,
            settlement_id=self.settlement_id,
            sequence=self.sequence,
            status=self.status,
            occurred_at=self.occurred_at,
            id_number=parse(self.insured_id_number),
            insured_name=self.insured_name,
            institution_name=self.institution.name,
            visit={"type": self.visit.type, "admitted_on": self.visit.admitted_on.isoformat(),
                   "discharged_on": self.visit.discharged_on.isoformat() if self.visit.discharged_on else None},
            amounts={key: Decimal(getattr(self.amounts, key)).quantize(_CENT) for key in AMOUNT_KEYS},
            reason=self.reason,
        )


EARLIEST_OCCURRED = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_AHEAD = timedelta(days=1)


def occurred_plausible(occurred_at: datetime, now: datetime) -> bool:
    """An event's time is after 2000 and at most a day ahead of ours (year 1 or 9999 is a mistake)."""
    if occurred_at.year < 2000 or occurred_at.year > now.year + 1:
        return False  # checked first: converting year 1 or 9999 across time zones can overflow
    return EARLIEST_OCCURRED <= occurred_at <= now + LATEST_AHEAD


def event_error(exc: ValidationError) -> EventInvalidError:
    """The first problem of a failed validation, as the field (dotted) and a Chinese message."""
    first = exc.errors(include_url=False, include_context=False, include_input=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    message = str(first.get("msg", "")).removeprefix("Value error, ") if first["type"] == "value_error" else ""
    return EventInvalidError(field, message or "取值无效")


def parse_event(body: Mapping[str, Any]) -> SettlementEvent:
    """Validate an event given as a mapping exactly as the webhook would its JSON (strict); raises
    ``EventInvalidError`` naming the first field at fault."""
    try:
        return SettlementEventIn.model_validate_json(json.dumps(body, ensure_ascii=False), strict=True).to_event()
    except ValidationError as exc:
        raise event_error(exc) from None


def format_yuan(amount: Decimal | str) -> str:
    """1234.5 -> "1,234.50" (for texts people read; subscribe-message amounts use no separators)."""
    return f"{Decimal(amount).quantize(_CENT):,}"
