"""Ratings (好差评, issue 16): invitations sent once each, one rating per booking changeable for 7
days, bad ratings open a follow-up due in 15 working days, the resident is told the result."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from bot.accounts.staff import StaffMember
from bot.errors import ApiError
from scheduling import bookings, holidays, ratings
from scheduling import transitions as t
from scheduling.booking_base import Actor
from scheduling.calendar import DayInfo, DayType
from tests.booking_factories import CENTRE, CENTRE_SERVICE, CLINIC, POLICY, VISITOR, world
from tests.home_visit_support import FAMILY, confirmed_visit, time_comes

DESK = StaffMember("centre-desk", "centre_staff", CENTRE, "窗口负责人")
CENTRE_ACTOR = Actor("staff", "centre-desk", t.CENTRE_STAFF, CENTRE)


async def error_of(awaitable) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await awaitable
    return caught.value


async def completed_centre_visit(db, key: str = "r1") -> dict:
    w = await world(db)
    slot_id = await w.centre_slot(days=2)
    booking, _ = await bookings.create_booking(db, FAMILY, bookings.BookingRequest(
        slot_id=slot_id, service_id=CENTRE_SERVICE, idempotency_key=key, visitor=VISITOR), POLICY)
    await time_comes(db, booking)  # check-in opens shortly before the visit
    booking = await bookings.transition(db, booking["_id"], t.CHECKED_IN, CENTRE_ACTOR, POLICY)
    return await bookings.transition(db, booking["_id"], t.COMPLETED, CENTRE_ACTOR, POLICY)


# ---------------------------------------------------------------- working days


def test_15_working_days_across_national_day_and_a_make_up_saturday():
    # 2026: National Day 10-01..10-07 off, Saturday 10-10 a make-up working day (调休上班)
    assert ratings.add_working_days(date(2026, 9, 29), 15) == date(2026, 10, 26)
    assert ratings.is_working_day(date(2026, 10, 10), ratings.holiday_lookup())
    assert not ratings.is_working_day(date(2026, 10, 5), ratings.holiday_lookup())


def test_working_days_with_a_stored_calendar_shape():
    holiday, make_up = date(2027, 1, 1), date(2027, 1, 2)  # a Friday off, the Saturday after worked

    def lookup(day: date) -> DayInfo:
        if day == holiday:
            return DayInfo(DayType.HOLIDAY, "元旦")
        if day == make_up:
            return DayInfo(DayType.WORKDAY)
        return DayInfo(DayType.WORKDAY if day.weekday() < 5 else DayType.WEEKEND)

    # from Thursday 2026-12-31: Sat 01-02 (1), Mon 01-04 … Fri 01-08 (6), Mon 01-11 … Fri 01-15 (11),
    # Mon 01-18 … Thu 01-21 (15)
    assert ratings.add_working_days(date(2026, 12, 31), 15, lookup) == date(2027, 1, 21)


async def test_deadlines_read_the_stored_holiday_calendar(db):
    # a stored 2026 that (unlike the library's) also closes Friday 10-09: one more day to count
    library = holidays.LIBRARY_CALENDAR.year(2026)
    extra = holidays.HolidayRange("测试假", date(2026, 10, 9), date(2026, 10, 9))
    await holidays.store_year(db, holidays.YearCalendar(2026, (*library.holidays, extra)), "staff:test")
    lookup = await ratings.stored_holiday_lookup(db)
    assert not ratings.is_working_day(date(2026, 10, 9), lookup)
    assert ratings.add_working_days(date(2026, 9, 29), 15, lookup) == date(2026, 10, 27)


# ---------------------------------------------------------------- invitations


async def test_invitations_are_sent_once_each_and_the_reminder_is_cancelled_by_rating(db):
    booking = await completed_centre_visit(db)
    assert await ratings.invite_completed(db) == 1
    assert await ratings.invite_completed(db) == 0  # the next tick finds it invited
    invites = await db.notifications.find({"kind": "rating_invitation"}).sort("due_at", 1).to_list(None)
    assert [n["key"] for n in invites] == [f"rating_invite:{booking['_id']}:1", f"rating_invite:{booking['_id']}:2"]
    assert invites[1]["due_at"] - invites[0]["due_at"] >= timedelta(days=3) - timedelta(seconds=5)
    assert invites[0]["openid"] == FAMILY and invites[0]["payload"]["service_name"] == "异地就医备案"
    await ratings.rate(db, FAMILY, booking["_id"], level="满意", tags=["准时守约"])
    second = await db.notifications.find_one({"key": f"rating_invite:{booking['_id']}:2"})
    assert second["status"] == "cancelled"
    assert await db.notifications.count_documents({"kind": "rating_invitation"}) == 2


async def test_a_nursing_visit_is_invited_too(db):
    visit = await confirmed_visit(db, status=t.COMPLETED)
    assert await ratings.invite_completed(db) == 1
    assert await db.notifications.count_documents({"key": f"rating_invite:{visit.id}:1"}) == 1


# ---------------------------------------------------------------- rating


async def test_one_rating_per_booking_changeable_within_7_days(db):
    booking = await completed_centre_visit(db)
    now = datetime.now(UTC).replace(microsecond=0)  # the database keeps milliseconds
    first = await ratings.rate(db, FAMILY, booking["_id"], level="基本满意", comment="等了一会儿", now=now)
    changed = await ratings.rate(db, FAMILY, booking["_id"], level="非常满意", now=now + timedelta(days=6))
    assert changed["level"] == "非常满意" and len(changed["history"]) == 2
    assert changed["first_rated_at"] == first["first_rated_at"]
    assert await db.ratings.count_documents({"booking_id": booking["_id"]}) == 1
    assert (await error_of(ratings.rate(db, FAMILY, booking["_id"], level="满意",
                                        now=now + timedelta(days=7, seconds=1)))).code == "rating_locked"
    assert (await error_of(ratings.rate(db, "someone-else", booking["_id"], level="满意"))).status == 404
    assert (await error_of(ratings.rate(db, FAMILY, booking["_id"], level="还行"))).code == "invalid_level"
    assert (await db.ratings.index_information())["booking_unique"]["unique"] is True


async def test_an_unfinished_booking_cannot_be_rated(db):
    visit = await confirmed_visit(db, status=t.IN_SERVICE)
    assert (await error_of(ratings.rate(db, FAMILY, visit.id, level="满意"))).code == "not_completed"


# ---------------------------------------------------------------- follow-up


async def test_a_bad_rating_opens_a_follow_up_that_ends_with_the_resident_told(db):
    booking = await completed_centre_visit(db)
    rated_at = datetime(2026, 9, 29, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    await ratings.rate(db, FAMILY, booking["_id"], level="不满意", tags=["等待时间长"], comment="排队一小时",
                       now=rated_at)
    [case] = await ratings.list_cases(db, CENTRE)
    assert case["deadline"] == "2026-10-26" and case["status"] == "open" and case["level"] == "不满意"
    assert ratings.is_overdue(case, date(2026, 10, 27)) and not ratings.is_overdue(case, date(2026, 10, 26))
    assert await ratings.count_overdue(db, date(2026, 10, 27)) == 1

    outsider = StaffMember("x", "clinic_staff", CLINIC)
    assert (await error_of(ratings.record_contact(db, outsider, case["_id"], "电话回访"))).status == 403
    assert (await error_of(ratings.resolve(db, DESK, case["_id"], fix="增开窗口", result="已增开窗口"))).code == \
        "contact_required"
    await ratings.record_contact(db, DESK, case["_id"], "已电话联系群众，了解排队情况")
    resolved = await ratings.resolve(db, DESK, case["_id"], fix="延时服务时段增开一个窗口",
                                     result="我们已在延时服务时段增开一个窗口，感谢您的监督。")
    assert resolved["status"] == "resolved" and resolved["contacts"][0]["by"] == "centre-desk"
    told = await db.notifications.find_one({"kind": "follow_up_result"})
    assert told["openid"] == FAMILY and told["payload"]["reason"].startswith("我们已在延时服务时段增开")
    assert await ratings.count_overdue(db, date(2026, 10, 27)) == 0
    # a good rating opens nothing
    assert await db.rating_follow_ups.count_documents({}) == 1


async def test_summaries_per_service_nurse_and_month(db):
    visit = await confirmed_visit(db, status=t.COMPLETED)
    await ratings.rate(db, FAMILY, visit.id, level="非常不满意", comment="迟到")
    [by_nurse] = await ratings.summary(db, CLINIC, "nurse")
    assert by_nurse["key"] == "nurse-lvli" and by_nurse["levels"]["非常不满意"] == 1
    assert by_nurse["satisfaction_rate"] == 0 and by_nurse["average_score"] == 1
    [by_month] = await ratings.summary(db, CLINIC, "month")
    assert by_month["key"] == visit.booking["date"][:7]
    assert (await ratings.list_cases(db, CLINIC))[0]["kind"] == "nursing"
