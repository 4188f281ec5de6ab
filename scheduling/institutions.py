"""Institutions: government service centres (延时服务) and nursing institutions (网约护士).

Documents follow the booking contract: ``{_id, kind, name, address, district, timezone, calendar,
windows (centres), service_area (nursing), cancel_deadline_hours, review_deadline_hours, …}``.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from bot.db import declare_indexes
from scheduling.calendar import CalendarRules, parse_rules

COLLECTION = "institutions"
CENTRE, NURSING = "centre", "nursing"
KINDS = (CENTRE, NURSING)

declare_indexes(COLLECTION, IndexModel([("kind", ASCENDING), ("name", ASCENDING)], name="kind_name"))

# What a resident may see of an institution (everything else is internal configuration).
_PUBLIC_FIELDS = ("kind", "name", "address", "district", "phone", "description", "timezone", "windows",
                  "service_area", "cancel_deadline_hours", "review_deadline_hours")


async def get_institution(db: AsyncDatabase, institution_id: str) -> dict[str, Any] | None:
    return await db[COLLECTION].find_one({"_id": institution_id})


async def list_institutions(db: AsyncDatabase, kind: str | None = None) -> list[dict[str, Any]]:
    query = {"kind": kind} if kind else {}
    return await db[COLLECTION].find(query).sort([("kind", ASCENDING), ("name", ASCENDING)]).to_list(None)


def calendar_rules(institution: dict[str, Any]) -> CalendarRules:
    """The institution's calendar rules; ``RulesError`` if the stored rules are unusable."""
    return parse_rules(institution.get("calendar") or {})


def institution_view(institution: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {"id": institution["_id"]}
    view.update({key: institution[key] for key in _PUBLIC_FIELDS if key in institution})
    view["hours"] = hours_summary(institution.get("calendar") or {})
    return view


def hours_summary(calendar: dict[str, Any]) -> list[str]:
    """Opening hours in plain Chinese, from the stored rules."""
    lines = []
    for season in calendar.get("seasons") or ():
        weekday = season["weekday"]
        lines.append(f"{season.get('label') or season.get('name', '')}（{season['from']} 至 {season['to']}）"
                     f"工作日 {weekday['open']}-{weekday['close']}")
    if calendar.get("weekday"):
        lines.append(f"工作日 {calendar['weekday']['open']}-{calendar['weekday']['close']}")
    for key, label in (("saturday", "周六"), ("sunday", "周日")):
        hours = calendar.get(key)
        lines.append(f"{label} {hours['open']}-{hours['close']}" if hours else f"{label}休息")
    if calendar.get("extended_from"):
        lines.append(f"工作日 {calendar['extended_from']} 以后为延时服务时段")
    if calendar.get("statutory_holidays", "closed") == "closed":
        lines.append("法定节假日休息（工作人员可开放预约时段）；调休上班日按工作日时间服务")
    else:
        lines.append("法定节假日照常服务")
    return lines
