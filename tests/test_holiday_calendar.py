"""The holiday calendar's pure parts: validation of an imported year (Chinese errors naming the line
or the entry), the provisional year by rule, chinesecalendar's years in our form, the lookup order."""

from __future__ import annotations

from datetime import date, time, timedelta
from pathlib import Path

import chinese_calendar
import holidays as holiday_rules
import pytest

from scheduling import holidays
from scheduling.calendar import DayType, generate, parse_rules
from scheduling.holidays import CalendarError, HolidayCalendar, HolidayRange, YearCalendar

EXAMPLE = Path(__file__).resolve().parent.parent / "scheduling" / "data" / "holidays-2027.example.yaml"

VALID = """\
year: 2027
source: official
notice: 测试通知
holidays:
  - name: 元旦
    first: 2027-01-01
    last: 2027-01-03
  - name: 春节
    first: 2027-02-05
    last: 2027-02-11
    makeup_workdays: [2027-01-31, 2027-02-20]
  - name: 国庆节
    first: 2027-10-01
    last: 2027-10-07
    makeup_workdays:
      - 2027-09-26
      - 2027-10-09
"""


def error_of(text: str, filename: str = "holidays-2027.yaml") -> str:
    with pytest.raises(CalendarError) as caught:
        holidays.parse_text(text, filename)
    message = str(caught.value)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in message)
    return message


def every_day(year: int):
    day = date(year, 1, 1)
    while day.year == year:
        yield day
        day += timedelta(days=1)


# --- validation of an import --------------------------------------------------------------------

def test_a_valid_file_in_the_shape_of_the_notice():
    calendar = holidays.parse_text(VALID, "holidays-2027.yaml")
    assert calendar.year == 2027 and calendar.source == "official" and calendar.notice == "测试通知"
    assert [h.name for h in calendar.holidays] == ["元旦", "春节", "国庆节"]
    spring = calendar.holidays[1]
    assert (spring.first, spring.last) == (date(2027, 2, 5), date(2027, 2, 11))
    assert spring.makeup_workdays == (date(2027, 1, 31), date(2027, 2, 20))
    assert calendar.makeup_workdays == (date(2027, 1, 31), date(2027, 2, 20), date(2027, 9, 26), date(2027, 10, 9))
    assert calendar.day_info(date(2027, 2, 20)).type is DayType.WORKDAY  # a Saturday at work
    assert calendar.day_info(date(2027, 2, 8)).holiday_name == "春节"
    assert calendar.day_info(date(2027, 2, 12)).type is DayType.WORKDAY
    assert calendar.day_info(date(2027, 2, 13)).type is DayType.WEEKEND
    assert not calendar.day_info(date(2027, 2, 8)).provisional


@pytest.mark.parametrize(("text", "expected"), [
    # a date outside the year, with the line and the entry
    (VALID.replace("first: 2027-01-01", "first: 2026-12-31"),
     ["第 6 行", "holidays 第 1 项（元旦）", "不在 2027 年内"]),
    (VALID.replace("2027-02-20]", "2028-02-20]"), ["第 11 行", "holidays 第 2 项（春节）", "不在 2027 年内"]),
    # ranges that overlap: both named
    (VALID.replace("last: 2027-01-03", "last: 2027-02-06"), ["第 9 行", "holidays 第 2 项（春节）", "与「元旦」",
                                                             "重叠"]),
    # a make-up working day that is not a weekend day
    (VALID.replace("2027-01-31", "2027-02-01"), ["第 11 行", "春节", "2027-02-01（周一）", "不是周六或周日"]),
    # a holiday that is also a make-up day (the Saturday 2027-10-02 inside 国庆节)
    (VALID.replace("      - 2027-09-26", "      - 2027-10-02"), ["第 16 行", "holidays 第 3 项（国庆节）",
                                                               "既放假又调休上班"]),
    # last day before the first
    (VALID.replace("last: 2027-01-03", "last: 2026-12-30"), ["第 7 行", "元旦", "不在 2027 年内"]),
    (VALID.replace("first: 2027-10-01", "first: 2027-10-09"), ["第 14 行", "国庆节", "早于第一天"]),
    # dates that do not exist or are not dates
    (VALID.replace("2027-02-11", "2027-02-30"), ["第 10 行", "春节", "2027-02-30 不存在"]),
    (VALID.replace("2027-02-11", "2月11日"), ["第 10 行", "春节", "YYYY-MM-DD"]),
    (VALID.replace("first: 2027-01-01", "first: 2027-01-01 08:00"), ["第 6 行", "元旦", "YYYY-MM-DD"]),
    # the same make-up day twice
    (VALID.replace("2027-10-09", "2027-02-20"), ["第 17 行", "国庆节", "重复"]),
    # fields
    (VALID.replace("    last: 2027-01-03\n", ""), ["第 5 行", "元旦", "缺少放假最后一天"]),
    (VALID.replace("    last: 2027-01-03\n", "    last: 2027-01-03\n    days: 3\n"), ["第 8 行", "元旦", "days"]),
    (VALID.replace("    last: 2027-01-03\n", "    last: 2027-01-03\n    last: 2027-01-04\n"), ["第 8 行", "重复"]),
    (VALID.replace("source: official", "source: draft"), ["第 2 行", "source"]),
    (VALID.replace("year: 2027", "year: 27"), ["第 1 行", "年份"]),
    (VALID.replace("  - name: 元旦", "  - name: ''"), ["第 5 行", "holidays 第 1 项", "节日名称"]),
    (VALID.replace("holidays:", "holiday:"), ["第 4 行", "不支持的字段"]),
    ("year: 2027\nholidays: []\n", ["第 2 行", "至少一项"]),
    ("- 2027\n", ["内容应为一个对象"]),
    # not YAML at all
    ("year: 2027\nholidays:\n  - name: 元旦\n   first: 2027-01-01\n", ["第 4 行", "不是有效的 YAML"]),
])
def test_validation_errors_are_chinese_and_name_the_line_and_entry(text, expected):
    message = error_of(text)
    for part in expected:
        assert part in message, (part, message)


def test_a_json_file_is_checked_the_same_way_with_lines():
    text = ('{"year": 2027,\n "holidays": [\n  {"name": "元旦", "first": "2027-01-01", "last": "2027-01-03"},\n'
            '  {"name": "春节", "first": "2027-02-05", "last": "2027-02-11", "makeup_workdays": ["2027-02-17"]}\n'
            ']}\n')
    message = error_of(text, "holidays-2027.json")
    assert "第 4 行" in message and "holidays 第 2 项（春节）" in message and "周三" in message
    message = error_of('{"year": 2027, "holidays": [}', "holidays-2027.json")
    assert "第 1 行" in message and "不是有效的 JSON" in message
    good = holidays.parse_text(text.replace("2027-02-17", "2027-02-20"), "holidays-2027.json")
    assert good.holidays[1].makeup_workdays == (date(2027, 2, 20),)


def test_the_api_form_names_the_entry_without_lines():
    data = {"year": 2027, "holidays": [
        {"name": "元旦", "first": "2027-01-01", "last": "2027-01-03"},
        {"name": "清明节", "first": "2027-04-03", "last": "2027-04-05", "makeup_workdays": ["2027-04-05"]}]}
    with pytest.raises(CalendarError) as caught:
        holidays.parse_year(data)
    assert str(caught.value).startswith("holidays 第 2 项（清明节）") and "第 2 行" not in str(caught.value)
    data["holidays"][1]["makeup_workdays"] = []
    assert holidays.parse_year(data).source == "official"


def test_a_file_that_is_too_big_or_not_utf8(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (holidays.MAX_FILE_BYTES + 1))
    with pytest.raises(CalendarError, match="文件过大"):
        holidays.load_file(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("year: 2027 # \xe9t\xe9".encode("latin-1"))
    with pytest.raises(CalendarError, match="UTF-8"):
        holidays.load_file(latin)


# --- the provisional year by rule --------------------------------------------------------------

RULE_DAYS_2027 = {  # the statutory days of 2027 by rule, with the days in lieu (补假) of weekend holidays
    "元旦": [date(2027, 1, 1)],
    "春节": [date(2027, 2, d) for d in range(5, 11)],  # 除夕 Fri 5th to 初三; 初一/初二 fall on the weekend
    "清明节": [date(2027, 4, 5)],
    "劳动节": [date(2027, 5, d) for d in range(1, 5)],
    "端午节": [date(2027, 6, 9)],
    "中秋节": [date(2027, 9, 15)],
    "国庆节": [date(2027, 10, d) for d in range(1, 6)],
}


def test_provisional_2027_closes_the_seven_holidays_by_rule_and_weekends_and_opens_the_rest():
    calendar = holidays.provisional_year(2027)
    assert calendar is not None and calendar.provisional and calendar.origin == "rules"
    assert calendar.makeup_workdays == ()
    assert [h.name for h in calendar.holidays] == list(holidays.STATUTORY)
    by_name = {h.name: h for h in calendar.holidays}
    for name, days in RULE_DAYS_2027.items():
        for day in days:
            assert day in by_name[name], (name, day)
    statutory = {day for days in RULE_DAYS_2027.values() for day in days}
    for day in every_day(2027):
        info = calendar.day_info(day)
        assert info.provisional, day
        if day in statutory:
            assert (info.type, info.holiday_name) == (DayType.HOLIDAY, _name_of(day)), day
        elif day.weekday() >= 5:
            assert info.type in (DayType.WEEKEND, DayType.HOLIDAY), day  # never a make-up working day
        else:
            assert info.type is DayType.WORKDAY, day
    # the weekends right next to a holiday are part of its break, as in the notices
    assert (by_name["元旦"].first, by_name["元旦"].last) == (date(2027, 1, 1), date(2027, 1, 3))
    assert (by_name["清明节"].first, by_name["清明节"].last) == (date(2027, 4, 3), date(2027, 4, 5))


def _name_of(day: date) -> str:
    return next(name for name, days in RULE_DAYS_2027.items() if day in days)


def test_provisional_days_agree_with_the_holidays_package():
    found = holiday_rules.China(years=2027, language="zh_CN")
    calendar = holidays.provisional_year(2027)
    for day in found:
        assert calendar.day_info(day).type is DayType.HOLIDAY, (day, found[day])


def test_generation_for_2027_with_weekday_rules_gives_provisional_slots_on_working_days_only():
    rules = parse_rules({"weekday": {"open": "09:00", "close": "12:00"}, "slot_minutes": 60})
    generated = generate(rules, date(2027, 1, 1), date(2027, 12, 31), capacity=2)
    by_day = {s.date for s in generated.slots}
    calendar = holidays.provisional_year(2027)
    assert by_day == {d for d in every_day(2027) if calendar.day_info(d).type is DayType.WORKDAY}
    assert len(by_day) == 261 - 13  # the weekdays of 2027 less the 13 weekdays off by rule
    assert all(s.provisional for s in generated.slots)
    assert generated.provisional_years == frozenset({2027}) and generated.uncovered_years == frozenset()
    assert [s.start.time() for s in generated.slots[:3]] == [time(9), time(10), time(11)]


def test_the_example_file_is_the_provisional_year_and_says_it_is_not_the_notice():
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "不是国务院办公厅的正式通知" in text
    example = holidays.load_file(EXAMPLE)
    assert example.provisional and example.year == 2027
    assert example.holidays == holidays.provisional_year(2027).holidays


def test_years_beyond_the_rules_have_no_data():
    assert holidays.provisional_year(2101) is None and holidays.provisional_year(1949) is None
    with pytest.raises(NotImplementedError):
        holidays.LIBRARY_CALENDAR(date(2101, 1, 3))


# --- chinesecalendar's years and the lookup order ---------------------------------------------------

def test_library_years_say_what_chinesecalendar_says_for_every_day():
    years = holidays.library_years()
    assert years[0] == 2004 and years[-1] == 2026
    for year in years:
        calendar = holidays.library_year(year)
        assert calendar.source == "official" and calendar.origin == "chinesecalendar"
        holidays.parse_year(calendar.to_data())  # passes our own validation
        for day in every_day(year):
            if chinese_calendar.is_workday(day):
                expected = DayType.WORKDAY
            elif chinese_calendar.get_holiday_detail(day)[1] or day.weekday() < 5:
                expected = DayType.HOLIDAY
            else:
                expected = DayType.WEEKEND
            assert calendar.day_info(day).type is expected, day


def test_2026_in_our_form():
    calendar = holidays.library_year(2026)
    by_name = {h.name: h for h in calendar.holidays}
    assert set(by_name) == set(holidays.STATUTORY)
    assert by_name["元旦"] == HolidayRange("元旦", date(2026, 1, 1), date(2026, 1, 3), (date(2026, 1, 4),))
    assert by_name["国庆节"].makeup_workdays == (date(2026, 9, 20), date(2026, 10, 10))


def test_a_stored_year_wins_over_the_library_and_the_rules():
    stored_2026 = YearCalendar(2026, (HolidayRange("测试假", date(2026, 3, 2), date(2026, 3, 2)),), "official")
    stored_2027 = YearCalendar(2027, (HolidayRange("春节", date(2027, 2, 5), date(2027, 2, 11),
                                                   (date(2027, 2, 20),)),), "official")
    calendar = HolidayCalendar([stored_2026, stored_2027])
    assert calendar(date(2026, 3, 2)).holiday_name == "测试假"
    assert calendar(date(2026, 10, 1)).type is DayType.WORKDAY  # the stored year says so, not the library
    assert calendar(date(2027, 2, 20)).type is DayType.WORKDAY and not calendar(date(2027, 2, 20)).provisional
    assert calendar.source(2027) == "official" and calendar.source(2028) == "provisional"
    assert calendar(date(2028, 1, 1)).provisional
    assert calendar.source(2101) is None


def test_changed_days_between_the_provisional_and_the_official_year():
    official = holidays.parse_text(VALID)
    changes = holidays.changed_days(holidays.provisional_year(2027), official)
    by_day = {c["date"]: (c["before"], c["after"]) for c in changes}
    assert by_day["2027-02-11"] == ("上班", "春节放假")
    assert by_day["2027-02-20"] == ("周末休息", "上班")
    assert "2027-01-01" not in by_day
    assert by_day["2027-04-05"] == ("清明节放假", "上班")  # the test file has no 清明节
