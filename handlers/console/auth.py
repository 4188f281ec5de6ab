"""Console login (throttled like the API: ``bot.accounts.login``), logout, and the password change
a reset forces. The login form is protected by a double-submit token (a SameSite=Strict cookie
and the same value in the form), since there is no session yet."""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

from bot.accounts import staff
from bot.accounts.login import LoginRefusedError, sign_in, wait_text
from bot.keys import DB
from handlers.console import session as console_session
from handlers.console.base import STATIC, home_for, page, redirect, render
from handlers.staff_auth import client_address

routes = web.RouteTableDef()
routes.static("/console/static", STATIC)

LOGIN_CSRF_COOKIE = "console_login_csrf"


def _safe_next(value: str | None) -> str:
    return value if value and value.startswith("/console/") and not value.startswith("//") else ""


async def _login_page(request: web.Request, *, error: str = "", username: str = "", status: int = 200,
                      next_path: str = "", retry_after: int = 0) -> web.Response:
    token = secrets.token_urlsafe(24)
    reason = ""
    if request.query.get("expired"):
        reason = "登录已超时（30 分钟无操作会自动退出），请重新登录。"
    response = await render(request, "login.html", {"title": "工作人员登录", "csrf": token, "error": error,
                                                      "username": username, "next": next_path, "reason": reason},
                            status=status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict", path="/console/login",
                        secure=console_session._secure(request))
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


@routes.get("/console")
@routes.get("/console/")
async def index(request: web.Request) -> web.StreamResponse:
    s = await console_session.current(request)
    raise redirect(home_for(s.member) if s else "/console/login")


@routes.get("/console/login")
async def login_form(request: web.Request) -> web.StreamResponse:
    s = await console_session.current(request)
    if s is not None:
        raise redirect(home_for(s.member))
    return await _login_page(request, next_path=_safe_next(request.query.get("next")))


@routes.post("/console/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
    next_path = _safe_next(str(form.get("next", "")))
    sent, expected = str(form.get("_csrf", "")), request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        return await _login_page(request, error="登录页面已过期（缺少安全令牌），请重新输入后登录。", username=username,
                                 status=403, next_path=next_path)
    if not username or not password:
        return await _login_page(request, error="请填写用户名和密码", username=username, status=400,
                                 next_path=next_path)
    try:
        member = await sign_in(request.app[DB], username, password, client_address(request), channel="console")
    except LoginRefusedError as refused:
        if refused.retry_after:
            wait = wait_text(refused.retry_after)
            return await _login_page(request, error=f"登录失败次数过多，账号已暂时锁定，请 {wait}后再试。",
                                     username=username, status=429, next_path=next_path,
                                     retry_after=refused.retry_after)
        return await _login_page(request, error="用户名或密码错误", username=username, status=401,
                                 next_path=next_path)
    response = redirect("/console/password" if member.must_change_password else (next_path or home_for(member)))
    await console_session.start(request, response, member)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
    raise response


@routes.post("/console/logout")
@page()
async def logout(request: web.Request, s: console_session.ConsoleSession) -> web.StreamResponse:
    response = redirect("/console/login")
    await console_session.end(request, response)
    raise response


@routes.get("/console/password")
@page()
async def password_form(request: web.Request, s: console_session.ConsoleSession) -> web.StreamResponse:
    return await render(request, "password.html", {"title": "设置新密码", "errors": {}}, s=s)


@routes.post("/console/password")
@page()
async def change_password(request: web.Request, s: console_session.ConsoleSession) -> web.StreamResponse:
    form = await request.post()
    current, new, repeat = (str(form.get(k, "")) for k in ("current", "new", "repeat"))
    db = request.app[DB]
    errors: dict[str, str] = {}
    document = await db[staff.COLLECTION].find_one({"_id": s.member.username})
    if not await staff.verify_password(document.get("password_hash") if document else None, current):
        errors["current"] = "当前密码不正确"
    elif new == current:
        errors["new"] = "新密码不能与当前密码相同"
    else:
        problem = staff.password_problem(new, s.member.username)
        if problem:
            errors["new"] = problem
        elif new != repeat:
            errors["repeat"] = "两次输入的新密码不一致"
    if errors:
        return await render(request, "password.html", {"title": "设置新密码", "errors": errors}, s=s, status=400)
    await staff.set_password(db, s.member.username, new, must_change=False)
    await console_session.flash(request, s, "新密码已保存")
    raise redirect(home_for(s.member))
