"""Staff login and the guard every staff endpoint uses (role and institution, checked on the server).

Login goes through ``bot.accounts.login.sign_in``: throttled per account and per address
(exponential lock-out, shared by all instances), verified off the event loop, logged."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from bot.accounts import login_log, sessions, staff
from bot.accounts.login import LoginRefusedError, sign_in, wait_text
from bot.endpoints import Api, Body, Query, QueryInt
from bot.errors import ApiError
from bot.keys import DB
from bot.web import json_response
from handlers.auth import bearer_token

api = Api("staff")
routes = api.routes

STAFF_SESSION_TTL = timedelta(hours=12)
STAFF_UNAUTHORIZED = ApiError(401, "unauthorized", "请先以工作人员身份登录")
FORBIDDEN = ApiError(403, "forbidden", "没有权限执行此操作")


def client_address(request: web.Request) -> str:
    """The peer address (a proxy in front is expected to be the only peer; see README "Security")."""
    return request.remote or "unknown"


def too_many_attempts(retry_after: int) -> ApiError:
    return ApiError(429, "too_many_login_attempts", f"登录失败次数过多，请 {wait_text(retry_after)}后再试",
                    retry_after=retry_after)


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


def institution_scope(member: staff.StaffMember, requested: str | None) -> str | None:
    """The institution a staff list is for: the one asked for (403 unless the member may act for it),
    else the member's own; None for an admin of every institution who asked for none."""
    institution_id = requested or member.institution_id
    if institution_id is not None:
        require_institution(member, institution_id)
    return institution_id


class Credentials(Body):
    username: str = Field(min_length=1, max_length=64, title="用户名")
    password: str = Field(min_length=1, max_length=256, title="密码", json_schema_extra={"format": "password"})


class SignedIn(BaseModel):
    token: str
    expires_at: datetime
    username: str
    role: str = Field(json_schema_extra={"enum": list(staff.ROLES)})
    institution_id: str | None
    name: str
    nurse: dict[str, Any] | None = Field(description="护士账号对应的护士（id、name、title、qualified）")
    must_change_password: bool = Field(description="管理员重置密码后为 true：请先修改密码")


class Ok(BaseModel):
    ok: bool


@api.post("/api/v1/staff/login", summary="工作人员登录（按账号和来源地址限制失败次数，超过后指数延长锁定）",
          body=Credentials, response=SignedIn, invalid_code="invalid_credentials_format",
          errors={401: "用户名或密码错误", 429: "失败次数过多，已暂时锁定（响应头 Retry-After 为秒数）",
                  503: "登录请求过多，请稍后再试"})
async def login(request: web.Request, body: Credentials) -> web.Response:
    db = request.app[DB]
    try:
        member = await sign_in(db, body.username, body.password, client_address(request))
    except LoginRefusedError as refused:
        if refused.retry_after:
            error = too_many_attempts(refused.retry_after)
            return json_response(error.body(), status=429, headers={"Retry-After": str(refused.retry_after)})
        raise ApiError(401, "invalid_credentials", "用户名或密码错误") from None
    token, expires_at = await sessions.issue(db, sessions.STAFF, member.username, STAFF_SESSION_TTL)
    from handlers.staff_bookings import staff_identity  # the nurse record of a nurse account

    identity = await staff_identity(db, member)
    return SignedIn(token=token, expires_at=expires_at, username=member.username, role=member.role,
                    institution_id=member.institution_id, name=member.name, nurse=identity["nurse"],
                    must_change_password=member.must_change_password)


@api.post("/api/v1/staff/logout", summary="工作人员退出登录", response=Ok, auth=True)
async def logout(request: web.Request) -> web.Response:
    await current_staff(request)
    await sessions.revoke(request.app[DB], bearer_token(request) or "")
    return Ok(ok=True)


class LoginLogQuery(Query):
    username: str | None = Field(None, max_length=64, description="只看该用户名")
    outcome: Literal[tuple(login_log.OUTCOME_LABELS)] | None = None  # type: ignore[valid-type]
    skip: QueryInt = Field(0, ge=0, le=100_000)
    limit: QueryInt = Field(50, ge=1, le=200)


class LoginLogEntry(BaseModel):
    username: str
    address: str
    outcome: str
    channel: str
    at: datetime


class LoginLog(BaseModel):
    entries: list[LoginLogEntry]
    total: int


@api.get("/api/v1/staff/login-log", summary="登录日志（管理员看全部，其他工作人员只看自己的）",
         query=LoginLogQuery, response=LoginLog, auth=True)
async def get_login_log(request: web.Request, query: LoginLogQuery) -> LoginLog:
    member = await current_staff(request)
    username = query.username if member.role == staff.ADMIN else member.username
    found, total = await login_log.entries(request.app[DB], username=username, outcome=query.outcome,
                                           skip=query.skip, limit=query.limit)
    return LoginLog(entries=[LoginLogEntry(**{k: e.get(k, "") for k in ("username", "address", "outcome",
                                                                       "channel", "at")}) for e in found],
                    total=total)
