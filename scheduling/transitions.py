"""The booking state machines: one transition table per kind of service, free of I/O.

Every path that changes a booking (resident API, staff API, chat, jobs) asks ``decide`` whether a
transition is allowed for this actor at this moment; the table also says what the change does to
the rest of the world (release the slot seat, assign or release the nurse, which notification,
what happens to the reminders), so the storage code has no status-specific branches of its own.

Actors are role names: ``resident`` (the family that booked), the staff roles of ``bot.accounts.staff``
(admin, centre_staff, clinic_staff, nurse) and ``system`` (jobs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

_SHANGHAI = ZoneInfo("Asia/Shanghai")

CENTRE, NURSING = "centre", "nursing"
KINDS = (CENTRE, NURSING)

RESIDENT, SYSTEM = "resident", "system"
ADMIN, CENTRE_STAFF, CLINIC_STAFF, NURSE = "admin", "centre_staff", "clinic_staff", "nurse"

# statuses
BOOKED, CHECKED_IN, COMPLETED, CANCELLED, NO_SHOW = "booked", "checked_in", "completed", "cancelled", "no_show"
REQUESTED, CONFIRMED, ON_THE_WAY, IN_SERVICE = "requested", "confirmed", "on_the_way", "in_service"
REJECTED, EXPIRED = "rejected", "expired"

INITIAL = {CENTRE: BOOKED, NURSING: REQUESTED}

STATUS_LABELS = {
    BOOKED: "已预约", CHECKED_IN: "已签到", COMPLETED: "已完成", CANCELLED: "已取消", NO_SHOW: "未到场",
    REQUESTED: "待审核", CONFIRMED: "已确认", ON_THE_WAY: "护士已出发", IN_SERVICE: "服务中",
    REJECTED: "已拒绝", EXPIRED: "已过期",
}

# A booking in one of these statuses still holds a future appointment: it counts towards the
# family's limit of active bookings (MAX_ACTIVE_BOOKINGS) and the family can still cancel it.
UPCOMING = frozenset({BOOKED, REQUESTED, CONFIRMED})
TERMINAL = frozenset({COMPLETED, CANCELLED, NO_SHOW, REJECTED, EXPIRED})

# reminder effects
SCHEDULE, CANCEL = "schedule", "cancel"


class TransitionError(Exception):
    """A refused transition: ``code`` is stable English, ``message`` Simplified Chinese."""

    def __init__(self, code: str, message: str, kind: str = "conflict") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.kind = kind  # conflict | forbidden | invalid


@dataclass(frozen=True)
class Situation:
    """What the guards look at: the booking's times, the moment, and who asks."""

    now: datetime
    start: datetime
    actor: str
    cancel_deadline: datetime | None = None
    review_deadline: datetime | None = None
    reason: str | None = None
    actor_is_assigned_nurse: bool = False
    # windows from the institution's rules (``booking_base.InstitutionRules``); None: no limit
    check_in_from: datetime | None = None
    check_in_until: datetime | None = None
    trip_from: datetime | None = None
    complete_from: datetime | None = None


Guard = Callable[[Situation], None]


def _resident_before_cancel_deadline(s: Situation) -> None:
    if s.actor == RESIDENT and s.cancel_deadline is not None and s.now >= s.cancel_deadline:
        raise TransitionError("cancel_deadline_passed", "已超过可自行取消的时间，请联系机构工作人员取消")


def _staff_gives_reason(s: Situation) -> None:
    if s.actor not in (RESIDENT, SYSTEM) and not (s.reason or "").strip():
        raise TransitionError("reason_required", "工作人员取消预约须填写原因", "invalid")


def _reason_required(s: Situation) -> None:
    if not (s.reason or "").strip():
        raise TransitionError("reason_required", "请填写原因", "invalid")


def _before_review_deadline(s: Situation) -> None:
    if s.review_deadline is not None and s.now >= s.review_deadline:
        raise TransitionError("review_deadline_passed", "已超过审核期限，该申请已失效")


def _review_deadline_reached(s: Situation) -> None:
    if s.review_deadline is None or s.now < s.review_deadline:
        raise TransitionError("review_deadline_not_reached", "尚未到审核期限")


def _visit_started(s: Situation) -> None:
    if s.now < s.start:
        raise TransitionError("visit_not_started", "预约时间未到，不能标记为未到场")


def _local_hm(moment: datetime) -> str:
    return moment.astimezone(_SHANGHAI).strftime("%m月%d日 %H:%M")


def _within_check_in_window(s: Situation) -> None:
    if s.check_in_from is not None and s.now < s.check_in_from:
        raise TransitionError("check_in_too_early",
                              f"还未到签到时间，请于 {_local_hm(s.check_in_from)} 之后签到")
    if s.check_in_until is not None and s.now > s.check_in_until:
        raise TransitionError("check_in_too_late",
                              f"已过签到时间（截至 {_local_hm(s.check_in_until)}），该预约码已失效")


def _trip_window_open(s: Situation) -> None:
    if s.trip_from is not None and s.now < s.trip_from:
        raise TransitionError("trip_too_early",
                              f"还未到出发时间：最早可于 {_local_hm(s.trip_from)} 点击出发")


def _visit_time_reached(s: Situation) -> None:
    earliest = s.complete_from or s.start
    if s.now < earliest:
        raise TransitionError("complete_too_early",
                              f"上门服务时间未到，最早可于 {_local_hm(earliest)} 之后完成服务")


def _assigned_nurse_only(s: Situation) -> None:
    if s.actor == NURSE and not s.actor_is_assigned_nurse:
        raise TransitionError("forbidden", "只能操作分配给自己的上门服务", "forbidden")


@dataclass(frozen=True)
class Rule:
    source: str
    target: str
    actors: frozenset[str]
    guards: tuple[Guard, ...] = ()
    releases_seat: bool = False  # the slot seat goes back (to the waitlist or to everyone)
    assigns_nurse: bool = False
    releases_nurse: bool = False
    notification: str | None = None  # outbox kind sent to the family
    reminders: str | None = None  # SCHEDULE or CANCEL
    label: str = field(default="", compare=False)


_CENTRE_DESK = frozenset({CENTRE_STAFF, ADMIN})
_CLINIC = frozenset({CLINIC_STAFF, ADMIN})
_CLINIC_AND_NURSE = frozenset({CLINIC_STAFF, ADMIN, NURSE})

TABLES: dict[str, tuple[Rule, ...]] = {
    CENTRE: (
        Rule(BOOKED, CHECKED_IN, _CENTRE_DESK, (_within_check_in_window,), reminders=CANCEL, label="签到"),
        Rule(CHECKED_IN, COMPLETED, _CENTRE_DESK, label="办结"),
        Rule(BOOKED, CANCELLED, _CENTRE_DESK | {RESIDENT},
             (_resident_before_cancel_deadline, _staff_gives_reason),
             releases_seat=True, notification="booking_cancelled", reminders=CANCEL, label="取消"),
        Rule(BOOKED, NO_SHOW, _CENTRE_DESK, (_visit_started,), reminders=CANCEL, label="标记未到场"),
    ),
    NURSING: (
        Rule(REQUESTED, CONFIRMED, _CLINIC, (_before_review_deadline,), assigns_nurse=True,
             notification="booking_confirmed", reminders=SCHEDULE, label="确认并派护士"),
        Rule(REQUESTED, REJECTED, _CLINIC, (_reason_required,), releases_seat=True,
             notification="booking_rejected", label="拒绝"),
        Rule(REQUESTED, EXPIRED, frozenset({SYSTEM}), (_review_deadline_reached,), releases_seat=True,
             notification="booking_expired", label="超时未审核"),
        Rule(REQUESTED, CANCELLED, _CLINIC | {RESIDENT}, (_resident_before_cancel_deadline, _staff_gives_reason),
             releases_seat=True, notification="booking_cancelled", label="取消"),
        Rule(CONFIRMED, CANCELLED, _CLINIC | {RESIDENT}, (_resident_before_cancel_deadline, _staff_gives_reason),
             releases_seat=True, releases_nurse=True, notification="booking_cancelled", reminders=CANCEL,
             label="取消"),
        Rule(CONFIRMED, ON_THE_WAY, _CLINIC_AND_NURSE, (_assigned_nurse_only, _trip_window_open),
             reminders=CANCEL, label="出发"),
        Rule(ON_THE_WAY, IN_SERVICE, _CLINIC_AND_NURSE, (_assigned_nurse_only,), label="开始服务"),
        Rule(IN_SERVICE, COMPLETED, _CLINIC_AND_NURSE, (_assigned_nurse_only, _visit_time_reached),
             label="完成服务"),
        Rule(CONFIRMED, NO_SHOW, _CLINIC_AND_NURSE, (_assigned_nurse_only, _visit_started),
             releases_nurse=True, reminders=CANCEL, label="标记未到场"),
    ),
}

_INDEX: dict[tuple[str, str, str], Rule] = {
    (kind, rule.source, rule.target): rule for kind, rules in TABLES.items() for rule in rules
}

STATUSES: dict[str, frozenset[str]] = {
    kind: frozenset({r.source for r in rules} | {r.target for r in rules}) for kind, rules in TABLES.items()
}


def rule_for(kind: str, source: str, target: str) -> Rule | None:
    return _INDEX.get((kind, source, target))


def targets(kind: str, source: str) -> list[str]:
    """Statuses reachable from ``source`` in one step (for display and tests)."""
    return [rule.target for rule in TABLES[kind] if rule.source == source]


# What to do first, when a step is asked for out of order (nursing visits).
_ORDER_HINTS = {
    (NURSING, CONFIRMED, IN_SERVICE): "护士尚未出发：请先点击「出发」，再开始服务",
    (NURSING, CONFIRMED, COMPLETED): "服务尚未开始：请先「出发」并「开始服务」，再完成服务",
    (NURSING, ON_THE_WAY, COMPLETED): "服务尚未开始：请先「开始服务」，再完成服务",
}

# Bookings that still hold a place (a slot seat, the patient's or visitor's time, a code) — those
# that have not reached a terminal status.
ACTIVE = frozenset({BOOKED, CHECKED_IN, REQUESTED, CONFIRMED, ON_THE_WAY, IN_SERVICE})
# The booking code works (check-in) while the booking is in one of these.
CODE_ACTIVE = frozenset({BOOKED, CONFIRMED})


def decide(kind: str, source: str, target: str, situation: Situation) -> Rule:
    """The rule that allows ``source → target`` for this actor now, or ``TransitionError``."""
    rule = rule_for(kind, source, target)
    if rule is None:
        plain = f"当前状态为「{STATUS_LABELS.get(source, source)}」，不能变更为「{STATUS_LABELS.get(target, target)}」"
        raise TransitionError("invalid_transition", _ORDER_HINTS.get((kind, source, target), plain))
    if situation.actor not in rule.actors:
        raise TransitionError("forbidden", "没有权限执行此操作", "forbidden")
    for guard in rule.guards:
        guard(situation)
    return rule


# Rescheduling is not a status change; it keeps the booking (same id) and moves it to another
# slot of the same institution. Only the family does it, only before the cancellation deadline,
# and only while nobody has been assigned yet (a confirmed visit has a nurse planned for it).
RESCHEDULABLE = {CENTRE: frozenset({BOOKED}), NURSING: frozenset({REQUESTED})}


def check_reschedule(kind: str, status: str, situation: Situation) -> None:
    if situation.actor != RESIDENT:
        raise TransitionError("forbidden", "只有预约人可以改约", "forbidden")
    if status not in RESCHEDULABLE[kind]:
        hint = "，已确认的上门服务请先取消再重新预约" if status == CONFIRMED else ""
        raise TransitionError(
            "invalid_transition", f"当前状态为「{STATUS_LABELS.get(status, status)}」，不能改约{hint}"
        )
    _resident_before_cancel_deadline(situation)


def counts_as_upcoming(status: str) -> bool:
    return status in UPCOMING


def quota_delta(source: str | None, target: str) -> int:
    """How the family's count of active bookings changes with ``source → target``."""
    before = 1 if source is not None and counts_as_upcoming(source) else 0
    return (1 if counts_as_upcoming(target) else 0) - before
