"""Keeping slots generated: at start-up and by a periodic job, for every institution, plus the
coverage check of the holiday data (``/readyz`` detail and the ``calendar_uncovered_year`` gauge)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta

from aiohttp import web
from prometheus_client import Gauge
from pymongo.asynchronous.database import AsyncDatabase

from bot.keys import DB, READINESS, SETTINGS
from scheduling import institutions, slots
from scheduling.calendar import HolidayLookup, RulesError, chinese_calendar_lookup

log = logging.getLogger(__name__)

CALENDAR_UNCOVERED_YEAR = Gauge(
    "calendar_uncovered_year",
    "1 for each year inside the booking horizon that the holiday data (chinesecalendar) does not cover: "
    "no slots are generated for it unless staff set overrides",
    ["year"],
)
# Runs hourly, not daily: the horizon rolls at midnight (Asia/Shanghai) and an idempotent run keeps it
# full within the hour; a daily tick would leave it a day short for up to 24 hours.
REFRESH_EVERY = timedelta(hours=1)


@dataclass
class Coverage:
    uncovered_years: list[int]
    covered_until: date | None
    invalid_rules: list[str] = field(default_factory=list)  # institutions whose stored rules are unusable
    slots: int = 0


async def refresh_all(db: AsyncDatabase, horizon_days: int, today: date | None = None,
                      holidays: HolidayLookup = chinese_calendar_lookup) -> Coverage:
    """Regenerate every institution's slots and report what the holiday data does not cover."""
    today = today or slots.today_local()
    years = set(slots.uncovered_years(today, today + timedelta(days=horizon_days - 1), holidays))
    coverage = Coverage([], slots.covered_until(today, holidays))
    for institution in await institutions.list_institutions(db):
        try:
            report = await slots.generate_slots(db, institution, today, default_horizon_days=horizon_days,
                                                holidays=holidays)
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
    coverage.uncovered_years = sorted(years)
    return coverage


def publish(app: web.Application, coverage: Coverage) -> None:
    detail = app[READINESS].detail
    detail["calendar_uncovered_years"] = coverage.uncovered_years
    detail["calendar_covered_until"] = coverage.covered_until.isoformat() if coverage.covered_until else None
    if coverage.invalid_rules:
        detail["calendar_invalid_rules"] = coverage.invalid_rules
    else:
        detail.pop("calendar_invalid_rules", None)
    CALENDAR_UNCOVERED_YEAR.clear()
    for year in coverage.uncovered_years:
        CALENDAR_UNCOVERED_YEAR.labels(year=str(year)).set(1)


async def refresh_slots(app: web.Application) -> None:
    """The start-up step and the periodic job."""
    coverage = await refresh_all(app[DB], app[SETTINGS].booking_horizon_days)
    publish(app, coverage)
    if coverage.uncovered_years:
        log.warning("holiday data missing for years inside the booking horizon",
                    extra={"years": coverage.uncovered_years})

