"""The pure shaping of the console's report rows (the same rows feed the table, chart and exports)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handlers.console import report_data as r
from handlers.console.reports import bar_chart, csv_bytes


def _at(day: str, hour: int, minute: int = 0) -> datetime:
    local = datetime.fromisoformat(f"{day}T{hour:02d}:{minute:02d}:00+08:00")
    return local.astimezone(UTC)


def test_rates_per_service_and_in_total():
    found = [{"service_name": "备案", "status": s} for s in ("completed", "no_show", "cancelled", "completed")]
    found += [{"service_name": "换药", "status": "no_show"}]
    assert r.rate_rows(found) == [("备案", 4, 1, "25.0%", 1, "25.0%"), ("换药", 1, 1, "100.0%", 0, "0.0%"),
                                  ("合计", 5, 2, "40.0%", 1, "20.0%")]


def test_extended_hours_are_weekday_evenings_and_saturdays():
    found = [{"start": _at("2026-12-01", 17, 30), "status": "completed"},  # Tuesday, after 17:00
             {"start": _at("2026-12-01", 10), "status": "checked_in"},
             {"start": _at("2026-12-05", 9), "status": "no_show"}]  # Saturday
    rows = dict((row[0], row[1:]) for row in r.extended_rows(found, "17:00"))
    assert rows == {"工作日延时时段": (1, 1, 0), "周六": (1, 0, 1), "工作日常规时段": (1, 1, 0)}


def test_review_times_and_nurse_hours():
    created_at = datetime(2026, 12, 1, tzinfo=UTC)
    created = {"b1": {"created_at": created_at}, "b2": {"created_at": created_at}}
    reviews = [{"entity_id": "b1", "to": "confirmed", "at": created_at + timedelta(hours=2)},
               {"entity_id": "b2", "to": "confirmed", "at": created_at + timedelta(hours=4)}]
    assert r.review_rows(created, reviews) == [("已确认", 2, 3.0, 3.0, 4.0)]
    start = created_at
    visits = [{"nurse": {"name": "吕丽"}, "nurse_id": "n1", "status": "completed", "start": start,
               "end": start + timedelta(hours=2), "duration_minutes": 90}]
    assert r.nurse_rows(visits) == [("吕丽", 1, 1, 1.5)]


def test_csv_and_chart_show_the_same_rows():
    report = r.Report("day", "按日期", ("日期", "预约数", "已完成", "未到场", "已取消"),
                      r.day_rows([{"date": "2026-12-01", "status": "completed"},
                                  {"date": "2026-12-01", "status": "no_show"}]))
    assert csv_bytes(report).decode("utf-8-sig").splitlines() == ["日期,预约数,已完成,未到场,已取消",
                                                                  "2026-12-01,2,1,1,0"]
    assert str(bar_chart(report)).count("<rect") == 1
