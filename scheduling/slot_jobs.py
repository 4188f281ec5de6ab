"""Keeping slots generated: at start-up and by a periodic job, for every institution; the coverage
check of the holiday data (``/readyz`` detail, the ``calendar_uncovered_year`` and
``calendar_provisional_year`` gauges, a daily alarm to admin staff); and the import of a year.

Staff have no message channel yet (the outbox reaches residents by WeChat openid only), so the
daily alarm is a document in ``staff_alerts`` (one per day), listed by
``GET /api/v1/staff/calendar/holidays``, besides the log, the readiness detail and the metric.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from aiohttp import web
from prometheus_client import Gauge
from pymongo.asynchronous.database import AsyncDatabase

from bot.keys import DB, READINESS, SETTINGS
from scheduling import holidays, institutions, overrides, slots
from scheduling.calendar import SHANGHAI, DayType, HolidayLookup, RulesError, generate

log = logging.getLogger(__name__)

CALENDAR_UNCOVERED_YEAR = Gauge(
    "calendar_uncovered_year",
    "1 for each year inside the booking horizon without any holiday data (neither an official notice nor "
    "the provisional rules): no slots are generated for it unless staff set overrides",
    ["year"],
)
CALENDAR_PROVISIONAL_YEAR = Gauge(
    "calendar_provisional_year",
    "1 for each year inside the booking horizon (or the alert lead after it) whose holiday arrangement has "
    "not been imported from the State Council's notice: its slots are provisional",
    ["year"],
)
# Runs hourly, not daily: the horizon rolls at midnight (Asia/Shanghai) and an idempotent run keeps it
# full within the hour; a daily tick would leave it a day short for up to 24 hours.
REFRESH_EVERY = timedelta(hours=1)
# Staff are alarmed about a provisional year this many days before the horizon reaches it, so the
# official notice can be imported before residents book provisional days.
ALERT_LEAD_DAYS = 31


@dataclass
class Coverage:
    uncovered_years: list[int]
    covered_until: date | None  # last day of the consecutive officially covered years from today
    invalid_rules: list[str] = field(default_factory=list)  # institutions whose stored rules are unusable
    slots: int = 0
    provisional_years: list[int] = field(default_factory=list)  # inside the horizon + ALERT_LEAD_DAYS
    regenerations: list[slots.GenerationReport] = field(default_factory=list)


async def refresh_all(db: AsyncDatabase, horizon_days: int, today: date | None = None,
                      holidays_lookup: HolidayLookup | None = None) -> Coverage:
    """Regenerate every institution's slots and report what the holiday data does not cover.
    Without ``holidays_lookup`` each institution's run reads the holiday calendar under its lock, so a
    run that overlaps an import never writes the slots of the calendar the import replaced."""
    today = today or slots.today_local()
    lookup = holidays_lookup if holidays_lookup is not None else await holidays.load_calendar(db)
    last = today + timedelta(days=horizon_days - 1)
    years = set(slots.uncovered_years(today, last, lookup))
    coverage = Coverage([], slots.covered_until(today, lookup),
                        provisional_years=slots.provisional_years(today, last + timedelta(days=ALERT_LEAD_DAYS),
                                                                  lookup))
    for institution in await institutions.list_institutions(db):
        try:
            report = await slots.generate_slots(db, institution, today, default_horizon_days=horizon_days,
                                                holidays=holidays_lookup)
        except RulesError as exc:
            log.error("calendar rules unusable, no slots generated",
                      extra={"institution_id": institution["_id"], "reason": str(exc)})
            coverage.invalid_rules.append(institution["_id"])
            continue
        except TimeoutError:
            # another instance keeps regenerating this institution; its run serves us too
            log.warning("slot generation busy elsewhere, skipped", extra={"institution_id": institution["_id"]})
            continue
        years.update(report.uncovered_years)
        coverage.slots += report.upserted
        coverage.regenerations.append(report)
    coverage.uncovered_years = sorted(years)
    return coverage


def publish(app: web.Application, coverage: Coverage) -> None:
    detail = app[READINESS].detail
    detail["calendar_uncovered_years"] = coverage.uncovered_years
    detail["calendar_provisional_years"] = coverage.provisional_years
    detail["calendar_covered_until"] = coverage.covered_until.isoformat() if coverage.covered_until else None
    if coverage.invalid_rules:
        detail["calendar_invalid_rules"] = coverage.invalid_rules
    else:
        detail.pop("calendar_invalid_rules", None)
    CALENDAR_UNCOVERED_YEAR.clear()
    for year in coverage.uncovered_years:
        CALENDAR_UNCOVERED_YEAR.labels(year=str(year)).set(1)
    CALENDAR_PROVISIONAL_YEAR.clear()
    for year in coverage.provisional_years:
        CALENDAR_PROVISIONAL_YEAR.labels(year=str(year)).set(1)


def provisional_alert_message(years: list[int]) -> str:
    listed = "、".join(f"{year} 年" for year in years)
    return (f"{listed}的节假日安排尚未导入（国务院办公厅关于部分节假日安排的通知）。这些日期的预约时段目前按规则暂定："
            "法定节假日按规则放假、周末休息、没有调休上班日，群众预约时会看到“以国务院通知为准”。"
            "通知发布后请管理员尽快导入：python -m bot calendar import 文件，"
            f"或 PUT /api/v1/staff/calendar/holidays/{years[0]}。")


async def raise_alarms(db: AsyncDatabase, coverage: Coverage, today: date | None = None) -> bool:
    """The daily alarm to admin staff while a year is provisional; True when today's was created."""
    if not coverage.provisional_years:
        return False
    today = today or slots.today_local()
    created = await holidays.record_alert(db, holidays.PROVISIONAL_ALERT, today,
                                          provisional_alert_message(coverage.provisional_years),
                                          {"years": coverage.provisional_years})
    log.warning("holiday arrangement not imported: slots of these years are provisional",
                extra={"years": coverage.provisional_years, "alert_created": created})
    return created


async def refresh_slots(app: web.Application) -> None:
    """The start-up step and the periodic job: seed the library's years, regenerate, alarm."""
    db = app[DB]
    await holidays.seed_library(db)
    coverage = await refresh_all(db, app[SETTINGS].booking_horizon_days)
    publish(app, coverage)
    await raise_alarms(db, coverage)
    if coverage.uncovered_years:
        log.warning("holiday data missing for years inside the booking horizon",
                    extra={"years": coverage.uncovered_years})


# --- importing a year -----------------------------------------------------------------------------

@dataclass
class ImportReport:
    calendar: holidays.YearCalendar
    previous_source: str | None  # what the year was before: official, provisional or None (no data)
    previous_origin: str | None  # stored, chinesecalendar, rules or None
    changed_days: list[dict[str, Any]]
    coverage: Coverage
    affected_bookings: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        return {"calendar": self.calendar.view(), "previous_source": self.previous_source,
                "previous_origin": self.previous_origin, "changed_days": self.changed_days,
                "regeneration": [r.summary() for r in self.coverage.regenerations],
                "invalid_rules": self.coverage.invalid_rules,
                "affected_bookings": self.affected_bookings}

    def lines(self) -> list[str]:
        """The report in Chinese, for the command line."""
        calendar = self.calendar
        label = holidays.SOURCE_LABELS[calendar.source]
        out = [f"已导入 {calendar.year} 年节假日安排（{label}）" + (f"：{calendar.notice}" if calendar.notice else "")]
        for holiday in calendar.holidays:
            makeup = "、".join(holidays.weekday_label(d) for d in holiday.makeup_workdays) or "无"
            out.append(f"  {holiday.name}：{holiday.first} 至 {holiday.last} 放假；调休上班：{makeup}")
        if calendar.provisional:
            out.append("  注意：这一年仍是暂定安排，时段标为暂定，系统会继续每天提醒导入正式通知。")
        before = (f"原为{holidays.SOURCE_LABELS[self.previous_source]}安排" if self.previous_source
                  else "原先没有数据")
        out.append(f"与原安排相比（{before}）有 {len(self.changed_days)} 天变化"
                   + ("：" if self.changed_days else "。"))
        for change in self.changed_days[:40]:
            out.append(f"  {change['date']}：{change['before']} → {change['after']}")
        if len(self.changed_days) > 40:
            out.append(f"  ……另有 {len(self.changed_days) - 40} 天")
        for report in self.coverage.regenerations:
            out.append(f"已重新生成 {report.institution_id} {report.first} 至 {report.last} 的 "
                       f"{report.upserted} 个时段，撤下 {report.withdrawn} 个无人预约的时段")
        for institution_id in self.coverage.invalid_rules:
            out.append(f"  {institution_id} 的日历规则有误，未能生成时段")
        if self.affected_bookings:
            out.append(f"以下 {len(self.affected_bookings)} 个预约落在现已不开放的日期，预约没有被取消，"
                       "请联系群众改约或由工作人员开放当天：")
            for booking in self.affected_bookings:
                out.append(f"  {booking['booking_id']}  {booking['institution_name'] or booking['institution_id']}  "
                           f"{booking['start']}  {booking['service_name']}（{booking['status']}）：{booking['reason']}")
        else:
            out.append("没有预约落在不开放的日期。")
        return out


async def import_year(db: AsyncDatabase, calendar: holidays.YearCalendar, by: str, *, horizon_days: int,
                      today: date | None = None) -> ImportReport:
    """Store ``calendar`` (replacing the year), regenerate every institution's slots (booked counts
    untouched), and report the open bookings of the year that now fall on a day their institution no
    longer serves. Bookings are never cancelled here: staff contact the families."""
    today = today or slots.today_local()
    before = (await holidays.load_calendar(db)).year(calendar.year)
    stored = await holidays.store_year(db, calendar, by)
    coverage = await refresh_all(db, horizon_days, today)
    after = await holidays.load_calendar(db)
    affected = await bookings_on_closed_days(db, after, max(today, date(calendar.year, 1, 1)),
                                             date(calendar.year, 12, 31))
    log.info("holiday year imported", extra={"year": calendar.year, "source": calendar.source, "by": by,
                                             "affected_bookings": len(affected)})
    return ImportReport(stored, before.source if before else None, before.origin if before else None,
                        holidays.changed_days(before, stored), coverage, affected)


async def bookings_on_closed_days(db: AsyncDatabase, lookup: HolidayLookup, first: date,
                                  last: date) -> list[dict[str, Any]]:
    """Open bookings from ``first`` to ``last`` whose slot the institution's rules, overrides and
    ``lookup`` no longer produce (a day that became a holiday, or a make-up day that is gone)."""
    if last < first:
        return []
    by_institution: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for booking in await holidays.open_bookings_between(db, first, last):
        by_institution[booking["institution_id"]].append(booking)
    affected: list[dict[str, Any]] = []
    for institution_id, found in by_institution.items():
        institution = await institutions.get_institution(db, institution_id)
        if institution is None:
            continue
        try:
            rules = institutions.calendar_rules(institution)
        except RulesError:
            continue  # reported as invalid rules by the regeneration
        days = sorted({date.fromisoformat(b["date"]) for b in found})
        override_docs = await overrides.list_overrides(db, institution_id, days[0], days[-1])
        day_overrides = {o.date: o for o in map(overrides.to_override, override_docs)}
        produced: set[str] = set()
        for day in days:
            generated = generate(rules, day, day, capacity=1, overrides=day_overrides, holidays=lookup)
            produced.update(spec.slot_id(institution_id) for spec in generated.slots)
        for booking in found:
            if booking["slot_id"] in produced:
                continue
            day = date.fromisoformat(booking["date"])
            affected.append({
                "booking_id": booking["_id"], "institution_id": institution_id,
                "institution_name": booking.get("institution_name") or institution.get("name", ""),
                "kind": booking.get("kind"), "service_name": booking.get("service_name", ""),
                "slot_id": booking["slot_id"], "date": booking["date"],
                "start": booking["start"].astimezone(SHANGHAI).isoformat(), "status": booking["status"],
                "provisional": bool(booking.get("provisional")), "reason": _closed_reason(lookup, day),
            })
    return sorted(affected, key=lambda b: (b["start"], b["booking_id"]))


def _closed_reason(lookup: HolidayLookup, day: date) -> str:
    try:
        info = lookup(day)
    except NotImplementedError:
        return "该日没有节假日数据"
    if info.type is DayType.HOLIDAY:
        return f"该日为{info.holiday_name}假期"
    if info.type is DayType.WEEKEND:
        return "该日为周末休息日（不再是调休上班日）"
    return "该日已不在服务时间内"
