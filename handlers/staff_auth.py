"""Staff login and the guard every staff endpoint uses (role and institution, checked on the server)."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from bot.accounts import sessions, staff
from bot.errors import ApiError, bad_request
from bot.keys import DB
from bot.openapi import BEARER, error_response, json_body
from bot.web import json_response, read_json
from handlers.auth import bearer_token

routes = web.RouteTableDef()

STAFF_SESSION_TTL = timedelta(hours=12)
STAFF_UNAUTHORIZED = ApiError(401, "unauthorized", "请先以工作人员身份登录")
FORBIDDEN = ApiError(403, "forbidden", "没有权限执行此操作")


async def current_staff(request: web.Request, *roles: str) -> staff.StaffMember:
    """The signed-in staff member, or 401; 403 unless their role is one of ``roles`` (any if none)."""
    token = bearer_token(request)
    db = request.app[DB]
    session = token and await sessions.resolve(db, token, sessions.STAFF)
    member = session and await staff.find(db, session["subject"])
    if not member:
        raise STAFF_UNAUTHORIZED
    if roles and member.role not in roles:
        raise FORBIDDEN
    return member


def require_institution(member: staff.StaffMember, institution_id: str) -> None:
    """403 unless the staff member belongs to ``institution_id`` (admins without one act for all)."""
    if not member.may_act_for(institution_id):
        raise FORBIDDEN


@routes.post("/api/v1/staff/login")
async def login(request: web.Request) -> web.Response:
    body = await read_json(request)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise bad_request("invalid_credentials_format", "请填写用户名和密码")
    db = request.app[DB]
    member = await staff.authenticate(db, username[:64], password[:256])
    if member is None:
        raise ApiError(401, "invalid_credentials", "用户名或密码错误")
    token, expires_at = await sessions.issue(db, sessions.STAFF, member.username, STAFF_SESSION_TTL)
    from handlers.staff_bookings import staff_identity  # the nurse record of a nurse account

    identity = await staff_identity(db, member)
    return json_response({"token": token, "expires_at": expires_at, "username": member.username,
                          "role": member.role, "institution_id": member.institution_id, "name": member.name,
                          "nurse": identity["nurse"]})


@routes.post("/api/v1/staff/logout")
async def logout(request: web.Request) -> web.Response:
    await current_staff(request)
    await sessions.revoke(request.app[DB], bearer_token(request) or "")
    return json_response({"ok": True})


OPENAPI = {
    "paths": {
        "/api/v1/staff/login": {
            "post": {
                "summary": "工作人员登录",
                "tags": ["staff"],
                "requestBody": json_body({"type": "object", "required": ["username", "password"],
                                          "properties": {"username": {"type": "string"},
                                                         "password": {"type": "string", "format": "password"}}}),
                "responses": {
                    "200": json_body({"type": "object", "properties": {
                        "token": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"},
                        "username": {"type": "string"}, "role": {"type": "string", "enum": list(staff.ROLES)},
                        "institution_id": {"type": "string", "nullable": True}, "name": {"type": "string"},
                        "nurse": {"type": "object", "nullable": True, "description": "护士账号对应的护士",
                                  "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                                                 "title": {"type": "string"}, "qualified": {"type": "boolean"}}}}},
                        "已登录"),
                    "400": error_response("缺少用户名或密码"),
                    "401": error_response("用户名或密码错误"),
                },
            }
        },
        "/api/v1/staff/logout": {
            "post": {"summary": "工作人员退出登录", "tags": ["staff"], "security": BEARER,
                     "responses": {"200": json_body({"type": "object"}, "已退出"),
                                   "401": error_response("未登录")}}
        },
    }
}
