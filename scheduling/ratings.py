"""Ratings (政务服务“好差评”) of both services — a centre visit and a nursing visit — and the
follow-up of bad ratings.

- Invitation: the ``rating-invitations`` job finds completed bookings without an invitation and,
  in one transaction, records the invitation (``rating_invitations``, ``_id`` = booking id, so once)
  and enqueues two keyed outbox items: one now and one 3 days later; rating cancels the second.
  Each is a stored item with a unique key: sent once, not twice, not never.
- Rating: the national five levels, optional tags and a comment; one per booking (``_id`` = booking
  id and a unique index on ``booking_id``), changeable within 7 days of the first rating (each
  change kept in ``history``).
- Follow-up: 不满意 and 非常不满意 open a case for the institution (``rating_follow_ups``, one per
  booking) due in 15 working days (statutory holidays and 调休 from the holiday calendar); staff
  record their contact with the resident and the fix, and the resident is told the result through
  the outbox. Open cases past their deadline are overdue (``rating_follow_ups_overdue`` gauge).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prometheus_client import Gauge
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.accounts.staff import ADMIN, CENTRE_STAFF, CLINIC_STAFF, StaffMember
from bot.db import declare_indexes, in_transaction
from bot.errors import ApiError, bad_request, not_found
from bot.notify import outbox
from scheduling import holidays
from scheduling import transitions as t
from scheduling.booking_base import BOOKINGS, local, notification_payload
from scheduling.calendar import SHANGHAI
from scheduling.holidays import DayInfo, DayType, HolidayCalendar

RATINGS, INVITATIONS, FOLLOW_UPS = "ratings", "rating_invitations", "rating_follow_ups"
LEVELS = ("非常满意", "满意", "基本满意", "不满意", "非常不满意")
SCORES = {level: 5 - n for n, level in enumerate(LEVELS)}
BAD = frozenset({"不满意", "非常不满意"})
TAGS = ("态度热情", "准时守约", "专业细致", "讲解清楚", "等待时间长", "态度不好", "不够专业", "未按约定时间",
        "收费不清楚", "流程繁琐")
CHANGE_WINDOW = timedelta(days=7)
REMINDER_AFTER = timedelta(days=3)
FOLLOW_UP_WORKING_DAYS = 15
INVITE_LOOKBACK = timedelta(days=7)
OPEN, CONTACTED, RESOLVED = "open", "contacted", "resolved"
STAFF_ROLES = frozenset({ADMIN, CENTRE_STAFF, CLINIC_STAFF})

declare_indexes(RATINGS, IndexModel("booking_id", unique=True, name="booking_unique"),
                IndexModel([("institution_id", ASCENDING), ("rated_at", ASCENDING)], name="institution_rated"))
declare_indexes(INVITATIONS, IndexModel("created_at", name="created"))
declare_indexes(FOLLOW_UPS, IndexModel([("status", ASCENDING), ("deadline", ASCENDING)], name="status_deadline"),
                IndexModel([("institution_id", ASCENDING), ("status", ASCENDING)], name="institution_status"))

OVERDUE = Gauge("rating_follow_ups_overdue", "Open follow-up cases of bad ratings past their 15-working-day deadline")

BOOKING_NOT_FOUND = not_found("找不到该预约", "booking_not_found")
CASE_NOT_FOUND = not_found("找不到该回访工单", "follow_up_not_found")


# ---------------------------------------------------------------- working days (pure)


def holiday_lookup(stored: HolidayCalendar | None = None) -> Callable[[date], DayInfo]:
    """The holiday calendar used for deadlines: the stored calendar (``scheduling.holidays``: stored
    years first, then chinesecalendar, then the provisional rules) when given, else the same lookup
    without the database's years."""
    return stored if stored is not None else holidays.LIBRARY_CALENDAR


async def stored_holiday_lookup(db: AsyncDatabase) -> Callable[[date], DayInfo]:
    """The holiday calendar as stored (what staff imported), for deadlines computed with a database."""
    return holiday_lookup(await holidays.load_calendar(db))


def is_working_day(day: date, lookup: Callable[[date], DayInfo]) -> bool:
    try:
        return lookup(day).type is DayType.WORKDAY
    except NotImplementedError:  # a year without data: weekdays, until the year's notice is known
        return day.weekday() < 5


def add_working_days(start: date, days: int, lookup: Callable[[date], DayInfo] | None = None) -> date:
    """The ``days``-th working day after ``start`` (``start`` itself not counted); make-up working
    days (调休上班日) count, statutory holidays and ordinary rest days do not."""
    lookup = lookup or holiday_lookup()
    day, counted = start, 0
    while counted < days:
        day += timedelta(days=1)
        if is_working_day(day, lookup):
            counted += 1
    return day


# ---------------------------------------------------------------- invitations


def _payload(booking: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return notification_payload(booking, **extra)


async def invite_completed(db: AsyncDatabase, now: datetime | None = None, limit: int = 500) -> int:
    """Job: invite the residents of bookings completed in the last days (each booking once)."""
    now = now or datetime.now(UTC)
    invited = 0
    query = {"status": t.COMPLETED, "updated_at": {"$gte": now - INVITE_LOOKBACK}}
    async for booking in db[BOOKINGS].find(query).limit(limit):
        if await db[INVITATIONS].find_one({"_id": booking["_id"]}, {"_id": 1}):
            continue

        async def work(session: AsyncClientSession, booking: dict[str, Any] = booking) -> None:
            completed_at = booking["updated_at"]
            await db[INVITATIONS].insert_one({"_id": booking["_id"], "openid": booking["openid"],
                                              "kind": booking["kind"], "completed_at": completed_at,
                                              "created_at": now}, session=session)
            payload = _payload(booking)
            await outbox.enqueue(db, kind="rating_invitation", openid=booking["openid"], payload=payload,
                                 key=f"rating_invite:{booking['_id']}:1", session=session)
            await outbox.enqueue(db, kind="rating_invitation", openid=booking["openid"], payload=payload,
                                 due_at=max(now, completed_at + REMINDER_AFTER),
                                 key=f"rating_invite:{booking['_id']}:2", session=session)

        try:
            await in_transaction(db.client, work)
        except DuplicateKeyError:
            continue  # another instance invited it meanwhile
        invited += 1
    return invited


# ---------------------------------------------------------------- rating


def parse_rating(level: Any, tags: Any, comment: Any) -> tuple[str, list[str], str]:
    if level not in LEVELS:
        raise bad_request("invalid_level", f"评价等级应为以下之一：{'、'.join(LEVELS)}")
    tags = tags or []
    if not isinstance(tags, list) or len(tags) > 5 or any(tag not in TAGS for tag in tags):
        raise bad_request("invalid_tags", f"标签最多 5 个，可选：{'、'.join(TAGS)}")
    comment = comment or ""
    if not isinstance(comment, str) or len(comment) > 500:
        raise bad_request("invalid_comment", "评价内容不超过 500 字")
    return level, list(dict.fromkeys(tags)), comment.strip()


async def rate(db: AsyncDatabase, openid: str, booking_id: str, *, level: Any, tags: Any = None,
               comment: Any = None, now: datetime | None = None) -> dict[str, Any]:
    """Rate a completed booking, or change the rating within 7 days of the first one."""
    now = now or datetime.now(UTC)
    level, tags, comment = parse_rating(level, tags, comment)
    booking = await db[BOOKINGS].find_one({"_id": booking_id}) if isinstance(booking_id, str) else None
    if booking is None or booking["openid"] != openid:
        raise BOOKING_NOT_FOUND
    if booking["status"] != t.COMPLETED:
        raise ApiError(409, "not_completed", "服务完成后才能评价")
    entry = {"at": now, "level": level, "score": SCORES[level], "tags": tags, "comment": comment}
    lookup = await stored_holiday_lookup(db) if level in BAD else None

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        existing = await db[RATINGS].find_one({"_id": booking_id}, session=session)
        if existing is None:
            rating = {"_id": booking_id, "booking_id": booking_id, "openid": openid, "kind": booking["kind"],
                      "institution_id": booking["institution_id"], "service_id": booking["service_id"],
                      "service_name": booking.get("service_name", ""), "nurse_id": booking.get("nurse_id"),
                      "month": local(booking["start"]).strftime("%Y-%m"), "first_rated_at": now, "rated_at": now,
                      "level": level, "score": SCORES[level], "tags": tags, "comment": comment, "history": [entry]}
            await db[RATINGS].insert_one(rating, session=session)
        else:
            if now > existing["first_rated_at"] + CHANGE_WINDOW:
                raise ApiError(409, "rating_locked", "评价提交 7 天后不能再修改")
            await db[RATINGS].update_one({"_id": booking_id}, {
                "$set": {"rated_at": now, "level": level, "score": SCORES[level], "tags": tags, "comment": comment},
                "$push": {"history": entry}}, session=session)
            rating = await db[RATINGS].find_one({"_id": booking_id}, session=session)
        await outbox.cancel(db, f"rating_invite:{booking_id}:2", session=session)
        if level in BAD:
            await _open_case(db, session, booking, rating, now, lookup)
        return rating

    return await in_transaction(db.client, work)


async def _open_case(db: AsyncDatabase, session: AsyncClientSession, booking: dict[str, Any],
                     rating: dict[str, Any], now: datetime,
                     lookup: Callable[[date], DayInfo] | None = None) -> None:
    """One case per booking: a later bad rating of the same booking updates the open case."""
    opened_on = now.astimezone(SHANGHAI).date()
    existing = await db[FOLLOW_UPS].find_one({"_id": booking["_id"]}, session=session)
    if existing is not None:
        await db[FOLLOW_UPS].update_one({"_id": booking["_id"]}, {"$set": {
            "level": rating["level"], "comment": rating["comment"], "tags": rating["tags"]}}, session=session)
        return
    await db[FOLLOW_UPS].insert_one({
        "_id": booking["_id"], "booking_id": booking["_id"], "institution_id": booking["institution_id"],
        "kind": booking["kind"], "openid": booking["openid"], "service_name": booking.get("service_name", ""),
        "nurse_id": booking.get("nurse_id"), "level": rating["level"], "tags": rating["tags"],
        "comment": rating["comment"], "opened_at": now, "opened_on": opened_on.isoformat(),
        "deadline": add_working_days(opened_on, FOLLOW_UP_WORKING_DAYS, lookup).isoformat(), "status": OPEN,
        "contacts": [], "fix": None, "result": None, "resolved_at": None}, session=session)


async def get_rating(db: AsyncDatabase, openid: str, booking_id: str) -> dict[str, Any] | None:
    return await db[RATINGS].find_one({"_id": booking_id, "openid": openid})


def rating_view(rating: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    return {"booking_id": rating["booking_id"], "kind": rating["kind"], "level": rating["level"],
            "score": rating["score"], "tags": rating["tags"], "comment": rating["comment"],
            "first_rated_at": rating["first_rated_at"], "rated_at": rating["rated_at"],
            "changeable_until": rating["first_rated_at"] + CHANGE_WINDOW,
            "changeable": now <= rating["first_rated_at"] + CHANGE_WINDOW}


# ---------------------------------------------------------------- follow-up cases


def _staff_for(member: StaffMember, case: dict[str, Any]) -> None:
    if member.role not in STAFF_ROLES or not member.may_act_for(case["institution_id"]):
        raise ApiError(403, "forbidden", "只有本机构的工作人员可以处理该回访工单")


async def _case(db: AsyncDatabase, member: StaffMember, case_id: str) -> dict[str, Any]:
    case = await db[FOLLOW_UPS].find_one({"_id": case_id}) if isinstance(case_id, str) else None
    if case is None:
        raise CASE_NOT_FOUND
    _staff_for(member, case)
    return case


def _note(value: Any, label: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 500:
        raise bad_request("invalid_note", f"请填写{label}（不超过 500 字）")
    return value.strip()


async def record_contact(db: AsyncDatabase, member: StaffMember, case_id: str, note: Any,
                         now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    case = await _case(db, member, case_id)
    if case["status"] == RESOLVED:
        raise ApiError(409, "follow_up_resolved", "该回访工单已办结")
    entry = {"at": now, "by": member.username, "note": _note(note, "回访情况")}
    await db[FOLLOW_UPS].update_one({"_id": case_id, "status": {"$ne": RESOLVED}},
                                    {"$push": {"contacts": entry}, "$set": {"status": CONTACTED}})
    return await db[FOLLOW_UPS].find_one({"_id": case_id})


async def resolve(db: AsyncDatabase, member: StaffMember, case_id: str, *, fix: Any, result: Any,
                  now: datetime | None = None) -> dict[str, Any]:
    """Close the case with the fix, and tell the resident the result (outbox, same transaction)."""
    now = now or datetime.now(UTC)
    case = await _case(db, member, case_id)
    fix, result = _note(fix, "整改措施"), _note(result, "告知群众的处理结果")
    if not case["contacts"]:
        raise ApiError(409, "contact_required", "请先记录与群众的联系情况，再办结")

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        updated = await db[FOLLOW_UPS].update_one(
            {"_id": case_id, "status": {"$ne": RESOLVED}},
            {"$set": {"status": RESOLVED, "fix": fix, "result": result, "resolved_at": now,
                      "resolved_by": member.username}}, session=session)
        if updated.modified_count != 1:
            raise ApiError(409, "follow_up_resolved", "该回访工单已办结")
        booking = await db[BOOKINGS].find_one({"_id": case["booking_id"]}, session=session)
        await outbox.enqueue(db, kind="follow_up_result", openid=case["openid"], session=session,
                             key=f"follow_up_result:{case_id}", payload=_payload(booking, reason=result))
        return await db[FOLLOW_UPS].find_one({"_id": case_id}, session=session)

    return await in_transaction(db.client, work)


def is_overdue(case: dict[str, Any], today: date) -> bool:
    return case["status"] != RESOLVED and date.fromisoformat(case["deadline"]) < today


async def list_cases(db: AsyncDatabase, institution_id: str | None, *, status: str | None = None,
                     limit: int = 200) -> list[dict[str, Any]]:
    query: dict[str, Any] = {}
    if institution_id is not None:
        query["institution_id"] = institution_id
    if status:
        query["status"] = status
    return await db[FOLLOW_UPS].find(query).sort("deadline", ASCENDING).limit(limit).to_list(None)


def case_view(case: dict[str, Any], today: date) -> dict[str, Any]:
    return {"id": case["_id"], "booking_id": case["booking_id"], "institution_id": case["institution_id"],
            "kind": case["kind"], "service_name": case["service_name"], "nurse_id": case.get("nurse_id"),
            "level": case["level"], "tags": case["tags"], "comment": case["comment"], "opened_at": case["opened_at"],
            "deadline": case["deadline"], "status": case["status"], "overdue": is_overdue(case, today),
            "contacts": case["contacts"], "fix": case["fix"], "result": case["result"],
            "resolved_at": case["resolved_at"]}


async def count_overdue(db: AsyncDatabase, today: date, institution_id: str | None = None) -> int:
    query: dict[str, Any] = {"status": {"$in": [OPEN, CONTACTED]}, "deadline": {"$lt": today.isoformat()}}
    if institution_id is not None:
        query["institution_id"] = institution_id
    return await db[FOLLOW_UPS].count_documents(query)


async def update_overdue_metric(db: AsyncDatabase, now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    overdue = await count_overdue(db, now.astimezone(SHANGHAI).date())
    OVERDUE.set(overdue)
    return overdue


# ---------------------------------------------------------------- summaries for the console


GROUPS = {"service": "$service_id", "nurse": "$nurse_id", "month": "$month", "kind": "$kind"}


async def summary(db: AsyncDatabase, institution_id: str | None, by: str) -> list[dict[str, Any]]:
    """Counts per level and the satisfaction rate (非常满意 + 满意 + 基本满意) per service, nurse or month."""
    if by not in GROUPS:
        raise bad_request("invalid_group", f"by 应为以下之一：{'、'.join(GROUPS)}")
    query: dict[str, Any] = {} if institution_id is None else {"institution_id": institution_id}
    groups: dict[Any, dict[str, Any]] = {}
    async for rating in db[RATINGS].find(query, {"service_id": 1, "service_name": 1, "nurse_id": 1, "month": 1,
                                                 "kind": 1, "level": 1, "score": 1}):
        key = rating.get(GROUPS[by][1:])
        group = groups.setdefault(key, {"key": key, "label": rating.get("service_name") if by == "service" else key,
                                        "count": 0, "levels": dict.fromkeys(LEVELS, 0), "score_sum": 0})
        group["count"] += 1
        group["levels"][rating["level"]] += 1
        group["score_sum"] += rating["score"]
    out = []
    for group in groups.values():
        satisfied = group["count"] - sum(group["levels"][level] for level in BAD)
        out.append({"key": group["key"], "label": group["label"], "count": group["count"], "levels": group["levels"],
                    "average_score": round(group["score_sum"] / group["count"], 2),
                    "satisfaction_rate": round(satisfied / group["count"], 4)})
    return sorted(out, key=lambda g: (g["key"] is None, str(g["key"])))
