"""The pure slot generator: seasons, Saturdays, statutory holidays and 调休 from chinesecalendar,
overrides, month and year ends, provisional years and years without any holiday data."""

from __future__ import annotations

from datetime import date, time, timedelta

import chinese_calendar
import pytest

from scheduling.calendar import (
    SHANGHAI,
    DayInfo,
    DayType,
    Hours,
    Override,
    RulesError,
    covered,
    generate,
    parse_rules,
)
from scheduling.holidays import LIBRARY_CALENDAR
from scheduling.seed import demo_institutions

CENTRE = parse_rules(next(i for i in demo_institutions() if i["kind"] == "centre")["calendar"])
NURSING = parse_rules(next(i for i in demo_institutions() if i["kind"] == "nursing")["calendar"])


def day_slots(rules, day, capacity=4, **kwargs):
    return generate(rules, day, day, capacity=capacity, **kwargs).slots


def starts(slots):
    return [s.start.strftime("%H:%M") for s in slots]


def every_weekday_is_a_workday(day: date) -> DayInfo:
    """A fake lookup without holidays: Monday–Friday work, weekends rest."""
    return DayInfo(DayType.WORKDAY if day.weekday() < 5 else DayType.WEEKEND)


def test_chinesecalendar_covers_2026_and_2027_is_provisional():
    # the installed chinesecalendar (1.11.0) has data up to 2026; 2027 comes from the rules, marked provisional
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(2027, 1, 4))
    assert covered(date(2026, 12, 31)) and not LIBRARY_CALENDAR(date(2026, 12, 31)).provisional
    assert covered(date(2027, 1, 1)) and LIBRARY_CALENDAR(date(2027, 1, 4)).provisional
    assert not covered(date(2101, 1, 3))  # beyond what even the rules compute


@pytest.mark.parametrize(("day", "kind"), [
    (date(2026, 11, 23), DayType.WORKDAY),  # an ordinary Monday
    (date(2026, 11, 28), DayType.WEEKEND),  # an ordinary Saturday
    (date(2026, 2, 14), DayType.WORKDAY),  # Saturday, make-up working day of the Spring Festival
    (date(2026, 9, 20), DayType.WORKDAY),  # Sunday, make-up working day of National Day
    (date(2026, 2, 21), DayType.HOLIDAY),  # Saturday inside the Spring Festival holiday
    (date(2026, 10, 1), DayType.HOLIDAY),
    (date(2026, 10, 4), DayType.HOLIDAY),  # Sunday inside the National Day holiday
])
def test_lookup_classifies_days(day, kind):
    assert LIBRARY_CALENDAR(day).type is kind


def test_winter_weekday_has_the_extended_hour():
    slots = day_slots(CENTRE, date(2026, 11, 23))
    assert len(slots) == 18  # 09:00-18:00 in 30-minute slots
    assert starts(slots)[0] == "09:00" and starts(slots)[-1] == "17:30"
    assert [s.start.strftime("%H:%M") for s in slots if s.extended] == ["17:00", "17:30"]
    assert all(s.capacity == 4 and not s.appointment_only for s in slots)


def test_summer_weekday_opens_at_half_past_eight():
    slots = day_slots(CENTRE, date(2026, 6, 1))
    assert len(slots) == 19
    assert starts(slots)[0] == "08:30" and slots[-1].end.time() == time(18, 0)


def test_saturday_morning_and_closed_sunday():
    saturday = day_slots(CENTRE, date(2026, 11, 28))
    assert starts(saturday) == ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30"]
    assert not any(s.extended for s in saturday)
    assert day_slots(CENTRE, date(2026, 11, 29)) == []


@pytest.mark.parametrize(("day", "first", "count"), [
    (date(2026, 1, 4), "09:00", 18),  # Sunday, New Year make-up day (winter)
    (date(2026, 2, 14), "09:00", 18),  # Saturday, Spring Festival make-up day
    (date(2026, 2, 28), "09:00", 18),  # Saturday, Spring Festival make-up day
    (date(2026, 5, 9), "08:30", 19),  # Saturday, Labour Day make-up day (summer)
    (date(2026, 9, 20), "08:30", 19),  # Sunday, National Day make-up day (summer)
    (date(2026, 10, 10), "09:00", 18),  # Saturday, National Day make-up day (winter again)
])
def test_make_up_working_days_get_weekday_hours(day, first, count):
    assert day.weekday() >= 5
    slots = day_slots(CENTRE, day)
    assert starts(slots)[0] == first and len(slots) == count
    assert slots[-2].extended and slots[-1].extended


def test_national_day_week_is_closed_including_its_weekend():
    generated = generate(CENTRE, date(2026, 9, 30), date(2026, 10, 8), capacity=4)
    days = sorted({s.date for s in generated.slots})
    assert days == [date(2026, 9, 30), date(2026, 10, 8)]
    assert generated.uncovered_years == frozenset()


def test_spring_festival_is_closed_and_the_saturday_inside_it_too():
    generated = generate(CENTRE, date(2026, 2, 13), date(2026, 2, 24), capacity=4)
    days = sorted({s.date for s in generated.slots})
    assert days == [date(2026, 2, 13), date(2026, 2, 14), date(2026, 2, 24)]


def test_nursing_visits_every_day_including_holidays():
    for day in (date(2026, 10, 1), date(2026, 11, 29), date(2026, 11, 23)):
        slots = day_slots(NURSING, day, capacity=3)
        assert starts(slots) == ["08:00", "10:00", "12:00", "14:00", "16:00"]
        assert all(s.end - s.start == timedelta(hours=2) and s.capacity == 3 for s in slots)


@pytest.mark.parametrize(("day", "first"), [
    (date(2026, 4, 30), "09:00"), (date(2026, 5, 1), "08:30"),
    (date(2026, 9, 30), "08:30"), (date(2026, 10, 1), "09:00"),
    (date(2026, 12, 31), "09:00"), (date(2026, 1, 1), "09:00"),
])
def test_season_boundaries(day, first):
    # a fake lookup without holidays isolates the season rule (05-01 and 10-01 are holidays in reality)
    assert day.weekday() < 5
    assert starts(day_slots(CENTRE, day, holidays=every_weekday_is_a_workday))[0] == first


def test_season_boundary_with_real_holidays():
    # 2026-04-30 is a Thursday in winter; 05-01..05-05 is Labour Day; 05-06 the first summer workday
    generated = generate(CENTRE, date(2026, 4, 30), date(2026, 5, 6), capacity=2)
    by_day = {}
    for slot in generated.slots:
        by_day.setdefault(slot.date, []).append(slot)
    assert sorted(by_day) == [date(2026, 4, 30), date(2026, 5, 6)]
    assert starts(by_day[date(2026, 4, 30)])[0] == "09:00"
    assert starts(by_day[date(2026, 5, 6)])[0] == "08:30"


def test_month_end_and_slot_ids_and_utc():
    generated = generate(CENTRE, date(2026, 11, 27), date(2026, 12, 1), capacity=4)
    days = sorted({s.date for s in generated.slots})
    assert days == [date(2026, 11, 27), date(2026, 11, 28), date(2026, 11, 30), date(2026, 12, 1)]
    first = generated.slots[0]
    assert first.slot_id("c1") == "c1|2026-11-27|09:00"
    assert first.start.tzinfo == SHANGHAI
    assert first.start.utcoffset() == timedelta(hours=8)
    assert generated.slots[-1].slot_id("c1") == "c1|2026-12-01|17:30"


def test_january_and_february_month_ends():
    generated = generate(CENTRE, date(2026, 1, 30), date(2026, 2, 2), capacity=1)
    assert sorted({s.date for s in generated.slots}) == [date(2026, 1, 30), date(2026, 1, 31), date(2026, 2, 2)]
    assert len([s for s in generated.slots if s.date == date(2026, 1, 31)]) == 6  # ordinary Saturday


def test_year_end_into_a_provisional_year_gives_provisional_slots():
    generated = generate(CENTRE, date(2026, 12, 28), date(2027, 1, 6), capacity=4)
    # 2027-01-01..03 is 元旦 by rule (the weekend next to it included); then ordinary weekdays
    assert sorted({s.date for s in generated.slots}) == [
        *(date(2026, 12, d) for d in (28, 29, 30, 31)), *(date(2027, 1, d) for d in (4, 5, 6))]
    assert all(s.provisional == (s.date.year == 2027) for s in generated.slots)
    assert generated.uncovered_years == frozenset()
    assert generated.provisional_years == frozenset({2027})


def test_year_end_into_a_year_without_data_is_reported_not_guessed():
    generated = generate(CENTRE, date(2100, 12, 27), date(2101, 1, 5), capacity=4)
    assert {s.date.year for s in generated.slots} == {2100}
    assert generated.uncovered_years == frozenset({2101})
    assert generated.uncovered_dates == tuple(date(2101, 1, d) for d in range(1, 6))


def test_uncovered_year_also_for_rules_open_on_holidays():
    generated = generate(NURSING, date(2100, 12, 31), date(2101, 1, 1), capacity=3)
    assert {s.date for s in generated.slots} == {date(2100, 12, 31)}
    assert generated.uncovered_years == frozenset({2101})


def test_override_close_open_and_capacity():
    overrides = {
        date(2026, 11, 23): Override(date(2026, 11, 23), "close"),
        date(2026, 11, 24): Override(date(2026, 11, 24), "capacity", capacity=1),
        date(2026, 11, 29): Override(date(2026, 11, 29), "open", Hours(time(9), time(11)), capacity=2),
    }
    generated = generate(CENTRE, date(2026, 11, 23), date(2026, 11, 29), capacity=4, overrides=overrides)
    by_day: dict[date, list] = {}
    for slot in generated.slots:
        by_day.setdefault(slot.date, []).append(slot)
    assert date(2026, 11, 23) not in by_day
    assert {s.capacity for s in by_day[date(2026, 11, 24)]} == {1}
    assert {s.capacity for s in by_day[date(2026, 11, 25)]} == {4}
    sunday = by_day[date(2026, 11, 29)]
    assert starts(sunday) == ["09:00", "09:30", "10:00", "10:30"]
    assert all(s.appointment_only and s.capacity == 2 for s in sunday)


def test_override_opens_a_statutory_holiday_with_appointment_only_slots():
    day = date(2026, 10, 2)
    slots = day_slots(CENTRE, day, overrides={day: Override(day, "open", Hours(time(9), time(12)))})
    assert len(slots) == 6 and all(s.appointment_only and s.capacity == 4 for s in slots)
    # a capacity override does not open a closed holiday
    assert day_slots(CENTRE, day, overrides={day: Override(day, "capacity", capacity=9)}) == []


def test_override_covers_a_day_without_holiday_data():
    opened, closed = date(2101, 1, 4), date(2101, 1, 5)
    generated = generate(CENTRE, opened, closed, capacity=4, overrides={
        opened: Override(opened, "open", Hours(time(9), time(10)), appointment_only=False),
        closed: Override(closed, "close"),
    })
    assert starts(generated.slots) == ["09:00", "09:30"]
    assert not generated.slots[0].appointment_only
    assert generated.uncovered_years == frozenset()
    # a capacity override alone does not say whether the day is open: still uncovered
    generated = generate(CENTRE, opened, opened, capacity=4,
                         overrides={opened: Override(opened, "capacity", capacity=1)})
    assert generated.slots == [] and generated.uncovered_years == frozenset({2101})


def test_an_override_open_day_of_a_provisional_year_is_not_provisional():
    sunday = date(2027, 1, 10)
    slots = day_slots(CENTRE, sunday, overrides={sunday: Override(sunday, "open", Hours(time(9), time(10)))})
    assert len(slots) == 2 and not any(s.provisional for s in slots)
    monday = date(2027, 1, 11)
    capped = day_slots(CENTRE, monday, overrides={monday: Override(monday, "capacity", capacity=1)})
    assert capped and all(s.provisional and s.capacity == 1 for s in capped)


def test_fake_lookup_can_replace_chinese_calendar():
    def holiday_on_wednesdays(day: date) -> DayInfo:
        if day.year > 2030:
            raise NotImplementedError
        return DayInfo(DayType.HOLIDAY, "测试") if day.weekday() == 2 else every_weekday_is_a_workday(day)

    generated = generate(CENTRE, date(2031, 1, 1), date(2031, 1, 1), capacity=1, holidays=holiday_on_wednesdays)
    assert generated.uncovered_years == frozenset({2031})
    week = generate(CENTRE, date(2030, 1, 6), date(2030, 1, 12), capacity=1, holidays=holiday_on_wednesdays)
    assert date(2030, 1, 9) not in {s.date for s in week.slots}
    assert date(2030, 1, 8) in {s.date for s in week.slots}


def test_breaks_and_slot_lengths_that_do_not_divide_the_day():
    rules = parse_rules({"weekday": {"open": "09:00", "close": "12:00"}, "slot_minutes": 40,
                         "saturday": None, "sunday": None})
    assert starts(day_slots(rules, date(2026, 11, 23), holidays=every_weekday_is_a_workday)) == [
        "09:00", "09:40", "10:20", "11:00"]
    rules = parse_rules({"weekday": {"open": "09:00", "close": "15:00"}, "slot_minutes": 60,
                         "breaks": [{"open": "12:00", "close": "13:30"}]})
    assert starts(day_slots(rules, date(2026, 11, 23), holidays=every_weekday_is_a_workday)) == [
        "09:00", "10:00", "11:00", "14:00"]


@pytest.mark.parametrize("data", [
    {"weekday": {"open": "9:00", "close": "18:00"}},
    {"weekday": {"open": "18:00", "close": "09:00"}},
    {"weekday": {"open": "24:00", "close": "25:00"}},
    {"seasons": [{"name": "s", "from": "05-01", "to": "09-30", "weekday": {"open": "08:30", "close": "18:00"}}]},
    {"seasons": [{"name": "s", "from": "02-30", "to": "09-30", "weekday": {"open": "08:30", "close": "18:00"}}]},
    {"weekday": {"open": "09:00", "close": "18:00"}, "slot_minutes": 0},
    {"weekday": {"open": "09:00", "close": "18:00"}, "capacity_per_slot": -1},
    {"weekday": {"open": "09:00", "close": "18:00"}, "capacity_per_slot": "many"},
    {"weekday": {"open": "09:00", "close": "18:00"}, "statutory_holidays": "maybe"},
    {"weekday": {"open": "09:00", "close": "18:00"}, "extended_from": "late"},
    {"weekday": "all day"},
])
def test_unusable_rules_are_rejected_in_chinese(data):
    with pytest.raises(RulesError) as info:
        parse_rules(data)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in str(info.value))


def test_seasons_may_wrap_the_year_end_and_cover_february_29th():
    rules = parse_rules({"seasons": [
        {"name": "summer", "from": "05-01", "to": "09-30", "weekday": {"open": "08:30", "close": "18:00"}},
        {"name": "winter", "from": "10-01", "to": "04-30", "weekday": {"open": "09:00", "close": "18:00"}}]})
    assert rules.weekday_hours(date(2028, 2, 29)) == Hours(time(9), time(18))
    assert rules.weekday_hours(date(2026, 12, 31)) == Hours(time(9), time(18))
    assert rules.weekday_hours(date(2026, 7, 1)) == Hours(time(8, 30), time(18))
