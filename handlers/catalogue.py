"""Institutions, catalogue and slots for residents; calendar overrides and nurses for staff."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

from aiohttp import web

from bot.accounts import staff
from bot.errors import ApiError, bad_request, not_found
from bot.keys import DB, SETTINGS
from bot.openapi import BEARER, error_response, json_body, ref
from bot.web import json_response, read_json
from handlers.auth import current_resident
from handlers.staff_auth import current_staff, require_institution
from scheduling import catalogue, institutions, nurses, overrides, slots
from scheduling.calendar import RulesError

routes = web.RouteTableDef()

MAX_RANGE_DAYS = 31
MAX_OVERRIDE_AHEAD_DAYS = 366
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
OVERRIDE_ROLES = (staff.ADMIN, staff.CENTRE_STAFF, staff.CLINIC_STAFF)
NURSE_ROLES = (staff.ADMIN, staff.CLINIC_STAFF)


def parse_date(value: str | None, name: str) -> date | None:
    if value is None or value == "":
        return None
    if _DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise bad_request("invalid_date", f"{name} 的日期格式应为 YYYY-MM-DD（例如 2026-12-01）")


def require_date(value: Any, name: str) -> date:
    day = parse_date(value, name) if isinstance(value, str) else None
    if day is None:
        raise bad_request("invalid_date", f"请填写 {name}，格式为 YYYY-MM-DD（例如 2026-12-01）")
    return day


async def _institution(request: web.Request, institution_id: str) -> dict[str, Any]:
    institution = await institutions.get_institution(request.app[DB], institution_id)
    if institution is None:
        raise not_found("找不到该机构", "institution_not_found")
    return institution


# --- resident -----------------------------------------------------------------------------------

@routes.get("/api/v1/institutions")
async def list_institutions(request: web.Request) -> web.Response:
    await current_resident(request)
    kind = request.query.get("kind") or None
    if kind is not None and kind not in institutions.KINDS:
        raise bad_request("invalid_kind", "机构类型 kind 只能是 centre（政务服务中心）或 nursing（护理机构）")
    found = await institutions.list_institutions(request.app[DB], kind)
    return json_response({"institutions": [institutions.institution_view(i) for i in found]})


@routes.get("/api/v1/institutions/{institution_id}/services")
async def list_services(request: web.Request) -> web.Response:
    await current_resident(request)
    institution = await _institution(request, request.match_info["institution_id"])
    found = await catalogue.services_of(request.app[DB], institution["_id"])
    return json_response({"institution_id": institution["_id"],
                          "services": [catalogue.service_view(s) for s in found]})


@routes.get("/api/v1/slots")
async def list_slots(request: web.Request) -> web.Response:
    await current_resident(request)
    db = request.app[DB]
    institution_id = request.query.get("institution_id")
    if not institution_id:
        raise bad_request("missing_institution_id", "请指定机构 institution_id")
    institution = await _institution(request, institution_id)
    service_id = request.query.get("service_id") or None
    min_minutes = None
    if service_id is not None:
        service = await catalogue.get_service(db, service_id)
        if service is None or not catalogue.offered_by(service, institution_id):
            raise bad_request("service_not_offered", "该机构不提供此服务项目")
        min_minutes = service["duration_minutes"]
    today = slots.today_local()
    first = parse_date(request.query.get("date_from"), "date_from") or today
    last = parse_date(request.query.get("date_to"), "date_to")
    if last is None:
        last = first + timedelta(days=min(request.app[SETTINGS].booking_horizon_days, MAX_RANGE_DAYS) - 1)
    if last < first:
        raise bad_request("invalid_date_range", "结束日期 date_to 不能早于开始日期 date_from")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise bad_request("date_range_too_long", f"一次最多查询 {MAX_RANGE_DAYS} 天的时段")
    found = await slots.find_slots(db, institution_id, first, last, min_minutes=min_minutes)
    return json_response({"institution_id": institution["_id"], "service_id": service_id,
                          "date_from": first.isoformat(), "date_to": last.isoformat(),
                          "slots": [slots.slot_view(s) for s in found]})


# --- staff: calendar overrides ------------------------------------------------------------------

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


@routes.get("/api/v1/staff/institutions/{institution_id}/calendar/overrides")
async def list_overrides(request: web.Request) -> web.Response:
    _, institution = await _staff_for(request, OVERRIDE_ROLES)
    first = parse_date(request.query.get("date_from"), "date_from") or slots.today_local()
    last = parse_date(request.query.get("date_to"), "date_to")
    found = await overrides.list_overrides(request.app[DB], institution["_id"], first, last)
    return json_response({"institution_id": institution["_id"],
                          "overrides": [overrides.override_view(o) for o in found]})


@routes.post("/api/v1/staff/institutions/{institution_id}/calendar/overrides")
async def set_override(request: web.Request) -> web.Response:
    member, institution = await _staff_for(request, OVERRIDE_ROLES)
    body = await read_json(request)
    day = require_date(body.get("date"), "date")
    today = slots.today_local()
    if not today <= day <= today + timedelta(days=MAX_OVERRIDE_AHEAD_DAYS):
        raise bad_request("invalid_override_date", f"只能调整今天起 {MAX_OVERRIDE_AHEAD_DAYS} 天内的日期")
    try:
        fields = overrides.parse_override(body)
    except RulesError as exc:
        raise bad_request("invalid_override", str(exc)) from None
    document = await overrides.set_override(request.app[DB], institution["_id"], day, fields, member.username)
    regeneration = await _regenerate(request, institution)
    return json_response({"override": overrides.override_view(document), "regeneration": regeneration})


@routes.delete("/api/v1/staff/institutions/{institution_id}/calendar/overrides/{date}")
async def delete_override(request: web.Request) -> web.Response:
    _, institution = await _staff_for(request, OVERRIDE_ROLES)
    day = require_date(request.match_info["date"], "date")
    if not await overrides.delete_override(request.app[DB], institution["_id"], day):
        raise not_found("该日期没有调整记录", "override_not_found")
    regeneration = await _regenerate(request, institution)
    return json_response({"deleted": True, "date": day.isoformat(), "regeneration": regeneration})


# --- staff: nurses --------------------------------------------------------------------------------

async def _nursing_institution(request: web.Request) -> tuple[staff.StaffMember, dict[str, Any]]:
    member, institution = await _staff_for(request, NURSE_ROLES)
    if institution["kind"] != institutions.NURSING:
        raise bad_request("not_nursing_institution", "只有护理机构可以管理护士")
    return member, institution


def _reveal_phone(member: staff.StaffMember, institution: dict[str, Any]) -> bool:
    # whole phone numbers only for staff bound to this very institution (not for an all-institution admin)
    return member.institution_id == institution["_id"]


async def _nurse_fields(request: web.Request, *, partial: bool) -> dict[str, Any]:
    try:
        return nurses.parse_nurse_fields(await read_json(request), partial=partial)
    except nurses.NurseFieldError as exc:
        raise bad_request("invalid_nurse", str(exc)) from None


async def _nurse_saved(request: web.Request, member: staff.StaffMember, institution: dict[str, Any],
                       nurse: dict[str, Any], status: int = 200) -> web.Response:
    """A created or changed nurse changes the visit capacity: slots are regenerated at once."""
    regeneration = await _regenerate(request, institution)
    return json_response({"nurse": nurses.nurse_view(nurse, reveal_phone=_reveal_phone(member, institution)),
                          "regeneration": regeneration}, status=status)


@routes.get("/api/v1/staff/institutions/{institution_id}/nurses")
async def list_nurses(request: web.Request) -> web.Response:
    member, institution = await _nursing_institution(request)
    found = await nurses.list_nurses(request.app[DB], institution["_id"])
    reveal = _reveal_phone(member, institution)
    return json_response({"institution_id": institution["_id"],
                          "nurses": [nurses.nurse_view(n, reveal_phone=reveal) for n in found]})


@routes.post("/api/v1/staff/institutions/{institution_id}/nurses")
async def create_nurse(request: web.Request) -> web.Response:
    member, institution = await _nursing_institution(request)
    fields = await _nurse_fields(request, partial=False)
    nurse = await nurses.create_nurse(request.app[DB], institution["_id"], fields)
    return await _nurse_saved(request, member, institution, nurse, status=201)


@routes.patch("/api/v1/staff/institutions/{institution_id}/nurses/{nurse_id}")
async def update_nurse(request: web.Request) -> web.Response:
    member, institution = await _nursing_institution(request)
    changes = await _nurse_fields(request, partial=True)
    nurse = await nurses.update_nurse(request.app[DB], institution["_id"], request.match_info["nurse_id"], changes)
    if nurse is None:
        raise not_found("该机构没有这名护士", "nurse_not_found")
    return await _nurse_saved(request, member, institution, nurse)


# --- OpenAPI --------------------------------------------------------------------------------------

def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def _query_param(name: str, description: str, schema: dict[str, Any] | None = None,
                 required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema or {"type": "string"}}


_DATE_SCHEMA = {"type": "string", "format": "date", "example": "2026-12-01"}
_INSTITUTION_PARAM = _path_param("institution_id", "机构 id")
_STAFF_ERRORS = {"401": error_response("未以工作人员身份登录"),
                 "403": error_response("角色不符或不属于该机构"),
                 "404": error_response("找不到该机构")}

OPENAPI: dict[str, Any] = {
    "paths": {
        "/api/v1/institutions": {"get": {
            "summary": "机构列表（政务服务中心、护理机构）", "tags": ["booking"], "security": BEARER,
            "parameters": [_query_param("kind", "机构类型", {"type": "string", "enum": list(institutions.KINDS)})],
            "responses": {
                "200": json_body({"type": "object", "properties": {
                    "institutions": {"type": "array", "items": ref("Institution")}}}, "机构列表"),
                "400": error_response("kind 不正确"), "401": error_response("未登录")},
        }},
        "/api/v1/institutions/{institution_id}/services": {"get": {
            "summary": "机构提供的服务项目（护理项目或延时服务事项）", "tags": ["booking"], "security": BEARER,
            "parameters": [_INSTITUTION_PARAM],
            "responses": {
                "200": json_body({"type": "object", "properties": {
                    "institution_id": {"type": "string"},
                    "services": {"type": "array", "items": ref("Service")}}}, "服务项目"),
                "401": error_response("未登录"), "404": error_response("找不到该机构")},
        }},
        "/api/v1/slots": {"get": {
            "summary": "可预约时段", "tags": ["booking"], "security": BEARER,
            "description": "只返回尚未开始、仍在开放的时段；remaining 为 0 表示已约满。查询范围最多 31 天，"
                           "默认从今天起的预约周期（BOOKING_HORIZON_DAYS）。",
            "parameters": [
                _query_param("institution_id", "机构 id", required=True),
                _query_param("service_id", "服务项目 id（须属于该机构；护理项目只返回时长足够的时段）"),
                _query_param("date_from", "开始日期（含），默认今天", _DATE_SCHEMA),
                _query_param("date_to", "结束日期（含）", _DATE_SCHEMA)],
            "responses": {
                "200": json_body({"type": "object", "properties": {
                    "institution_id": {"type": "string"}, "service_id": {"type": "string", "nullable": True},
                    "date_from": _DATE_SCHEMA, "date_to": _DATE_SCHEMA,
                    "slots": {"type": "array", "items": ref("Slot")}}}, "时段"),
                "400": error_response("参数有误：missing_institution_id、service_not_offered、invalid_date、"
                                      "invalid_date_range、date_range_too_long"),
                "401": error_response("未登录"), "404": error_response("找不到该机构")},
        }},
        "/api/v1/staff/institutions/{institution_id}/calendar/overrides": {
            "get": {
                "summary": "日历调整列表（管理员、本机构工作人员）", "tags": ["staff"], "security": BEARER,
                "parameters": [_INSTITUTION_PARAM, _query_param("date_from", "开始日期，默认今天", _DATE_SCHEMA),
                               _query_param("date_to", "结束日期", _DATE_SCHEMA)],
                "responses": {
                    "200": json_body({"type": "object", "properties": {
                        "institution_id": {"type": "string"},
                        "overrides": {"type": "array", "items": ref("CalendarOverride")}}}, "日历调整"),
                    "400": error_response("日期格式不正确"), **_STAFF_ERRORS},
            },
            "post": {
                "summary": "设置某一天的日历调整（停止服务、开放预约、调整容量），立即重新生成时段",
                "description": "同一天再次设置会替换原调整。已有预约的时段不会被删除：停止服务后其容量变为 0，"
                               "regeneration.kept_with_bookings 列出这些时段，请联系相关群众改约。",
                "tags": ["staff"], "security": BEARER, "parameters": [_INSTITUTION_PARAM],
                "requestBody": json_body({"type": "object", "required": ["date", "action", "reason"], "properties": {
                    "date": _DATE_SCHEMA,
                    "action": {"type": "string", "enum": list(overrides.ACTIONS)},
                    "open": {"type": "string", "example": "09:00", "description": "action=open 时必填"},
                    "close": {"type": "string", "example": "12:00", "description": "action=open 时必填"},
                    "capacity": {"type": "integer", "minimum": 0, "maximum": overrides.MAX_CAPACITY,
                                 "description": "action=capacity 时必填；action=open 时可选，默认按规则"},
                    "appointment_only": {"type": "boolean", "default": True,
                                         "description": "action=open：仅限预约（如法定节假日）"},
                    "reason": {"type": "string", "maxLength": overrides.MAX_REASON}}}),
                "responses": {
                    "200": json_body({"type": "object", "properties": {
                        "override": ref("CalendarOverride"), "regeneration": ref("Regeneration")}}, "已保存"),
                    "400": error_response("参数有误：invalid_date、invalid_override_date、invalid_override"),
                    "409": error_response("机构日历规则有误，无法生成时段"), **_STAFF_ERRORS},
            },
        },
        "/api/v1/staff/institutions/{institution_id}/calendar/overrides/{date}": {"delete": {
            "summary": "删除某一天的日历调整，立即重新生成时段", "tags": ["staff"], "security": BEARER,
            "parameters": [_INSTITUTION_PARAM, _path_param("date", "日期 YYYY-MM-DD")],
            "responses": {
                "200": json_body({"type": "object", "properties": {
                    "deleted": {"type": "boolean"}, "date": _DATE_SCHEMA,
                    "regeneration": ref("Regeneration")}}, "已删除"),
                "400": error_response("日期格式不正确"),
                "409": error_response("机构日历规则有误，无法生成时段"),
                **_STAFF_ERRORS, "404": error_response("找不到该机构或该日期没有调整记录")},
        }},
        "/api/v1/staff/institutions/{institution_id}/nurses": {
            "get": {
                "summary": "护士列表（管理员、本机构护理部工作人员）", "tags": ["staff"], "security": BEARER,
                "description": "手机号只对本机构工作人员完整显示，其他情况打码。",
                "parameters": [_INSTITUTION_PARAM],
                "responses": {
                    "200": json_body({"type": "object", "properties": {
                        "institution_id": {"type": "string"},
                        "nurses": {"type": "array", "items": ref("Nurse")}}}, "护士列表"),
                    "400": error_response("不是护理机构"), **_STAFF_ERRORS},
            },
            "post": {
                "summary": "新增护士（资质由执业年限和职称自动判断）", "tags": ["staff"], "security": BEARER,
                "parameters": [_INSTITUTION_PARAM],
                "requestBody": json_body(ref("NurseInput")),
                "responses": {
                    "201": json_body({"type": "object", "properties": {
                        "nurse": ref("Nurse"), "regeneration": ref("Regeneration")}}, "已新增"),
                    "400": error_response("字段有误或不是护理机构"), **_STAFF_ERRORS},
            },
        },
        "/api/v1/staff/institutions/{institution_id}/nurses/{nurse_id}": {"patch": {
            "summary": "修改护士信息（含停用），资质重新判断", "tags": ["staff"], "security": BEARER,
            "parameters": [_INSTITUTION_PARAM, _path_param("nurse_id", "护士 id")],
            "requestBody": json_body(ref("NurseInput"), "只需提供要修改的字段"),
            "responses": {
                "200": json_body({"type": "object", "properties": {
                    "nurse": ref("Nurse"), "regeneration": ref("Regeneration")}}, "已修改"),
                "400": error_response("字段有误或不是护理机构"),
                **_STAFF_ERRORS, "404": error_response("找不到该机构或该机构没有这名护士")},
        }},
    },
    "schemas": {
        "Institution": {"type": "object", "required": ["id", "kind", "name"], "properties": {
            "id": {"type": "string"}, "kind": {"type": "string", "enum": list(institutions.KINDS)},
            "name": {"type": "string"}, "address": {"type": "string"}, "district": {"type": "string"},
            "phone": {"type": "string"}, "description": {"type": "string"}, "timezone": {"type": "string"},
            "windows": {"type": "integer", "description": "政务服务中心的服务窗口数"},
            "service_area": {"type": "array", "items": {"type": "object", "properties": {
                "district": {"type": "string"}, "streets": {"type": "array", "items": {"type": "string"}}}}},
            "cancel_deadline_hours": {"type": "integer"}, "review_deadline_hours": {"type": "integer"},
            "hours": {"type": "array", "items": {"type": "string"}, "description": "服务时间说明"}}},
        "Service": {"type": "object", "required": ["id", "kind", "category", "name", "duration_minutes"],
                    "properties": {
            "id": {"type": "string"}, "kind": {"type": "string", "enum": list(institutions.KINDS)},
            "category": {"type": "string"}, "name": {"type": "string"}, "duration_minutes": {"type": "integer"},
            "service_fee": {"type": "string", "example": "120.00", "description": "服务费（元，演示数据）"},
            "visit_fee": {"type": "string", "example": "50.00", "description": "出诊费（元，演示数据）"},
            "total_fee": {"type": "string", "description": "护理项目：服务费 + 出诊费，不含耗材"},
            "eligibility": {"type": "string"}, "preparation": {"type": "string"},
            "contraindications": {"type": "string"},
            "materials": {"type": "array", "items": {"type": "string"}, "description": "政务事项所需材料"},
            "notes": {"type": "string"}, "price_note": {"type": "string"}}},
        "Slot": {"type": "object",
                 "required": ["id", "institution_id", "date", "start", "end", "capacity", "remaining"],
                 "properties": {
            "id": {"type": "string", "example": "dazhou-gaoxin-centre|2026-12-01|17:00"},
            "institution_id": {"type": "string"}, "date": _DATE_SCHEMA,
            "start": {"type": "string", "format": "date-time", "example": "2026-12-01T17:00:00+08:00"},
            "end": {"type": "string", "format": "date-time"},
            "capacity": {"type": "integer"}, "remaining": {"type": "integer", "minimum": 0},
            "appointment_only": {"type": "boolean", "description": "工作人员在节假日等开放的仅限预约时段"},
            "extended": {"type": "boolean", "description": "延时服务时段（下班后延时的一小时）"}}},
        "CalendarOverride": {"type": "object", "properties": {
            "institution_id": {"type": "string"}, "date": _DATE_SCHEMA,
            "action": {"type": "string", "enum": list(overrides.ACTIONS)},
            "open": {"type": "string"}, "close": {"type": "string"}, "capacity": {"type": "integer"},
            "appointment_only": {"type": "boolean"}, "reason": {"type": "string"},
            "by": {"type": "string"}, "at": {"type": "string", "format": "date-time"}}},
        "Regeneration": {"type": "object", "description": "重新生成时段的结果", "properties": {
            "first": _DATE_SCHEMA, "last": _DATE_SCHEMA, "slots": {"type": "integer"},
            "withdrawn": {"type": "integer", "description": "撤下的无人预约时段数"},
            "kept_with_bookings": {"type": "array", "items": {"type": "string"},
                                   "description": "规则已不再生成但仍有预约的时段（容量设为 0，需联系群众）"},
            "uncovered_years": {"type": "array", "items": {"type": "integer"},
                                "description": "没有节假日数据、未生成时段的年份"}}},
        "Nurse": {"type": "object", "properties": {
            "id": {"type": "string"}, "institution_id": {"type": "string"}, "name": {"type": "string"},
            "phone": {"type": "string", "description": "非本机构工作人员看到打码号码"},
            "title": {"type": "string", "enum": list(nurses.TITLES)},
            "years_of_practice": {"type": "integer"},
            "qualified": {"type": "boolean", "description": "执业满 5 年且为护师及以上职称"},
            "qualification_note": {"type": "string"},
            "skills": {"type": "array", "items": {"type": "string"}}, "active": {"type": "boolean"}}},
        "NurseInput": {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 20}, "phone": {"type": "string", "pattern": "^1[3-9][0-9]{9}$"},
            "title": {"type": "string", "enum": list(nurses.TITLES)},
            "years_of_practice": {"type": "integer", "minimum": 0, "maximum": 60},
            "skills": {"type": "array", "items": {"type": "string", "enum": list(catalogue.NURSING_CATEGORIES)}},
            "active": {"type": "boolean"}},
            "description": "新增时 name、phone、title、years_of_practice 必填"},
    },
}
