"""Slot generation from calendar rules: a PURE function of rules, a holiday lookup and overrides.

Day decision, in this order:
1. an override ``close`` closes the day; an override ``open`` opens it with its own hours
   (appointment-only by default), whatever the holiday data says, even in a year it does not cover;
2. otherwise the holiday lookup (``scheduling.holidays``: stored years, chinesecalendar, then the
   provisional rules) classifies the day; a year without any data (``NotImplementedError``) gives NO
   slots and is reported, never guessed;
3. a make-up working day (调休上班日, a weekend that is a workday) gets weekday hours of its season;
   a statutory holiday (including the weekends inside a holiday period) is closed unless the rules say
   ``statutory_holidays: open``; an ordinary weekend gets the Saturday/Sunday hours (or none);
4. an override ``capacity`` changes the capacity of that day's regular slots.

A day of a provisional year (no official notice imported yet) gives slots marked ``provisional``;
an override ``open`` is a staff decision and never provisional.

Seasons are inclusive month-day ranges (they may wrap the year end, e.g. 10-01..04-30) and decide the
weekday hours; ``extended_from`` marks slots starting at or after it as the extended hour (延时服务).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from scheduling.holidays import LIBRARY_CALENDAR, DayInfo, DayType, HolidayLookup

SHANGHAI = ZoneInfo("Asia/Shanghai")
QUALIFIED_NURSES = "qualified_nurses"  # capacity_per_slot: the number of active qualified nurses
WINDOWS = "windows"  # capacity_per_slot: the institution's staffed windows
MAX_SLOT_MINUTES = 8 * 60


class RulesError(ValueError):
    """Calendar rules or an override that cannot be used; the message is Chinese, for staff."""


def covered(day: date, lookup: HolidayLookup = LIBRARY_CALENDAR) -> bool:
    try:
        lookup(day)
    except NotImplementedError:
        return False
    return True


@dataclass(frozen=True)
class Hours:
    open: time
    close: time


@dataclass(frozen=True)
class Season:
    name: str
    start: tuple[int, int]  # (month, day), inclusive
    end: tuple[int, int]  # inclusive; start > end wraps the year end
    weekday: Hours

    def contains(self, day: date) -> bool:
        key = (day.month, day.day)
        if self.start <= self.end:
            return self.start <= key <= self.end
        return key >= self.start or key <= self.end


@dataclass(frozen=True)
class CalendarRules:
    seasons: tuple[Season, ...] = ()
    weekday: Hours | None = None  # weekday hours outside every season
    saturday: Hours | None = None
    sunday: Hours | None = None
    slot_minutes: int = 30
    capacity_per_slot: int | str = 1  # an int, WINDOWS or QUALIFIED_NURSES (resolved by the caller)
    extended_from: time | None = None
    statutory_holidays: str = "closed"  # "closed" | "open" (open: the weekday's own hours)
    breaks: tuple[Hours, ...] = ()
    horizon_days: int | None = None  # None: the BOOKING_HORIZON_DAYS setting

    def weekday_hours(self, day: date) -> Hours | None:
        for season in self.seasons:
            if season.contains(day):
                return season.weekday
        return self.weekday

    def regular_hours(self, day: date) -> Hours | None:
        """The hours of ``day`` by its weekday alone (holidays not considered)."""
        return {5: self.saturday, 6: self.sunday}.get(day.weekday(), self.weekday_hours(day))


@dataclass(frozen=True)
class Override:
    date: date
    action: str  # "close" | "open" | "capacity"
    hours: Hours | None = None  # for "open"
    capacity: int | None = None  # for "capacity"; optional for "open"
    appointment_only: bool = True  # for "open"


@dataclass(frozen=True)
class SlotSpec:
    date: date
    start: datetime  # aware, local time of the institution
    end: datetime
    capacity: int
    appointment_only: bool = False
    extended: bool = False
    provisional: bool = False  # the day's holiday data is provisional (no official notice yet)

    def slot_id(self, institution_id: str) -> str:
        return f"{institution_id}|{self.date.isoformat()}|{self.start.strftime('%H:%M')}"


@dataclass(frozen=True)
class Generated:
    slots: list[SlotSpec]
    uncovered_years: frozenset[int] = field(default_factory=frozenset)
    uncovered_dates: tuple[date, ...] = ()
    provisional_years: frozenset[int] = field(default_factory=frozenset)  # years of provisional days


def generate(
    rules: CalendarRules,
    first: date,
    last: date,
    *,
    capacity: int,
    overrides: Mapping[date, Override] | None = None,
    holidays: HolidayLookup = LIBRARY_CALENDAR,
    tz: ZoneInfo = SHANGHAI,
) -> Generated:
    """Slots for every day from ``first`` to ``last`` inclusive; ``capacity`` is the resolved
    capacity per slot (the rules may say "qualified_nurses", which only the caller can count)."""
    overrides = overrides or {}
    slots: list[SlotSpec] = []
    uncovered: list[date] = []
    provisional: set[int] = set()
    day = first
    while day <= last:
        override = overrides.get(day)
        try:
            day_slots, info = _day_slots(rules, day, capacity, override, holidays, tz)
        except NotImplementedError:
            uncovered.append(day)
        else:
            slots.extend(day_slots)
            if info is not None and info.provisional:
                provisional.add(day.year)
        day += timedelta(days=1)
    return Generated(slots, frozenset(d.year for d in uncovered), tuple(uncovered), frozenset(provisional))


def _day_slots(
    rules: CalendarRules, day: date, capacity: int, override: Override | None,
    holidays: HolidayLookup, tz: ZoneInfo,
) -> tuple[list[SlotSpec], DayInfo | None]:
    """The day's slots and its holiday data (None when an override decided the day alone)."""
    if override and override.action == "close":
        return [], None
    if override and override.action == "open":
        assert override.hours is not None
        cap = capacity if override.capacity is None else override.capacity
        return _window_slots(rules, day, override.hours, cap, override.appointment_only, False, tz), None
    info = holidays(day)  # NotImplementedError: the caller records an uncovered day
    if info.type is DayType.WORKDAY:
        hours = rules.weekday_hours(day)  # weekday hours also on a make-up Saturday or Sunday
    elif info.type is DayType.HOLIDAY and rules.statutory_holidays != "open":
        hours = None
    else:
        hours = rules.regular_hours(day)
    if hours is None:
        return [], info
    if override and override.action == "capacity" and override.capacity is not None:
        capacity = override.capacity
    return _window_slots(rules, day, hours, capacity, False, info.provisional, tz), info


def _window_slots(
    rules: CalendarRules, day: date, hours: Hours, capacity: int, appointment_only: bool, provisional: bool,
    tz: ZoneInfo,
) -> list[SlotSpec]:
    step = timedelta(minutes=rules.slot_minutes)
    start = datetime.combine(day, hours.open, tzinfo=tz)
    close = datetime.combine(day, hours.close, tzinfo=tz)
    breaks = [(datetime.combine(day, b.open, tzinfo=tz), datetime.combine(day, b.close, tzinfo=tz))
              for b in rules.breaks]
    slots = []
    while start + step <= close:
        end = start + step
        if not any(start < b_end and b_start < end for b_start, b_end in breaks):
            extended = rules.extended_from is not None and start.time() >= rules.extended_from
            slots.append(SlotSpec(day, start, end, capacity, appointment_only, extended, provisional))
        start = end
    return slots


# --- parsing and validation of the stored (YAML / JSON) form -------------------------------------

def parse_time(value: Any, what: str) -> time:
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) == 2 and all(p.isdigit() and len(p) == 2 for p in parts):
            hour, minute = int(parts[0]), int(parts[1])
            if hour <= 23 and minute <= 59:
                return time(hour, minute)
    raise RulesError(f"{what}的时间格式应为 HH:MM（例如 08:30）")


def parse_hours(value: Any, what: str) -> Hours | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RulesError(f"{what}应包含 open 和 close")
    hours = Hours(parse_time(value.get("open"), f"{what}开始"), parse_time(value.get("close"), f"{what}结束"))
    if hours.open >= hours.close:
        raise RulesError(f"{what}的结束时间必须晚于开始时间")
    return hours


def _month_day(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, str) and len(value) == 5 and value[2] == "-":
        try:
            parsed = date(2024, int(value[:2]), int(value[3:]))  # 2024: a leap year accepts 02-29
        except ValueError:
            pass
        else:
            return parsed.month, parsed.day
    raise RulesError(f"{what}的日期格式应为 MM-DD（例如 05-01）")


def parse_rules(data: Mapping[str, Any]) -> CalendarRules:
    """Validate the stored form (see the booking contract) and build ``CalendarRules``."""
    seasons = tuple(
        Season(str(s.get("name", "")), _month_day(s.get("from"), "季节起始"), _month_day(s.get("to"), "季节结束"),
               _required(parse_hours(s.get("weekday"), "季节工作日时间"), "季节工作日时间"))
        for s in data.get("seasons") or ()
    )
    slot_minutes = data.get("slot_minutes", 30)
    if not isinstance(slot_minutes, int) or isinstance(slot_minutes, bool) or not 5 <= slot_minutes <= MAX_SLOT_MINUTES:
        raise RulesError("时段长度 slot_minutes 应为 5 到 480 之间的整数（分钟）")
    capacity = data.get("capacity_per_slot", 1)
    if capacity not in (QUALIFIED_NURSES, WINDOWS) and (
            not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0):
        raise RulesError("每个时段的容量 capacity_per_slot 应为非负整数、windows 或 qualified_nurses")
    holidays = data.get("statutory_holidays", "closed")
    if holidays not in ("closed", "open"):
        raise RulesError("statutory_holidays 只能是 closed 或 open")
    horizon = data.get("horizon_days")
    if horizon is not None and (not isinstance(horizon, int) or isinstance(horizon, bool) or not 1 <= horizon <= 90):
        raise RulesError("horizon_days 应为 1 到 90 之间的整数")
    extended = data.get("extended_from")
    rules = CalendarRules(
        seasons=seasons,
        weekday=parse_hours(data.get("weekday"), "工作日时间"),
        saturday=parse_hours(data.get("saturday"), "周六时间"),
        sunday=parse_hours(data.get("sunday"), "周日时间"),
        slot_minutes=slot_minutes,
        capacity_per_slot=capacity,
        extended_from=parse_time(extended, "延时起点") if extended is not None else None,
        statutory_holidays=holidays,
        breaks=tuple(_required(parse_hours(b, "休息时间"), "休息时间") for b in data.get("breaks") or ()),
        horizon_days=horizon,
    )
    uncovered = [d for d in _every_day_of_a_leap_year() if rules.weekday_hours(d) is None]
    if uncovered:
        raise RulesError(f"{uncovered[0]:%m-%d} 不在任何季节内，且未设置默认工作日时间 weekday")
    return rules


def _required(hours: Hours | None, what: str) -> Hours:
    if hours is None:
        raise RulesError(f"缺少{what}")
    return hours


def _every_day_of_a_leap_year() -> Iterable[date]:
    day = date(2024, 1, 1)
    while day.year == 2024:
        yield day
        day += timedelta(days=1)
