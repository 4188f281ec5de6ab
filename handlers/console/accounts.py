"""Staff accounts (admin only): list with filters, create, disable/enable, reset a password (the
user sets their own at the next login), change role and institution; and the login log."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from bot.accounts import login_log, sessions, staff, throttle
from bot.endpoints import QueryInt
from bot.keys import DB
from handlers.console import session as console_session
from handlers.console.base import ADMIN, page, parse_form, redirect, render
from handlers.console.session import ConsoleSession
from scheduling import institutions, nurses

routes = web.RouteTableDef()
PAGE = 25


class AccountsQuery(BaseModel):
    role: str | None = Field(None, max_length=20)
    institution: str | None = Field(None, max_length=80)
    state: str | None = Field(None, pattern="^(active|disabled)$")
    page: QueryInt = Field(1, ge=1, le=10000)
    log_user: str | None = Field(None, max_length=64)
    log_outcome: str | None = Field(None, max_length=20)
    log_page: QueryInt = Field(1, ge=1, le=10000)


class NewAccount(BaseModel):
    username: str = Field(min_length=3, max_length=32, title="用户名")
    name: str = Field(min_length=1, max_length=30, title="姓名")
    role: str = Field(min_length=1, title="角色")
    institution_id: str = Field("", max_length=80, title="所属机构")
    nurse_id: str = Field("", max_length=80, title="对应护士")
    password: str = Field(min_length=1, max_length=256, title="初始密码")


class AccountChange(BaseModel):
    role: str = Field(min_length=1, title="角色")
    institution_id: str = Field("", max_length=80, title="所属机构")
    name: str = Field(min_length=1, max_length=30, title="姓名")
    nurse_id: str = Field("", max_length=80, title="对应护士")


async def _nurse_problem(db: Any, role: str, institution_id: str, nurse_id: str) -> str | None:
    """A nurse account names the nurse record (of its own institution) whose visits it sees and
    moves; no other role has one."""
    if role != staff.NURSE:
        return None
    if not nurse_id:
        return "护士账号须选择对应的护士"
    nurse = await db[nurses.COLLECTION].find_one({"_id": nurse_id}, {"institution_id": 1})
    if nurse is None or nurse.get("institution_id") != institution_id:
        return "找不到该护士，或该护士不属于所选机构"
    return None


async def _sign_out_everywhere(db: Any, username: str) -> None:
    await db[sessions.COLLECTION].delete_many({"subject": username, "kind": {"$in": [sessions.STAFF, "console"]}})


def _clean(query: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in query.items() if v}


async def _page(request: web.Request, s: ConsoleSession, *, errors: dict[str, str] | None = None,
                values: dict[str, Any] | None = None, status: int = 200, temporary: str = "") -> web.Response:
    db = request.app[DB]
    try:
        q = AccountsQuery.model_validate(_clean(dict(request.query)))
    except Exception:
        q = AccountsQuery()
    active = None if q.state is None else q.state == "active"
    found, total = await staff.list_accounts(db, institution_id=q.institution, role=q.role, active=active,
                                             skip=(q.page - 1) * PAGE, limit=PAGE)
    entries, log_total = await login_log.entries(db, username=q.log_user, outcome=q.log_outcome,
                                                 skip=(q.log_page - 1) * PAGE, limit=PAGE)
    all_institutions = await institutions.list_institutions(db)
    staff_nurses = await db[nurses.COLLECTION].find(
        {}, {"name": 1, "institution_id": 1, "title": 1, "active": 1}).sort("name", 1).to_list(2000)
    return await render(request, "accounts.html", {
        "title": "账号与登录日志", "accounts": found, "total": total, "q": q, "pages": max(1, -(-total // PAGE)),
        "entries": entries, "log_total": log_total, "log_pages": max(1, -(-log_total // PAGE)),
        "roles": staff.ROLE_LABELS, "institutions": {i["_id"]: i.get("name", i["_id"]) for i in all_institutions},
        "outcomes": login_log.OUTCOME_LABELS, "errors": errors or {}, "values": values or {},
        "temporary": temporary, "min_password": staff.MIN_PASSWORD, "nurses": staff_nurses,
    }, s=s, status=status, active="accounts")


@routes.get("/console/accounts")
@page(ADMIN)
async def accounts(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    return await _page(request, s)


@routes.post("/console/accounts")
@page(ADMIN)
async def create_account(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    form = await request.post()
    parsed, errors = parse_form(NewAccount, form)
    values = {k: v for k, v in form.items() if k not in ("password", console_session.CSRF_FIELD)}
    if parsed is None:
        return await _page(request, s, errors=errors, values=values, status=400)
    if parsed.institution_id and not await institutions.get_institution(request.app[DB], parsed.institution_id):
        return await _page(request, s, errors={"institution_id": "找不到该机构"}, values=values, status=400)
    problem = await _nurse_problem(request.app[DB], parsed.role, parsed.institution_id, parsed.nurse_id)
    if problem:
        return await _page(request, s, errors={"nurse_id": problem}, values=values, status=400)
    nurse_id = parsed.nurse_id if parsed.role == staff.NURSE else None
    try:
        member = await staff.create(request.app[DB], parsed.username, parsed.password, parsed.role,
                                    parsed.institution_id or None, parsed.name, nurse_id,
                                    by=s.member.username)
    except staff.AccountError as exc:
        return await _page(request, s, errors={exc.field or "username": str(exc)}, values=values, status=400)
    await console_session.flash(request, s, f"已创建账号 {member.username}，首次登录时须修改初始密码")
    raise redirect("/console/accounts")


@routes.post("/console/accounts/{username}")
@page(ADMIN)
async def change_account(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    form = await request.post()
    username = request.match_info["username"]
    parsed, errors = parse_form(AccountChange, form)
    if parsed is None or (parsed.role != staff.ADMIN and not parsed.institution_id):
        message = "；".join(errors.values()) if errors else "除管理员外，账号必须属于一个机构"
        await console_session.flash(request, s, f"未能修改 {username}：{message}")
        raise redirect("/console/accounts")
    problem = await _nurse_problem(request.app[DB], parsed.role, parsed.institution_id, parsed.nurse_id)
    if problem:
        await console_session.flash(request, s, f"未能修改 {username}：{problem}")
        raise redirect("/console/accounts")
    await staff.update(request.app[DB], username, {
        "role": parsed.role, "name": parsed.name, "institution_id": parsed.institution_id or None,
        "nurse_id": parsed.nurse_id if parsed.role == staff.NURSE else None})
    await console_session.flash(request, s, f"已修改账号 {username} 的角色和机构")
    raise redirect("/console/accounts")


@routes.post("/console/accounts/{username}/active")
@page(ADMIN)
async def set_active(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    form = await request.post()
    username = request.match_info["username"]
    active = form.get("active") == "1"
    if username == s.member.username and not active:
        await console_session.flash(request, s, "不能停用自己正在使用的账号")
        raise redirect("/console/accounts")
    db = request.app[DB]
    await staff.update(db, username, {"active": active})
    if not active:  # signed out everywhere at once
        await _sign_out_everywhere(db, username)
    await console_session.flash(request, s, f"已{'启用' if active else '停用'}账号 {username}")
    raise redirect("/console/accounts")


@routes.post("/console/accounts/{username}/reset")
@page(ADMIN)
async def reset_password(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    username = request.match_info["username"]
    db = request.app[DB]
    if await staff.get_document(db, username) is None:
        raise redirect("/console/accounts")
    temporary = "Tmp-" + secrets.token_urlsafe(9)
    await staff.set_password(db, username, temporary, must_change=True)
    await throttle.unlock_account(db, username)
    await _sign_out_everywhere(db, username)
    return await _page(request, s, temporary=f"{username} 的临时密码：{temporary}（只显示这一次，请当面或电话告知本人；"
                                              "本人登录后须立即设置新密码）")
