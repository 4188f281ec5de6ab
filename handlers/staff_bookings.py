"""Staff booking API: the institution's bookings, and the actions of the transition table
(confirm with a nurse, reject, check in, start the trip, start the service, complete, no-show,
cancel). Every endpoint checks the role and the booking's institution on the server; a nurse sees
and moves only the visits assigned to her."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot.accounts import staff
from bot.errors import bad_request
from bot.keys import DB
from bot.openapi import BEARER, error_response, json_body, ref
from bot.web import json_response
from handlers.bookings import ALL_STATUSES, optional_json, policy_of, text_field
from handlers.staff_auth import current_staff, require_institution
from scheduling import bookings
from scheduling import transitions as t
from scheduling.booking_base import Actor

routes = web.RouteTableDef()

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ALL_ROLES = staff.ROLES


def _view(booking: dict[str, Any], member: staff.StaffMember, audit_records: list | None = None) -> dict[str, Any]:
    # Contact details are whole only for staff of the institution handling the booking; an admin
    # of every institution sees them masked.
    reveal = member.institution_id == booking["institution_id"]
    return bookings.view(booking, reveal=reveal, audit_records=audit_records, show_actor_ids=True)


async def _booking_for(request: web.Request, member: staff.StaffMember) -> dict[str, Any]:
    """The booking if this member may see it (``bookings.get`` checks institution and nurse: 404/403)."""
    return await bookings.get(request.app[DB], request.match_info["booking_id"], Actor.staff(member))


@routes.get("/api/v1/staff/bookings")
async def list_bookings(request: web.Request) -> web.Response:
    member = await current_staff(request, *ALL_ROLES)
    institution_id = request.query.get("institution_id") or member.institution_id
    if institution_id is not None:
        require_institution(member, institution_id)
    status = request.query.get("status") or None
    if status is not None and status not in ALL_STATUSES:
        raise bad_request("invalid_status", f"status 应为以下之一：{'、'.join(ALL_STATUSES)}")
    day = request.query.get("date") or None
    if day is not None and not _DATE.match(day):
        raise bad_request("invalid_date", "date 的格式应为 YYYY-MM-DD（例如 2026-12-01）")
    found = await bookings.list_for_staff(request.app[DB], Actor.staff(member), institution_id=institution_id,
                                          status=status, date=day)
    return json_response({"bookings": [_view(b, member) for b in found]})


@routes.get("/api/v1/staff/bookings/{booking_id}")
async def get_booking(request: web.Request) -> web.Response:
    member = await current_staff(request, *ALL_ROLES)
    booking = await _booking_for(request, member)
    return json_response(_view(booking, member, await bookings.history(request.app[DB], booking["_id"])))


def _action(path: str, target: str, roles: tuple[str, ...], *, reason_field: bool = False,
            nurse_field: bool = False) -> None:
    async def handler(request: web.Request) -> web.Response:
        member = await current_staff(request, *roles)
        booking = await _booking_for(request, member)
        body = await optional_json(request)
        updated = await bookings.transition(
            request.app[DB], booking["_id"], target, Actor.staff(member), policy_of(request),
            reason=text_field(body, "reason", required=False) if reason_field else None,
            nurse_id=text_field(body, "nurse_id") if nurse_field else None,
            now=datetime.now(UTC),
        )
        return json_response(_view(updated, member))

    handler.__name__ = f"staff_{target}"
    routes.post(f"/api/v1/staff/bookings/{{booking_id}}/{path}")(handler)


_DESK = (staff.ADMIN, staff.CENTRE_STAFF)
_CLINIC = (staff.ADMIN, staff.CLINIC_STAFF)
_CLINIC_AND_NURSE = (staff.ADMIN, staff.CLINIC_STAFF, staff.NURSE)

# path, target status, roles, summary, body
ACTIONS: tuple[tuple[str, str, tuple[str, ...], str, dict[str, Any] | None], ...] = (
    ("confirm", t.CONFIRMED, _CLINIC, "确认上门护理申请并指派有资质的护士（重新核对名额和护士时间）",
     {"type": "object", "required": ["nurse_id"], "properties": {"nurse_id": {"type": "string"}}}),
    ("reject", t.REJECTED, _CLINIC, "拒绝上门护理申请（须填写原因）",
     {"type": "object", "required": ["reason"], "properties": {"reason": {"type": "string", "maxLength": 200}}}),
    ("check-in", t.CHECKED_IN, _DESK, "延时服务签到", None),
    ("start-trip", t.ON_THE_WAY, _CLINIC_AND_NURSE, "护士出发", None),
    ("start-service", t.IN_SERVICE, _CLINIC_AND_NURSE, "开始上门服务", None),
    ("complete", t.COMPLETED, (*_DESK, *_CLINIC_AND_NURSE), "办结 / 完成服务", None),
    ("no-show", t.NO_SHOW, (*_DESK, *_CLINIC_AND_NURSE), "标记未到场（预约时间开始后）", None),
    ("cancel", t.CANCELLED, (staff.ADMIN, staff.CENTRE_STAFF, staff.CLINIC_STAFF),
     "工作人员取消预约（须填写原因，截止时间后也可取消）",
     {"type": "object", "required": ["reason"], "properties": {"reason": {"type": "string", "maxLength": 200}}}),
)

for _path, _target, _roles, _summary, _body in ACTIONS:
    _action(_path, _target, tuple(dict.fromkeys(_roles)), reason_field=_target in (t.REJECTED, t.CANCELLED),
            nurse_field=_target == t.CONFIRMED)


_BOOKING_ID = {"name": "booking_id", "in": "path", "required": True, "schema": {"type": "string"}}
_COMMON_ERRORS = {
    "401": error_response("未登录"),
    "403": error_response("角色不符、不是本机构的预约，或护士操作非本人的上门服务"),
    "404": error_response("找不到该预约"),
}


def _action_doc(summary: str, body: dict[str, Any] | None, roles: tuple[str, ...]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "summary": summary, "tags": ["staff-bookings"], "security": BEARER, "parameters": [_BOOKING_ID],
        "description": f"角色：{'、'.join(dict.fromkeys(roles))}",
        "responses": {"200": json_body(ref("Booking"), "已更新"), "400": error_response("缺少原因或护士等"),
                      **_COMMON_ERRORS,
                      "409": error_response("invalid_transition；nurse_busy；nurse_not_qualified；"
                                            "slot_over_capacity；review_deadline_passed；visit_not_started")},
    }
    if body is not None:
        doc["requestBody"] = json_body(body)
    return doc


OPENAPI = {
    "paths": {
        "/api/v1/staff/bookings": {
            "get": {
                "summary": "本机构的预约（护士只看到分配给自己的上门服务）",
                "tags": ["staff-bookings"], "security": BEARER,
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"type": "string", "enum": ALL_STATUSES}},
                    {"name": "date", "in": "query", "schema": {"type": "string", "format": "date"},
                     "description": "预约日期（北京时间）"},
                    {"name": "institution_id", "in": "query", "schema": {"type": "string"},
                     "description": "仅不绑定机构的管理员可指定其他机构"}],
                "responses": {"200": json_body({"type": "object", "properties": {
                    "bookings": {"type": "array", "items": ref("Booking")}}}), "400": error_response("参数有误"),
                    "401": _COMMON_ERRORS["401"], "403": _COMMON_ERRORS["403"]},
            }
        },
        "/api/v1/staff/bookings/{booking_id}": {
            "get": {"summary": "预约详情（含完整审计记录）", "tags": ["staff-bookings"], "security": BEARER,
                    "parameters": [_BOOKING_ID], "responses": {"200": json_body(ref("Booking")), **_COMMON_ERRORS}},
        },
        **{f"/api/v1/staff/bookings/{{booking_id}}/{path}": {"post": _action_doc(summary, body, roles)}
           for path, _target, roles, summary, body in ACTIONS},
    }
}
