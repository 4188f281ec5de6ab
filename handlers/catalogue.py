"""Institutions, catalogue and slots for residents; calendar overrides, nurses and the holiday
calendar for staff. Every endpoint is one ``bot.endpoints`` declaration: its pydantic models
validate the request and document it."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from bot.accounts import staff
from bot.endpoints import Api, Body, Query
from bot.errors import ApiError, bad_request, not_found
from bot.keys import DB, SETTINGS
from bot.web import json_response
from handlers.auth import current_resident
from handlers.staff_auth import current_staff, require_institution
from scheduling import catalogue, holidays, institutions, nurses, overrides, slot_jobs, slots
from scheduling.calendar import RulesError

api = Api("booking")
routes = api.routes

MAX_RANGE_DAYS = 31
MAX_OVERRIDE_AHEAD_DAYS = 366
MAX_QUERY_DAYS_AWAY = 366  # a date in a query must lie within this many days of today
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
OVERRIDE_ROLES = (staff.ADMIN, staff.CENTRE_STAFF, staff.CLINIC_STAFF)
NURSE_ROLES = (staff.ADMIN, staff.CLINIC_STAFF)
_STAFF = ["staff"]
_STAFF_ERRORS = {403: "角色不符或不属于该机构", 404: "找不到该机构"}


# --- query value types ----------------------------------------------------------------------------

def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _iso_date(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if _DATE.match(text):
            try:
                return dt.date.fromisoformat(text)
            except ValueError:
                pass
        raise ValueError("应为存在的日期，格式 YYYY-MM-DD（例如 2026-12-01）")
    return value


def _plausible(day: dt.date) -> dt.date:
    today = slots.today_local()
    away = dt.timedelta(days=MAX_QUERY_DAYS_AWAY)
    if not today - away <= day <= today + away:
        raise ValueError(f"应在今天前后 {MAX_QUERY_DAYS_AWAY} 天之内（{today - away} 至 {today + away}）")
    return day


QueryDate = Annotated[dt.date, BeforeValidator(_iso_date), AfterValidator(_plausible)]
OptionalText = Annotated[str | None, BeforeValidator(_blank_is_none)]
OptionalDate = Annotated[QueryDate | None, BeforeValidator(_blank_is_none)]


# --- models ---------------------------------------------------------------------------------------

class ServiceArea(BaseModel):
    district: str
    streets: list[str] = []


class Institution(BaseModel):
    id: str
    kind: Literal["centre", "nursing"]
    name: str
    address: str | None = None
    district: str | None = None
    phone: str | None = None
    description: str | None = None
    timezone: str | None = None
    windows: int | None = Field(None, description="政务服务中心的服务窗口数")
    service_area: list[ServiceArea] | None = None
    cancel_deadline_hours: int | None = None
    review_deadline_hours: int | None = None
    hours: list[str] = Field(description="服务时间说明")


class InstitutionList(BaseModel):
    institutions: list[Institution]


class InstitutionQuery(Query):
    kind: Annotated[Literal["centre", "nursing"] | None, BeforeValidator(_blank_is_none)] = Field(
        None, title="机构类型", description="centre（政务服务中心）或 nursing（护理机构）")


class Service(BaseModel):
    id: str
    kind: Literal["centre", "nursing"]
    category: str
    name: str
    duration_minutes: int
    service_fee: str | None = Field(None, examples=["120.00"], description="服务费（元，演示数据）")
    visit_fee: str | None = Field(None, examples=["50.00"], description="出诊费（元，演示数据）")
    total_fee: str | None = Field(None, description="护理项目：服务费 + 出诊费，不含耗材")
    eligibility: str | None = None
    preparation: str | None = None
    contraindications: str | None = None
    materials: list[str] | None = Field(None, description="政务事项所需材料")
    notes: str | None = None
    price_note: str | None = None


class ServiceList(BaseModel):
    institution_id: str
    services: list[Service]


class Slot(BaseModel):
    id: str = Field(examples=["dazhou-gaoxin-centre|2026-12-01|17:00"])
    institution_id: str
    date: dt.date
    start: dt.datetime = Field(examples=["2026-12-01T17:00:00+08:00"])
    end: dt.datetime
    capacity: int
    remaining: int = Field(ge=0)
    appointment_only: bool = Field(description="工作人员在节假日等开放的仅限预约时段")
    extended: bool = Field(description="延时服务时段（下班后延时的一小时）")
    provisional: bool = Field(description="这一天所在年份的节假日安排尚未按国务院通知导入，时段按规则暂定："
                                          "节假日安排以国务院通知为准，如有调整会通知预约的群众")


class SlotQuery(Query):
    institution_id: str = Field(min_length=1, max_length=100, title="机构 id", description="机构 id")
    service_id: OptionalText = Field(None, max_length=100, title="服务项目",
                                     description="服务项目 id（须属于该机构；护理项目只返回时长足够的时段）")
    date_from: OptionalDate = Field(None, title="开始日期",
                                    description=f"开始日期（含），默认今天；须在今天前后 {MAX_QUERY_DAYS_AWAY} 天内")
    date_to: OptionalDate = Field(None, title="结束日期",
                                  description=f"结束日期（含），默认开始日期起的预约周期，最多 {MAX_RANGE_DAYS} 天；"
                                              f"须在今天前后 {MAX_QUERY_DAYS_AWAY} 天内")


class SlotList(BaseModel):
    institution_id: str
    service_id: str | None
    date_from: dt.date
    date_to: dt.date
    slots: list[Slot]


class Regeneration(BaseModel):
    """重新生成时段的结果"""

    institution_id: str
    first: dt.date
    last: dt.date
    slots: int
    withdrawn: int = Field(description="撤下的无人预约时段数")
    kept_with_bookings: list[str] = Field(description="规则已不再生成但仍有预约的时段（容量设为 0，需联系群众）")
    uncovered_years: list[int] = Field(description="没有任何节假日数据、未生成时段的年份")
    provisional_years: list[int] = Field(description="节假日安排为暂定（尚未导入国务院通知）的年份")


class CalendarOverride(BaseModel):
    institution_id: str
    date: dt.date
    action: Literal["close", "open", "capacity"]
    open: str | None = None
    close: str | None = None
    capacity: int | None = None
    appointment_only: bool | None = None
    reason: str
    by: str
    at: dt.datetime


class OverrideList(BaseModel):
    institution_id: str
    overrides: list[CalendarOverride]


class OverrideQuery(Query):
    date_from: OptionalDate = Field(None, title="开始日期", description="开始日期，默认今天")
    date_to: OptionalDate = Field(None, title="结束日期", description="结束日期")


class OverrideIn(Body):
    date: dt.date = Field(title="日期", description=f"今天起 {MAX_OVERRIDE_AHEAD_DAYS} 天内")
    action: Literal["close", "open", "capacity"] = Field(
        title="调整方式", description="close 停止服务、open 开放预约、capacity 调整容量")
    open: str | None = Field(None, pattern=_HH_MM, title="开放开始时间", examples=["09:00"],
                             description="action=open 时必填")
    close: str | None = Field(None, pattern=_HH_MM, title="开放结束时间", examples=["12:00"],
                              description="action=open 时必填")
    capacity: int | None = Field(None, ge=0, le=overrides.MAX_CAPACITY, title="容量",
                                 description="action=capacity 时必填；action=open 时可选，默认按规则")
    appointment_only: bool = Field(True, title="仅限预约", description="action=open：仅限预约（如法定节假日）")
    reason: str = Field(min_length=1, max_length=overrides.MAX_REASON, title="调整原因")


class OverrideSaved(BaseModel):
    override: CalendarOverride
    regeneration: Regeneration


class OverrideDeleted(BaseModel):
    deleted: bool
    date: dt.date
    regeneration: Regeneration


_Title = Literal["护士", "护师", "主管护师", "副主任护师", "主任护师"]
_Skill = Literal["老年护理", "母婴护理", "慢病管理", "康复护理", "长期照护"]
assert set(_Title.__args__) == set(nurses.TITLES) and set(_Skill.__args__) == set(catalogue.NURSING_CATEGORIES)


class Nurse(BaseModel):
    id: str
    institution_id: str
    name: str
    phone: str = Field(description="非本机构工作人员看到打码号码")
    title: _Title
    years_of_practice: int
    qualified: bool = Field(description="执业满 5 年且为护师及以上职称")
    qualification_note: str
    skills: list[str]
    active: bool


class NurseChanges(Body):
    """只需提供要修改的字段；资质由执业年限和职称自动判断"""

    name: str | None = Field(None, min_length=1, max_length=20, title="姓名")
    phone: str | None = Field(None, pattern=r"^1[3-9][0-9]{9}$", title="手机号")
    title: _Title | None = Field(None, title="职称")
    years_of_practice: int | None = Field(None, ge=0, le=60, title="临床执业年限")
    skills: list[_Skill] | None = Field(None, title="擅长类别")
    active: bool | None = Field(None, title="在岗")


class NurseInput(NurseChanges):
    """新增护士：name、phone、title、years_of_practice 必填"""

    name: str = Field(min_length=1, max_length=20, title="姓名")
    phone: str = Field(pattern=r"^1[3-9][0-9]{9}$", title="手机号")
    title: _Title = Field(title="职称")
    years_of_practice: int = Field(ge=0, le=60, title="临床执业年限")


class NurseList(BaseModel):
    institution_id: str
    nurses: list[Nurse]


class NurseSaved(BaseModel):
    nurse: Nurse
    regeneration: Regeneration


class HolidayIn(Body):
    name: str = Field(min_length=1, max_length=holidays.MAX_NAME, title="节日名称", examples=["春节"])
    first: dt.date = Field(title="放假第一天", examples=["2027-02-05"])
    last: dt.date = Field(title="放假最后一天", examples=["2027-02-11"])
    makeup_workdays: list[dt.date] = Field([], max_length=holidays.MAX_MAKEUP_DAYS, title="调休上班日",
                                           description="这个节日的调休上班日（周六或周日）")


class HolidayYearIn(Body):
    """一年的节假日安排，结构同国务院办公厅通知（与导入文件相同，见 scheduling/data/holidays-2027.example.yaml）"""

    year: int = Field(ge=holidays.MIN_YEAR, le=holidays.MAX_YEAR, title="年份")
    source: Literal["official", "provisional"] = Field(
        "official", title="来源", description="official：国务院办公厅正式通知；provisional：暂定（时段仍标为暂定）")
    notice: str | None = Field(None, max_length=holidays.MAX_NOTICE, title="通知名称或文号")
    holidays: list[HolidayIn] = Field(min_length=1, max_length=holidays.MAX_HOLIDAYS, title="节假日")


class HolidayOut(BaseModel):
    name: str
    first: dt.date
    last: dt.date
    makeup_workdays: list[dt.date]


class HolidayYear(BaseModel):
    year: int
    source: Literal["official", "provisional"]
    notice: str
    holidays: list[HolidayOut]
    origin: Literal["stored", "chinesecalendar", "rules"] = Field(
        description="stored：数据库中（工作人员导入或启动时从 chinesecalendar 写入）；chinesecalendar：程序库；"
                    "rules：按规则推算的暂定安排")
    imported_at: dt.datetime | None
    imported_by: str | None


class ChangedDay(BaseModel):
    date: dt.date
    before: str = Field(examples=["上班"])
    after: str = Field(examples=["春节放假"])


class AffectedBooking(BaseModel):
    """落在现已不开放日期的预约（没有被取消，请联系群众改约或开放当天）"""

    booking_id: str
    institution_id: str
    institution_name: str
    kind: str | None
    service_name: str
    slot_id: str
    date: dt.date
    start: dt.datetime
    status: str
    provisional: bool = Field(description="预约时该日为暂定安排")
    reason: str = Field(examples=["该日为春节假期"])


class HolidayImport(BaseModel):
    calendar: HolidayYear
    previous_source: Literal["official", "provisional"] | None = Field(
        description="导入前这一年的来源，null 表示没有数据")
    previous_origin: str | None
    changed_days: list[ChangedDay] = Field(description="与导入前相比，上班/休息有变化的日期")
    regeneration: list[Regeneration]
    invalid_rules: list[str] = Field(description="日历规则有误、未能生成时段的机构")
    affected_bookings: list[AffectedBooking]


class StaffAlert(BaseModel):
    date: dt.date
    message: str
    years: list[int]
    created_at: dt.datetime


class HolidayYearStatus(BaseModel):
    year: int
    source: Literal["official", "provisional"] | None = Field(description="null：没有任何节假日数据")
    origin: str | None
    notice: str | None
    imported_at: dt.datetime | None
    imported_by: str | None


class HolidayOverview(BaseModel):
    years: list[HolidayYearStatus]
    provisional_years: list[int] = Field(description="预约周期（及其后 31 天）内仍为暂定安排的年份")
    alerts: list[StaffAlert] = Field(description="最近的提醒（每天一条，直至导入正式通知）")


# --- helpers --------------------------------------------------------------------------------------

async def _institution(request: web.Request, institution_id: str) -> dict[str, Any]:
    institution = await institutions.get_institution(request.app[DB], institution_id)
    if institution is None:
        raise not_found("找不到该机构", "institution_not_found")
    return institution


async def _staff_for(request: web.Request, roles: tuple[str, ...]) -> tuple[staff.StaffMember, dict[str, Any]]:
    """Role first, then the institution binding, then existence: a stranger learns nothing."""
    member = await current_staff(request, *roles)
    institution_id = request.match_info["institution_id"]
    require_institution(member, institution_id)
    return member, await _institution(request, institution_id)


async def _regenerate(request: web.Request, institution: dict[str, Any]) -> dict[str, Any]:
    try:
        report = await slots.generate_slots(request.app[DB], institution,
                                            default_horizon_days=request.app[SETTINGS].booking_horizon_days)
    except RulesError as exc:
        raise ApiError(409, "invalid_calendar_rules", f"机构的日历规则有误，无法生成时段：{exc}") from None
    return report.summary()


def _path_date(value: str) -> dt.date:
    try:
        return _iso_date(value)
    except ValueError:
        raise bad_request("invalid_date", "date 的日期格式应为 YYYY-MM-DD（例如 2026-12-01）") from None


# --- resident -----------------------------------------------------------------------------------

@api.get("/api/v1/institutions", summary="机构列表（政务服务中心、护理机构）", query=InstitutionQuery,
         response=InstitutionList, auth=True)
async def list_institutions(request: web.Request, query: InstitutionQuery) -> web.Response:
    await current_resident(request)
    found = await institutions.list_institutions(request.app[DB], query.kind)
    return json_response({"institutions": [institutions.institution_view(i) for i in found]})


@api.get("/api/v1/institutions/{institution_id}/services", summary="机构提供的服务项目（护理项目或延时服务事项）",
         response=ServiceList, auth=True, errors={404: "找不到该机构"})
async def list_services(request: web.Request) -> web.Response:
    await current_resident(request)
    institution = await _institution(request, request.match_info["institution_id"])
    found = await catalogue.services_of(request.app[DB], institution["_id"])
    return json_response({"institution_id": institution["_id"],
                          "services": [catalogue.service_view(s) for s in found]})


@api.get("/api/v1/slots", summary="可预约时段", query=SlotQuery, response=SlotList, auth=True,
         description=f"只返回尚未开始、仍在开放的时段；remaining 为 0 表示已约满。查询范围最多 {MAX_RANGE_DAYS} 天，"
                     "默认从今天起的预约周期（BOOKING_HORIZON_DAYS）；日期须在今天前后一年内。"
                     "provisional 为 true 的时段所在年份尚未导入国务院的节假日安排通知，按规则暂定。",
         errors={400: "参数有误：invalid_parameter（含日期格式和范围）、service_not_offered、invalid_date_range、"
                      "date_range_too_long", 404: "找不到该机构"})
async def list_slots(request: web.Request, query: SlotQuery) -> web.Response:
    await current_resident(request)
    db = request.app[DB]
    institution = await _institution(request, query.institution_id)
    min_minutes = None
    if query.service_id is not None:
        service = await catalogue.get_service(db, query.service_id)
        if service is None or not catalogue.offered_by(service, institution["_id"]):
            raise bad_request("service_not_offered", "该机构不提供此服务项目")
        min_minutes = service["duration_minutes"]
    first = query.date_from or slots.today_local()
    last = query.date_to
    if last is None:
        last = first + dt.timedelta(days=min(request.app[SETTINGS].booking_horizon_days, MAX_RANGE_DAYS) - 1)
    if last < first:
        raise bad_request("invalid_date_range", "结束日期 date_to 不能早于开始日期 date_from")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise bad_request("date_range_too_long", f"一次最多查询 {MAX_RANGE_DAYS} 天的时段")
    found = await slots.find_slots(db, institution["_id"], first, last, min_minutes=min_minutes)
    return json_response({"institution_id": institution["_id"], "service_id": query.service_id,
                          "date_from": first.isoformat(), "date_to": last.isoformat(),
                          "slots": [slots.slot_view(s) for s in found]})


# --- staff: calendar overrides ------------------------------------------------------------------

_OVERRIDES = "/api/v1/staff/institutions/{institution_id}/calendar/overrides"


@api.get(_OVERRIDES, summary="日历调整列表（管理员、本机构工作人员）", tags=_STAFF, query=OverrideQuery,
         response=OverrideList, auth=True, errors=_STAFF_ERRORS)
async def list_overrides(request: web.Request, query: OverrideQuery) -> web.Response:
    _, institution = await _staff_for(request, OVERRIDE_ROLES)
    first = query.date_from or slots.today_local()
    found = await overrides.list_overrides(request.app[DB], institution["_id"], first, query.date_to)
    return json_response({"institution_id": institution["_id"],
                          "overrides": [overrides.override_view(o) for o in found]})


@api.post(_OVERRIDES, summary="设置某一天的日历调整（停止服务、开放预约、调整容量），立即重新生成时段",
          description="同一天再次设置会替换原调整。已有预约的时段不会被删除：停止服务后其容量变为 0，"
                      "regeneration.kept_with_bookings 列出这些时段，请联系相关群众改约。",
          tags=_STAFF, body=OverrideIn, response=OverrideSaved, auth=True, invalid_code="invalid_override",
          errors={400: "参数有误：invalid_override、invalid_override_date", 409: "机构日历规则有误，无法生成时段",
                  **_STAFF_ERRORS})
async def set_override(request: web.Request, body: OverrideIn) -> web.Response:
    member, institution = await _staff_for(request, OVERRIDE_ROLES)
    today = slots.today_local()
    if not today <= body.date <= today + dt.timedelta(days=MAX_OVERRIDE_AHEAD_DAYS):
        raise bad_request("invalid_override_date", f"只能调整今天起 {MAX_OVERRIDE_AHEAD_DAYS} 天内的日期")
    try:
        fields = overrides.parse_override(body.model_dump(exclude_unset=True, exclude={"date"}))
    except RulesError as exc:
        raise bad_request("invalid_override", str(exc)) from None
    document = await overrides.set_override(request.app[DB], institution["_id"], body.date, fields, member.username)
    regeneration = await _regenerate(request, institution)
    return json_response({"override": overrides.override_view(document), "regeneration": regeneration})


@api.delete(_OVERRIDES + "/{date}", summary="删除某一天的日历调整，立即重新生成时段", tags=_STAFF,
            response=OverrideDeleted, auth=True,
            errors={400: "日期格式不正确", 409: "机构日历规则有误，无法生成时段", **_STAFF_ERRORS,
                    404: "找不到该机构或该日期没有调整记录"})
async def delete_override(request: web.Request) -> web.Response:
    _, institution = await _staff_for(request, OVERRIDE_ROLES)
    day = _path_date(request.match_info["date"])
    if not await overrides.delete_override(request.app[DB], institution["_id"], day):
        raise not_found("该日期没有调整记录", "override_not_found")
    regeneration = await _regenerate(request, institution)
    return json_response({"deleted": True, "date": day.isoformat(), "regeneration": regeneration})


# --- staff: nurses --------------------------------------------------------------------------------

_NURSES = "/api/v1/staff/institutions/{institution_id}/nurses"


async def _nursing_institution(request: web.Request) -> tuple[staff.StaffMember, dict[str, Any]]:
    member, institution = await _staff_for(request, NURSE_ROLES)
    if institution["kind"] != institutions.NURSING:
        raise bad_request("not_nursing_institution", "只有护理机构可以管理护士")
    return member, institution


def _reveal_phone(member: staff.StaffMember, institution: dict[str, Any]) -> bool:
    # whole phone numbers only for staff bound to this very institution (not for an all-institution admin)
    return member.institution_id == institution["_id"]


def _nurse_fields(body: NurseChanges, *, partial: bool) -> dict[str, Any]:
    try:
        return nurses.parse_nurse_fields(body.model_dump(exclude_unset=True), partial=partial)
    except nurses.NurseFieldError as exc:
        raise bad_request("invalid_nurse", str(exc)) from None


async def _nurse_saved(request: web.Request, member: staff.StaffMember, institution: dict[str, Any],
                       nurse: dict[str, Any], status: int = 200) -> web.Response:
    """A created or changed nurse changes the visit capacity: slots are regenerated at once."""
    regeneration = await _regenerate(request, institution)
    return json_response({"nurse": nurses.nurse_view(nurse, reveal_phone=_reveal_phone(member, institution)),
                          "regeneration": regeneration}, status=status)


@api.get(_NURSES, summary="护士列表（管理员、本机构护理部工作人员）",
         description="手机号只对本机构工作人员完整显示，其他情况打码。", tags=_STAFF, response=NurseList,
         auth=True, errors={400: "不是护理机构", **_STAFF_ERRORS})
async def list_nurses(request: web.Request) -> web.Response:
    member, institution = await _nursing_institution(request)
    found = await nurses.list_nurses(request.app[DB], institution["_id"])
    reveal = _reveal_phone(member, institution)
    return json_response({"institution_id": institution["_id"],
                          "nurses": [nurses.nurse_view(n, reveal_phone=reveal) for n in found]})


@api.post(_NURSES, summary="新增护士（资质由执业年限和职称自动判断）", tags=_STAFF, body=NurseInput,
          response=NurseSaved, status=201, auth=True, invalid_code="invalid_nurse",
          errors={400: "字段有误或不是护理机构", **_STAFF_ERRORS})
async def create_nurse(request: web.Request, body: NurseInput) -> web.Response:
    member, institution = await _nursing_institution(request)
    fields = _nurse_fields(body, partial=False)
    nurse = await nurses.create_nurse(request.app[DB], institution["_id"], fields)
    return await _nurse_saved(request, member, institution, nurse, status=201)


@api.patch(_NURSES + "/{nurse_id}", summary="修改护士信息（含停用），资质重新判断", tags=_STAFF, body=NurseChanges,
           response=NurseSaved, auth=True, invalid_code="invalid_nurse",
           errors={400: "字段有误或不是护理机构", **_STAFF_ERRORS, 404: "找不到该机构或该机构没有这名护士"})
async def update_nurse(request: web.Request, body: NurseChanges) -> web.Response:
    member, institution = await _nursing_institution(request)
    changes = _nurse_fields(body, partial=True)
    nurse = await nurses.update_nurse(request.app[DB], institution["_id"], request.match_info["nurse_id"], changes)
    if nurse is None:
        raise not_found("该机构没有这名护士", "nurse_not_found")
    return await _nurse_saved(request, member, institution, nurse)


# --- staff: the holiday calendar ----------------------------------------------------------------

_HOLIDAYS = "/api/v1/staff/calendar/holidays"
NOT_ALL_INSTITUTIONS = ApiError(403, "forbidden", "节假日安排适用于所有机构，只有不限机构的管理员可以导入")


def _path_year(request: web.Request) -> int:
    raw = request.match_info["year"]
    if not re.fullmatch(r"[0-9]{4}", raw) or not holidays.MIN_YEAR <= int(raw) <= holidays.MAX_YEAR:
        raise bad_request("invalid_year", f"年份应为 {holidays.MIN_YEAR} 到 {holidays.MAX_YEAR} 之间的四位数字")
    return int(raw)


@api.get(_HOLIDAYS, summary="节假日安排概况：各年份的来源、仍为暂定的年份和最近的提醒（工作人员）", tags=_STAFF,
         response=HolidayOverview, auth=True, errors={403: "不是工作人员"})
async def holiday_overview(request: web.Request) -> web.Response:
    await current_staff(request)
    db = request.app[DB]
    calendar = await holidays.load_calendar(db)
    today = slots.today_local()
    horizon = request.app[SETTINGS].booking_horizon_days
    years = sorted({*range(today.year - 1, today.year + 3), *(y for y in calendar.stored if y >= today.year - 1)})
    statuses = []
    for year in years:
        found = calendar.year(year)
        statuses.append({"year": year, "source": found.source if found else None,
                         "origin": found.origin if found else None, "notice": found.notice if found else None,
                         "imported_at": found.imported_at if found else None,
                         "imported_by": found.imported_by if found else None})
    last = today + dt.timedelta(days=horizon - 1 + slot_jobs.ALERT_LEAD_DAYS)
    alerts = await holidays.recent_alerts(db, holidays.PROVISIONAL_ALERT)
    return json_response({"years": statuses, "provisional_years": slots.provisional_years(today, last, calendar),
                          "alerts": [{"date": a["date"], "message": a["message"], "years": a.get("years", []),
                                      "created_at": a["created_at"]} for a in alerts]})


@api.get(_HOLIDAYS + "/{year}", summary="某一年的节假日安排（已导入的、程序库的或按规则暂定的）", tags=_STAFF,
         response=HolidayYear, auth=True,
         errors={400: "年份不正确", 403: "不是工作人员", 404: "这一年没有任何节假日数据"})
async def get_holiday_year(request: web.Request) -> web.Response:
    await current_staff(request)
    year = _path_year(request)
    found = (await holidays.load_calendar(request.app[DB])).year(year)
    if found is None:
        raise not_found("这一年没有任何节假日数据", "holiday_year_not_found")
    return json_response(found.view())


@api.put(_HOLIDAYS + "/{year}", summary="导入（替换）一年的节假日安排（不限机构的管理员）", tags=_STAFF,
         body=HolidayYearIn, response=HolidayImport, auth=True, invalid_code="invalid_calendar",
         description="内容与导入文件相同（scheduling/data/holidays-2027.example.yaml 的 JSON 形式）。"
                     "校验：日期都在该年内、放假日期不重叠、调休上班日是周末、放假日不能同时是调休上班日；"
                     "错误信息指出是哪一项。导入后立即重新生成所有机构的时段（已预约人数不变），"
                     "affected_bookings 列出落在现已不开放日期的预约（不会被取消，请联系群众）。",
         errors={400: "内容有误：invalid_calendar、invalid_year、year_mismatch", 403: "不是不限机构的管理员"})
async def import_holiday_year(request: web.Request, body: HolidayYearIn) -> web.Response:
    member = await current_staff(request, staff.ADMIN)
    if member.institution_id is not None:
        raise NOT_ALL_INSTITUTIONS
    year = _path_year(request)
    if body.year != year:
        raise bad_request("year_mismatch", f"内容中的年份 {body.year} 与地址中的年份 {year} 不一致")
    try:
        calendar = holidays.parse_year(body.model_dump(mode="json", exclude_none=True))
    except holidays.CalendarError as exc:
        raise bad_request("invalid_calendar", str(exc)) from None
    report = await slot_jobs.import_year(request.app[DB], calendar, f"staff:{member.username}",
                                         horizon_days=request.app[SETTINGS].booking_horizon_days)
    slot_jobs.publish(request.app, report.coverage)
    return json_response(report.summary())
