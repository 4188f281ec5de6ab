"""The figures of the reports screen. The database aggregates; the shaping into rows is pure
(``*_rows`` functions), so the table, the chart and the CSV/Excel export are the same rows.

TODO(scheduling): the aggregations belong in a ``scheduling/reports.py`` once that package is
free to change; they only read the booking domain's collections."""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from scheduling import transitions as t
from scheduling.booking_base import AUDIT, BOOKINGS, local
from scheduling.calendar import SHANGHAI


@dataclass(frozen=True)
class Report:
    key: str
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    chart_label: int = 0  # the column that labels a bar
    chart_value: int = 1  # the column a bar's length shows
    note: str = ""


REPORTS = {
    "service": "按服务事项与状态", "day": "按日期", "rates": "爽约率与取消率", "extended": "延时服务使用",
    "nurses": "护士工作量", "review": "护理申请审核用时",
}


def _bounds(first: dt.date, last: dt.date) -> dict[str, str]:
    return {"$gte": first.isoformat(), "$lte": last.isoformat()}


async def _bookings(db: AsyncDatabase, institution_id: str, first: dt.date, last: dt.date,
                    projection: dict[str, int]) -> list[dict[str, Any]]:
    return await db[BOOKINGS].find({"institution_id": institution_id, "date": _bounds(first, last)},
                                   projection).to_list(None)


async def by_service(db: AsyncDatabase, institution_id: str, first: dt.date, last: dt.date) -> Report:
    cursor = await db[BOOKINGS].aggregate([
        {"$match": {"institution_id": institution_id, "date": _bounds(first, last)}},
        {"$group": {"_id": {"service": "$service_name", "status": "$status"}, "n": {"$sum": 1}}},
    ])
    grouped = await cursor.to_list(None)
    return Report("service", REPORTS["service"], ("服务事项", "状态", "预约数"), service_rows(grouped), 0, 2)


def service_rows(grouped: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    rows = [(g["_id"].get("service") or "（未命名）", t.STATUS_LABELS.get(g["_id"]["status"], g["_id"]["status"]),
             g["n"]) for g in grouped]
    return sorted(rows, key=lambda r: (r[0], -r[2], r[1]))


async def by_day(db: AsyncDatabase, institution_id: str, first: dt.date, last: dt.date) -> Report:
    found = await _bookings(db, institution_id, first, last, {"date": 1, "status": 1})
    return Report("day", REPORTS["day"], ("日期", "预约数", "已完成", "未到场", "已取消"), day_rows(found))


def day_rows(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    days: dict[str, list[int]] = {}
    for booking in found:
        row = days.setdefault(booking["date"], [0, 0, 0, 0])
        row[0] += 1
        for index, status in ((1, t.COMPLETED), (2, t.NO_SHOW), (3, t.CANCELLED)):
            row[index] += booking["status"] == status
    return [(day, *counts) for day, counts in sorted(days.items())]


async def rates(db: AsyncDatabase, institution_id: str, first: dt.date, last: dt.date) -> Report:
    found = await _bookings(db, institution_id, first, last, {"service_name": 1, "status": 1})
    return Report("rates", REPORTS["rates"], ("服务事项", "预约数", "未到场", "爽约率", "已取消", "取消率"),
                  rate_rows(found), 0, 3, "爽约率 = 未到场 ÷ 预约数；取消率 = 已取消 ÷ 预约数")


def _percent(part: int, whole: int) -> str:
    return f"{part / whole * 100:.1f}%" if whole else "—"


def rate_rows(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    services: dict[str, list[int]] = {}
    for booking in found:
        row = services.setdefault(booking.get("service_name") or "（未命名）", [0, 0, 0])
        row[0] += 1
        row[1] += booking["status"] == t.NO_SHOW
        row[2] += booking["status"] == t.CANCELLED
    total = [sum(r[i] for r in services.values()) for i in range(3)]
    rows = [(name, n, no_show, _percent(no_show, n), cancelled, _percent(cancelled, n))
            for name, (n, no_show, cancelled) in sorted(services.items())]
    if rows:
        rows.append(("合计", total[0], total[1], _percent(total[1], total[0]), total[2], _percent(total[2], total[0])))
    return rows


async def extended(db: AsyncDatabase, institution: dict[str, Any], first: dt.date, last: dt.date) -> Report:
    found = await _bookings(db, institution["_id"], first, last, {"start": 1, "status": 1})
    since = (institution.get("calendar") or {}).get("extended_from") or "17:00"
    return Report("extended", REPORTS["extended"], ("时段", "预约数", "已签到或办结", "未到场"),
                  extended_rows(found, since), note=f"延时时段：工作日 {since} 以后；周六全天（调休上班日按工作日计）")


def extended_rows(found: list[dict[str, Any]], since: str) -> list[tuple[Any, ...]]:
    hour, minute = (int(part) for part in since.split(":"))
    buckets = {"工作日延时时段": [0, 0, 0], "周六": [0, 0, 0], "工作日常规时段": [0, 0, 0]}
    for booking in found:
        start = local(booking["start"])
        if start.weekday() == 5:
            key = "周六"
        elif start.weekday() < 5 and (start.hour, start.minute) >= (hour, minute):
            key = "工作日延时时段"
        else:
            key = "工作日常规时段"
        row = buckets[key]
        row[0] += 1
        row[1] += booking["status"] in (t.CHECKED_IN, t.COMPLETED)
        row[2] += booking["status"] == t.NO_SHOW
    return [(name, *counts) for name, counts in buckets.items()]


async def nurse_workload(db: AsyncDatabase, institution_id: str, first: dt.date, last: dt.date) -> Report:
    found = await db[BOOKINGS].find(
        {"institution_id": institution_id, "date": _bounds(first, last), "nurse_id": {"$ne": None},
         "status": {"$in": [t.CONFIRMED, t.ON_THE_WAY, t.IN_SERVICE, t.COMPLETED, t.NO_SHOW]}},
        {"nurse": 1, "nurse_id": 1, "status": 1, "start": 1, "end": 1, "duration_minutes": 1}).to_list(None)
    return Report("nurses", REPORTS["nurses"], ("护士", "上门次数", "已完成", "服务时长（小时）"),
                  nurse_rows(found), note="服务时长按服务项目时长计（未登记时长的按预约时段计）")


def nurse_rows(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    nurses: dict[str, list[float]] = {}
    for booking in found:
        name = (booking.get("nurse") or {}).get("name") or booking["nurse_id"]
        row = nurses.setdefault(name, [0, 0, 0.0])
        row[0] += 1
        row[1] += booking["status"] == t.COMPLETED
        minutes = booking.get("duration_minutes") or (booking["end"] - booking["start"]).total_seconds() / 60
        row[2] += minutes / 60
    return sorted(((name, int(v), int(done), round(hours, 1)) for name, (v, done, hours) in nurses.items()),
                  key=lambda r: (-r[1], r[0]))


async def review_times(db: AsyncDatabase, institution_id: str, first: dt.date, last: dt.date) -> Report:
    created = {b["_id"]: b for b in await db[BOOKINGS].find(
        {"institution_id": institution_id, "kind": t.NURSING, "date": _bounds(first, last)},
        {"created_at": 1, "service_name": 1}).to_list(None)}
    reviews = await db[AUDIT].find(
        {"entity": "booking", "entity_id": {"$in": list(created)}, "from": t.REQUESTED,
         "to": {"$in": [t.CONFIRMED, t.REJECTED, t.EXPIRED]}}, {"entity_id": 1, "to": 1, "at": 1}).to_list(None)
    columns = ("结果", "申请数", "平均用时（小时）", "中位用时（小时）", "最长（小时）")
    return Report("review", REPORTS["review"], columns,
                  review_rows(created, reviews), 0, 2, "从家属提交到护理部确认、拒绝或超时失效的时间")


def review_rows(created: dict[str, dict[str, Any]], reviews: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    hours: dict[str, list[float]] = {}
    for review in reviews:
        booking = created.get(review["entity_id"])
        if booking is None:
            continue
        spent = (review["at"] - booking["created_at"]).total_seconds() / 3600
        hours.setdefault(t.STATUS_LABELS[review["to"]], []).append(spent)
    return [(label, len(values), round(statistics.fmean(values), 1), round(statistics.median(values), 1),
             round(max(values), 1)) for label, values in sorted(hours.items())]


async def build(db: AsyncDatabase, key: str, institution: dict[str, Any], first: dt.date, last: dt.date) -> Report:
    institution_id = institution["_id"]
    if key == "day":
        return await by_day(db, institution_id, first, last)
    if key == "rates":
        return await rates(db, institution_id, first, last)
    if key == "extended":
        return await extended(db, institution, first, last)
    if key == "nurses":
        return await nurse_workload(db, institution_id, first, last)
    if key == "review":
        return await review_times(db, institution_id, first, last)
    return await by_service(db, institution_id, first, last)


def default_range(now: datetime | None = None) -> tuple[dt.date, dt.date]:
    today = (now or datetime.now(UTC)).astimezone(SHANGHAI).date()
    return today - timedelta(days=29), today + timedelta(days=14)
