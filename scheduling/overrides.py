"""Calendar overrides set by staff: close a day, open a day (appointment-only by default, e.g. a
statutory holiday), or change the capacity of a day's regular slots. One override per institution
and date (``_id`` = ``<institution_id>|<YYYY-MM-DD>``); setting it again replaces it."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from bot.db import declare_indexes
from scheduling.calendar import Override, RulesError, parse_hours

COLLECTION = "calendar_overrides"
ACTIONS = ("close", "open", "capacity")
MAX_CAPACITY = 1000
MAX_REASON = 200

declare_indexes(COLLECTION, IndexModel([("institution_id", ASCENDING), ("date", ASCENDING)],
                                       name="institution_date"))


def parse_override(body: dict[str, Any]) -> dict[str, Any]:
    """Validate a staff request into the stored fields; ``RulesError`` with a Chinese message.
    The date itself is checked by the caller (it knows today)."""
    action = body.get("action")
    if action not in ACTIONS:
        raise RulesError("action 只能是 close（停止服务）、open（开放预约）或 capacity（调整容量）")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise RulesError(f"请填写调整原因（不超过 {MAX_REASON} 字）")
    fields: dict[str, Any] = {"action": action, "reason": reason.strip()}
    capacity = body.get("capacity")
    if capacity is not None or action == "capacity":
        if not isinstance(capacity, int) or isinstance(capacity, bool) or not 0 <= capacity <= MAX_CAPACITY:
            raise RulesError(f"容量 capacity 应为 0 到 {MAX_CAPACITY} 之间的整数")
        fields["capacity"] = capacity
    if action == "open":
        parse_hours({"open": body.get("open"), "close": body.get("close")}, "开放时间")
        fields["open"], fields["close"] = body["open"], body["close"]
        appointment_only = body.get("appointment_only", True)
        if not isinstance(appointment_only, bool):
            raise RulesError("appointment_only 应为 true 或 false")
        fields["appointment_only"] = appointment_only
    elif action == "close" and capacity is not None:
        raise RulesError("停止服务（close）不需要填写容量")
    return fields


def to_override(document: dict[str, Any]) -> Override:
    hours = None
    if document["action"] == "open":
        hours = parse_hours({"open": document["open"], "close": document["close"]}, "开放时间")
    return Override(date=date.fromisoformat(document["date"]), action=document["action"], hours=hours,
                    capacity=document.get("capacity"), appointment_only=document.get("appointment_only", True))


async def set_override(db: AsyncDatabase, institution_id: str, day: date, fields: dict[str, Any],
                       by: str) -> dict[str, Any]:
    document = {"_id": f"{institution_id}|{day.isoformat()}", "institution_id": institution_id,
                "date": day.isoformat(), **fields, "by": by, "at": datetime.now(UTC)}
    await db[COLLECTION].replace_one({"_id": document["_id"]}, document, upsert=True)
    return document


async def delete_override(db: AsyncDatabase, institution_id: str, day: date) -> bool:
    result = await db[COLLECTION].delete_one({"_id": f"{institution_id}|{day.isoformat()}"})
    return result.deleted_count == 1


async def list_overrides(db: AsyncDatabase, institution_id: str, first: date | None = None,
                         last: date | None = None) -> list[dict[str, Any]]:
    query: dict[str, Any] = {"institution_id": institution_id}
    bounds = {op: d.isoformat() for op, d in (("$gte", first), ("$lte", last)) if d is not None}
    if bounds:
        query["date"] = bounds
    return await db[COLLECTION].find(query).sort("date", ASCENDING).to_list(None)


def override_view(document: dict[str, Any]) -> dict[str, Any]:
    view = {key: document[key] for key in ("institution_id", "date", "action", "open", "close", "capacity",
                                           "appointment_only", "reason", "by", "at") if key in document}
    return view
