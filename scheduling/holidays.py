"""The holiday calendar (节假日安排) as data: per year, the holiday ranges and the make-up working
days (调休上班日) of the State Council's annual notice (国务院办公厅关于某年部分节假日安排的通知).

Where the data of a day's year comes from, first match wins:
1. a year stored in MongoDB (``holiday_years``), imported by admin staff with
   ``python -m bot calendar import FILE`` or ``PUT /api/v1/staff/calendar/holidays/{year}``;
2. chinesecalendar, for the years it covers (2004–2026 in 1.11.0). These are also seeded into the
   collection at start (never over a stored year), so staff see them and can replace them;
3. a *provisional* year computed by rule from the ``holidays`` package: the statutory holidays
   (元旦, 春节 with 除夕, 清明节, 劳动节, 端午节, 中秋节, 国庆节, and a day in lieu where one falls on a
   weekend), each range stretched over the weekend days right next to it as the notices do; no
   make-up working days; weekends are rest days and every other weekday a working day. Its days
   carry ``provisional`` so slots say so and staff are alarmed until the official year is imported;
4. a year not even the rules cover (before 1950, after 2100) raises ``NotImplementedError``: those
   days get no slots and are reported as uncovered.

The file format (YAML or JSON), in the shape of the notice; ``scheduling/data/holidays-2027.example.yaml``
is a commented example::

    year: 2027
    source: official            # official: the State Council's notice; provisional: not yet official
    notice: 国办发明电〔2026〕N号  # optional, at most 200 characters
    holidays:
      - name: 春节
        first: 2027-02-05       # first and last day off, inclusive, inside the year
        last: 2027-02-11
        makeup_workdays: [2027-02-20]   # 调休上班日 of this holiday: Saturdays or Sundays of the year

Everything above the storage section is pure: parsing and validation, the provisional rules and the
lookup slot generation uses.
"""

from __future__ import annotations

import enum
import functools
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import chinese_calendar
import holidays as holiday_rules
import yaml
from pymongo import ASCENDING, DESCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from bot.db import declare_indexes
from scheduling import transitions

OFFICIAL, PROVISIONAL = "official", "provisional"
SOURCES = (OFFICIAL, PROVISIONAL)
SOURCE_LABELS = {OFFICIAL: "正式通知", PROVISIONAL: "暂定"}
# where a year's data came from: imported/seeded into the database, the library, or the rules
STORED, LIBRARY, RULES = "stored", "chinesecalendar", "rules"
STATUTORY = ("元旦", "春节", "清明节", "劳动节", "端午节", "中秋节", "国庆节")
MIN_YEAR, MAX_YEAR = 2000, 2100
MAX_HOLIDAYS = 30
MAX_MAKEUP_DAYS = 10
MAX_NAME = 30
MAX_NOTICE = 200
MAX_FILE_BYTES = 64 * 1024
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WEEKDAYS = "一二三四五六日"
_TOP_FIELDS = ("year", "source", "notice", "holidays")
_ENTRY_FIELDS = ("name", "first", "last", "makeup_workdays")


class DayType(enum.Enum):
    WORKDAY = "workday"  # an ordinary weekday or a make-up working day
    WEEKEND = "weekend"  # an ordinary rest day
    HOLIDAY = "holiday"  # a day of a holiday range, including the weekend days inside it


@dataclass(frozen=True)
class DayInfo:
    type: DayType
    holiday_name: str | None = None
    provisional: bool = False  # from a year without the official notice


HolidayLookup = Callable[[date], DayInfo]  # raises NotImplementedError for a year without any data


class CalendarError(ValueError):
    """A holiday calendar that cannot be used; the message is Chinese, for staff, and names the
    line (files) or the entry (every form) that is wrong."""


def weekday_label(day: date) -> str:
    return f"{day.isoformat()}（周{_WEEKDAYS[day.weekday()]}）"


@dataclass(frozen=True)
class HolidayRange:
    name: str
    first: date
    last: date
    makeup_workdays: tuple[date, ...] = ()

    def days(self) -> Iterator[date]:
        day = self.first
        while day <= self.last:
            yield day
            day += timedelta(days=1)

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.first <= day <= self.last

    def to_data(self) -> dict[str, Any]:
        return {"name": self.name, "first": self.first.isoformat(), "last": self.last.isoformat(),
                "makeup_workdays": [d.isoformat() for d in self.makeup_workdays]}


@dataclass(frozen=True)
class YearCalendar:
    year: int
    holidays: tuple[HolidayRange, ...]
    source: str = OFFICIAL
    notice: str = ""
    origin: str = STORED
    imported_at: datetime | None = None
    imported_by: str | None = None

    @property
    def provisional(self) -> bool:
        return self.source == PROVISIONAL

    @functools.cached_property
    def _special_days(self) -> dict[date, DayInfo]:
        days: dict[date, DayInfo] = {}
        for holiday in self.holidays:
            for day in holiday.days():
                days[day] = DayInfo(DayType.HOLIDAY, holiday.name, self.provisional)
            for day in holiday.makeup_workdays:
                days[day] = DayInfo(DayType.WORKDAY, None, self.provisional)
        return days

    def day_info(self, day: date) -> DayInfo:
        if day.year != self.year:
            raise ValueError(f"{day} is not in {self.year}")
        found = self._special_days.get(day)
        if found is not None:
            return found
        return DayInfo(DayType.WORKDAY if day.weekday() < 5 else DayType.WEEKEND, None, self.provisional)

    @property
    def makeup_workdays(self) -> tuple[date, ...]:
        return tuple(sorted(d for h in self.holidays for d in h.makeup_workdays))

    def to_data(self) -> dict[str, Any]:
        """The file form (JSON-ready), as it would be imported."""
        return {"year": self.year, "source": self.source, "notice": self.notice,
                "holidays": [h.to_data() for h in self.holidays]}

    def view(self) -> dict[str, Any]:
        """The API form: the file form plus where it came from and who imported it."""
        return {**self.to_data(), "origin": self.origin, "imported_at": self.imported_at,
                "imported_by": self.imported_by}


# --- parsing and validation ---------------------------------------------------------------------

class _Mapping(dict):
    """A YAML mapping that remembers its line and the line of each key (1-based)."""

    line: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.key_lines: dict[str, int] = {}


class _Sequence(list):
    line: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.item_lines: list[int] = []


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that keeps line numbers for error messages, refuses duplicate keys and leaves
    dates as text (so ``2027-02-30`` is our clear error, not the parser's)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> Iterator[_Mapping]:
    data = _Mapping()
    data.line = node.start_mark.line + 1
    yield data
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise CalendarError(f"第 {line} 行：字段名应为文字")
        if key in data:
            raise CalendarError(f"第 {line} 行：字段 {key} 重复出现")
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = line


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> Iterator[_Sequence]:
    data = _Sequence()
    data.line = node.start_mark.line + 1
    yield data
    for item in node.value:
        data.append(loader.construct_object(item, deep=True))
        data.item_lines.append(item.start_mark.line + 1)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)
_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


def parse_text(text: str, filename: str = "") -> YearCalendar:
    """Parse and validate a YAML or JSON file's text; ``CalendarError`` names the wrong line."""
    if filename.lower().endswith(".json"):
        try:
            plain = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CalendarError(f"第 {exc.lineno} 行第 {exc.colno} 列：不是有效的 JSON（{exc.msg}）") from None
        try:
            data = yaml.load(text, Loader=_LineLoader)  # JSON is YAML: the same loader gives line numbers
        except yaml.YAMLError:
            data = plain  # rare JSON that PyYAML does not read (tabs): entries are still named
    else:
        try:
            data = yaml.load(text, Loader=_LineLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"第 {mark.line + 1} 行第 {mark.column + 1} 列：" if mark else ""
            raise CalendarError(f"{where}不是有效的 YAML（{exc.problem or exc.context}）") from None
        except yaml.YAMLError as exc:
            raise CalendarError(f"不是有效的 YAML（{exc}）") from None
    return parse_year(data)


def load_file(path: Path) -> YearCalendar:
    """Read, parse and validate a file (``OSError`` if it cannot be read)."""
    raw = Path(path).read_bytes()
    if len(raw) > MAX_FILE_BYTES:
        raise CalendarError(f"文件过大（超过 {MAX_FILE_BYTES // 1024} KiB），一年的节假日安排只需几十行")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CalendarError("文件应为 UTF-8 编码") from None
    return parse_text(text, str(path))


def _line_of(container: Any, key: str | int | None = None) -> int | None:
    if isinstance(container, _Mapping):
        return container.key_lines.get(key, container.line) if isinstance(key, str) else container.line
    if isinstance(container, _Sequence):
        if isinstance(key, int) and 0 <= key < len(container.item_lines):
            return container.item_lines[key]
        return container.line
    return None


def _at(line: int | None, where: str) -> str:
    return f"第 {line} 行，{where}" if line else where


def _entry_name(index: int, entry: Any) -> str:
    name = entry.get("name") if isinstance(entry, Mapping) else None
    return f"holidays 第 {index} 项" + (f"（{name}）" if isinstance(name, str) and name.strip() else "")


def _parse_date(value: Any, where: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise CalendarError(f"{where}：日期 {value.strip()} 不存在") from None
    raise CalendarError(f"{where}：应为日期，格式 YYYY-MM-DD（例如 2027-01-01），实际为 {value!r}")


def parse_year(data: Any) -> YearCalendar:
    """Validate the file / API form of one year. Rules: every date inside the year; a range's last
    day not before its first; ranges that do not overlap; a make-up working day is a Saturday or a
    Sunday and not a day off of any range; no day twice."""
    if not isinstance(data, Mapping):
        raise CalendarError("内容应为一个对象，包含 year（年份）和 holidays（节假日列表）")
    unknown = [key for key in data if key not in _TOP_FIELDS]
    if unknown:
        raise CalendarError(_at(_line_of(data, str(unknown[0])), f"不支持的字段：{'、'.join(map(str, unknown))}"
                                f"（可用字段：{'、'.join(_TOP_FIELDS)}）"))
    year = data.get("year")
    if not isinstance(year, int) or isinstance(year, bool) or not MIN_YEAR <= year <= MAX_YEAR:
        raise CalendarError(_at(_line_of(data, "year"), f"year 应为 {MIN_YEAR} 到 {MAX_YEAR} 之间的年份，"
                                f"实际为 {year!r}"))
    source = data.get("source", OFFICIAL)
    if source not in SOURCES:
        raise CalendarError(_at(_line_of(data, "source"), "source 只能是 official（国务院办公厅正式通知）"
                                "或 provisional（暂定，例如通知发布前的示例）"))
    notice = data.get("notice") or ""
    if not isinstance(notice, str) or len(notice) > MAX_NOTICE:
        raise CalendarError(_at(_line_of(data, "notice"), f"notice（通知名称或文号）应为不超过 {MAX_NOTICE} 字的文字"))
    entries = data.get("holidays")
    if not isinstance(entries, list) or not entries:
        raise CalendarError(_at(_line_of(data, "holidays"), "holidays 应为节假日列表，至少一项"))
    if len(entries) > MAX_HOLIDAYS:
        raise CalendarError(_at(_line_of(data, "holidays"), f"holidays 最多 {MAX_HOLIDAYS} 项"))

    ranges: list[tuple[HolidayRange, str]] = []  # each with its label for later messages
    seen_makeup: dict[date, str] = {}  # make-up day -> where it was given
    for index, entry in enumerate(entries, start=1):
        label = _entry_name(index, entry)
        where = _at(_line_of(entries, index - 1), label)
        if not isinstance(entry, Mapping):
            raise CalendarError(f"{where}：应包含 name、first、last（可选 makeup_workdays）")
        unknown = [key for key in entry if key not in _ENTRY_FIELDS]
        if unknown:
            raise CalendarError(f"{_at(_line_of(entry, str(unknown[0])), label)}：不支持的字段 "
                                f"{'、'.join(map(str, unknown))}（可用字段：{'、'.join(_ENTRY_FIELDS)}）")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME:
            raise CalendarError(f"{_at(_line_of(entry, 'name'), label)}：name（节日名称）应为 1 到 {MAX_NAME} 个字")
        days: dict[str, date] = {}
        for key, what in (("first", "放假第一天 first"), ("last", "放假最后一天 last")):
            if entry.get(key) is None:
                raise CalendarError(f"{where}：缺少{what}")
            at = f"{_at(_line_of(entry, key), label)} {key}"
            days[key] = _parse_date(entry[key], at)
            if days[key].year != year:
                raise CalendarError(f"{at}：{days[key]} 不在 {year} 年内（每个文件只写本年的日期，"
                                    "跨年的安排分别写入两年的文件）")
        if days["last"] < days["first"]:
            raise CalendarError(f"{_at(_line_of(entry, 'last'), label)}：放假最后一天 {days['last']} "
                                f"早于第一天 {days['first']}")
        raw_makeup = entry.get("makeup_workdays") or []
        if not isinstance(raw_makeup, list):
            raise CalendarError(f"{_at(_line_of(entry, 'makeup_workdays'), label)}：makeup_workdays（调休上班日）"
                                "应为日期列表，没有就写 []")
        if len(raw_makeup) > MAX_MAKEUP_DAYS:
            raise CalendarError(f"{_at(_line_of(entry, 'makeup_workdays'), label)}："
                                f"调休上班日最多 {MAX_MAKEUP_DAYS} 天")
        makeup: list[date] = []
        for position, value in enumerate(raw_makeup):
            line = _line_of(raw_makeup, position) or _line_of(entry, "makeup_workdays")
            at = f"{_at(line, label)} 调休上班日"
            day = _parse_date(value, at)
            if day.year != year:
                raise CalendarError(f"{at}：{day} 不在 {year} 年内")
            if day.weekday() < 5:
                raise CalendarError(f"{at}：{weekday_label(day)} 不是周六或周日，调休上班日应是周末")
            if day in seen_makeup:
                raise CalendarError(f"{at}：{day} 重复（{seen_makeup[day]}已写过）")
            seen_makeup[day] = at
            makeup.append(day)
        ranges.append((HolidayRange(name.strip(), days["first"], days["last"], tuple(sorted(makeup))),
                       _at(_line_of(entry, "first"), label)))

    ordered = sorted(ranges, key=lambda item: item[0].first)
    for (before, _), (after, where) in itertools.pairwise(ordered):
        if after.first <= before.last:
            raise CalendarError(f"{where}：放假日期 {after.first} 至 {after.last} 与「{before.name}」"
                                f"（{before.first} 至 {before.last}）重叠")
    for day, at in seen_makeup.items():
        for holiday, _ in ranges:
            if day in holiday:
                raise CalendarError(f"{at}：{day} 在「{holiday.name}」的放假日期（{holiday.first} 至 "
                                    f"{holiday.last}）内，一天不能既放假又调休上班")
    return YearCalendar(year, tuple(r for r, _ in ordered), source, notice.strip())


# --- the library years (chinesecalendar) and the provisional rules (holidays) ----------------------

_LIBRARY_NAMES = {
    "New Year's Day": "元旦", "Spring Festival": "春节", "Tomb-sweeping Day": "清明节", "Labour Day": "劳动节",
    "Dragon Boat Festival": "端午节", "Mid-autumn Festival": "中秋节", "National Day": "国庆节",
}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


@functools.cache
def library_years() -> tuple[int, ...]:
    """The years chinesecalendar covers."""
    return tuple(sorted({day.year for day in chinese_calendar.holidays}))


def _library_name(name: str) -> str:
    if name in _LIBRARY_NAMES:
        return _LIBRARY_NAMES[name]
    try:
        return chinese_calendar.Holiday(name).chinese
    except ValueError:
        return name


@functools.cache
def library_year(year: int) -> YearCalendar | None:
    """A year of chinesecalendar (which follows the notices) in our form; None outside its years."""
    if year not in library_years():
        return None
    days = sorted((day, _library_name(name)) for day, name in chinese_calendar.holidays.items() if day.year == year)
    ranges = _group(days)
    makeup: dict[int, list[date]] = {}
    for day, name in sorted(chinese_calendar.workdays.items()):
        if day.year != year:
            continue
        name = _library_name(name)
        candidates = [i for i, r in enumerate(ranges) if r.name == name] or list(range(len(ranges)))
        nearest = min(candidates, key=lambda i: min(abs((day - ranges[i].first).days),
                                                    abs((day - ranges[i].last).days)))
        makeup.setdefault(nearest, []).append(day)
    holidays = tuple(HolidayRange(r.name, r.first, r.last, tuple(makeup.get(i, ()))) for i, r in enumerate(ranges))
    return YearCalendar(year, holidays, OFFICIAL, f"chinesecalendar {_version('chinesecalendar')}", LIBRARY)


def _group(days: Iterable[tuple[date, str]]) -> list[HolidayRange]:
    """Consecutive days of one name as ranges (sorted input)."""
    ranges: list[HolidayRange] = []
    for day, name in days:
        last = ranges[-1] if ranges else None
        if last and last.last + timedelta(days=1) == day and name in (last.name, None):
            ranges[-1] = HolidayRange(last.name, last.first, day)
        else:
            ranges.append(HolidayRange(name or "休息日", day, day))
    return ranges


def _rule_name(label: str) -> str | None:
    """The holiday a label of the ``holidays`` package belongs to: 农历除夕 is part of 春节, a day in
    lieu (补假) part of its holiday; a 调休 rest day joins the range next to it (None)."""
    base = label.split("（")[0].strip()
    if base == "农历除夕":
        return "春节"
    if base.startswith("休息日"):
        return None
    return base


@functools.cache
def provisional_year(year: int) -> YearCalendar | None:
    """The statutory holidays of ``year`` by rule, weekends next to them included, no 调休; None
    for a year the rules do not cover."""
    found = holiday_rules.China(years=year, language="zh_CN")
    days = sorted((day, _rule_name(label)) for day, label in found.items() if day.year == year)
    if not days:
        return None
    ranges = _group(days)
    taken = {day for r in ranges for day in r.days()}
    stretched = []
    for holiday in ranges:
        first, last = holiday.first, holiday.last
        while (first - timedelta(days=1)).year == year and (first - timedelta(days=1)).weekday() >= 5 \
                and first - timedelta(days=1) not in taken:
            first -= timedelta(days=1)
            taken.add(first)
        while (last + timedelta(days=1)).year == year and (last + timedelta(days=1)).weekday() >= 5 \
                and last + timedelta(days=1) not in taken:
            last += timedelta(days=1)
            taken.add(last)
        stretched.append(HolidayRange(holiday.name, first, last))
    notice = f"按规则推算（holidays {_version('holidays')}），不是国务院办公厅的正式通知"
    return YearCalendar(year, tuple(stretched), PROVISIONAL, notice, RULES)


class HolidayCalendar:
    """The lookup slot generation uses (callable: day → DayInfo): stored years first, then
    chinesecalendar, then the provisional rules; ``NotImplementedError`` beyond all three."""

    def __init__(self, stored: Iterable[YearCalendar] = ()) -> None:
        self.stored = {calendar.year: calendar for calendar in stored}

    def year(self, year: int) -> YearCalendar | None:
        return self.stored.get(year) or library_year(year) or provisional_year(year)

    def source(self, year: int) -> str | None:
        """official, provisional, or None (no data at all)."""
        calendar = self.year(year)
        return calendar.source if calendar else None

    def __call__(self, day: date) -> DayInfo:
        calendar = self.year(day.year)
        if calendar is None:
            raise NotImplementedError(f"no holiday data for {day.year}")
        return calendar.day_info(day)


LIBRARY_CALENDAR = HolidayCalendar()  # without the database: chinesecalendar, then the rules


def changed_days(before: YearCalendar | None, after: YearCalendar) -> list[dict[str, Any]]:
    """Days of the year whose kind changed (working day, rest day, which holiday)."""
    changes = []
    day = date(after.year, 1, 1)
    while day.year == after.year:
        new = after.day_info(day)
        old = before.day_info(day) if before else None
        if old is None or (old.type, old.holiday_name) != (new.type, new.holiday_name):
            changes.append({"date": day.isoformat(), "before": describe_day(old), "after": describe_day(new)})
        day += timedelta(days=1)
    return changes


def describe_day(info: DayInfo | None) -> str:
    if info is None:
        return "无数据"
    if info.type is DayType.HOLIDAY:
        return f"{info.holiday_name}放假"
    if info.type is DayType.WEEKEND:
        return "周末休息"
    return "上班"


# --- storage --------------------------------------------------------------------------------------

COLLECTION = "holiday_years"
HISTORY = "holiday_year_history"  # every replaced version, for the record
ALERTS = "staff_alerts"  # staff have no message channel yet: alarms are documents, one per kind and day
BOOKINGS = "bookings"  # owned by scheduling.bookings; only read here
PROVISIONAL_ALERT = "calendar_provisional"

declare_indexes(HISTORY, IndexModel([("year", ASCENDING), ("replaced_at", DESCENDING)], name="year_replaced_at"))
declare_indexes(ALERTS, IndexModel([("kind", ASCENDING), ("date", DESCENDING)], name="kind_date"))


def to_document(calendar: YearCalendar, by: str, now: datetime) -> dict[str, Any]:
    return {"_id": calendar.year, "year": calendar.year, "source": calendar.source, "notice": calendar.notice,
            "holidays": [h.to_data() for h in calendar.holidays], "imported_at": now, "imported_by": by}


def from_document(document: Mapping[str, Any]) -> YearCalendar:
    holidays = tuple(HolidayRange(h["name"], date.fromisoformat(h["first"]), date.fromisoformat(h["last"]),
                                  tuple(date.fromisoformat(d) for d in h.get("makeup_workdays") or ()))
                     for h in document["holidays"])
    return YearCalendar(int(document["year"]), holidays, document.get("source", OFFICIAL),
                        document.get("notice") or "", STORED, document.get("imported_at"),
                        document.get("imported_by"))


async def load_calendar(db: AsyncDatabase) -> HolidayCalendar:
    return HolidayCalendar([from_document(d) async for d in db[COLLECTION].find()])


async def get_stored(db: AsyncDatabase, year: int) -> YearCalendar | None:
    document = await db[COLLECTION].find_one({"_id": year})
    return from_document(document) if document else None


async def seed_library(db: AsyncDatabase, now: datetime | None = None) -> list[int]:
    """Store chinesecalendar's years that are not stored yet (a stored year is never touched)."""
    now = now or datetime.now(UTC)
    by = f"chinesecalendar {_version('chinesecalendar')}"
    operations = [UpdateOne({"_id": year}, {"$setOnInsert": to_document(library_year(year), by, now)}, upsert=True)
                  for year in library_years()]
    try:
        result = await db[COLLECTION].bulk_write(operations, ordered=False)
    except BulkWriteError as exc:  # another instance seeded the same year at the same moment
        if any(error.get("code") != 11000 for error in exc.details.get("writeErrors", [])):
            raise
        return sorted(int(year) for year in exc.details.get("upserted", []))
    return sorted(int(year) for year in result.upserted_ids.values())


async def store_year(db: AsyncDatabase, calendar: YearCalendar, by: str,
                     now: datetime | None = None) -> YearCalendar:
    """Replace the stored year (the replaced version goes to the history); returns what was stored."""
    now = now or datetime.now(UTC)
    document = to_document(calendar, by, now)
    previous = await db[COLLECTION].find_one_and_replace({"_id": calendar.year}, document, upsert=True)
    if previous is not None:
        previous = {**previous, "replaced_at": now, "replaced_by": by}
        previous.pop("_id")
        await db[HISTORY].insert_one(previous)
    return from_document(document)


async def open_bookings_between(db: AsyncDatabase, first: date, last: date) -> list[dict[str, Any]]:
    """Bookings not yet finished (any status but the terminal ones) on days ``first``..``last``;
    only the fields a report needs, no personal data."""
    query = {"date": {"$gte": first.isoformat(), "$lte": last.isoformat()},
             "status": {"$nin": sorted(transitions.TERMINAL)}}
    projection = {"kind": 1, "institution_id": 1, "institution_name": 1, "service_name": 1, "slot_id": 1,
                  "date": 1, "start": 1, "status": 1, "provisional": 1}
    return await db[BOOKINGS].find(query, projection=projection).sort("start", ASCENDING).to_list(None)


async def record_alert(db: AsyncDatabase, kind: str, day: date, message: str,
                       details: Mapping[str, Any], now: datetime | None = None) -> bool:
    """The alarm of ``kind`` for ``day``: one document per kind and day whatever the number of runs
    and instances (later runs of the day update it). True when this call created it."""
    now = now or datetime.now(UTC)
    result = await db[ALERTS].update_one(
        {"_id": f"{kind}|{day.isoformat()}"},
        {"$set": {"message": message, **details, "updated_at": now},
         "$setOnInsert": {"kind": kind, "date": day.isoformat(), "audience": "admin", "created_at": now}},
        upsert=True)
    return result.upserted_id is not None


async def recent_alerts(db: AsyncDatabase, kind: str, limit: int = 7) -> list[dict[str, Any]]:
    return await db[ALERTS].find({"kind": kind}).sort("date", DESCENDING).limit(limit).to_list(None)

