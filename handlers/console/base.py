"""What every console page shares: the guard (session, role, CSRF, forced password change), the
navigation of each role, rendering with the common context, and the security headers."""

from __future__ import annotations

import functools
import hashlib
import logging
import warnings
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
from aiohttp import web
from pydantic import BaseModel, ValidationError

from bot.accounts import staff
from bot.endpoints import _MESSAGES
from bot.errors import ApiError
from bot.keys import DB
from handlers.console import session as console_session
from handlers.console.session import ConsoleSession
from scheduling import institutions
from scheduling.booking_base import local

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"

ADMIN, CENTRE, CLINIC, NURSE = staff.ADMIN, staff.CENTRE_STAFF, staff.CLINIC_STAFF, staff.NURSE
CLINIC_ROLES = (ADMIN, CLINIC)
DESK_ROLES = (ADMIN, CENTRE)
OFFICE_ROLES = (ADMIN, CENTRE, CLINIC)

# key, label, href, roles
NAV = (
    ("workbench", "护理工作台", "/console/workbench", (ADMIN, CLINIC, NURSE)),
    ("day", "当日名单", "/console/day", DESK_ROLES),
    ("bookings", "预约查询", "/console/bookings", OFFICE_ROLES),
    ("calendar", "日历与停诊", "/console/calendar", OFFICE_ROLES),
    ("reports", "统计报表", "/console/reports", OFFICE_ROLES),
    ("nurses", "护士", "/console/nurses", CLINIC_ROLES),
    ("handoffs", "人工咨询", "/console/handoffs", OFFICE_ROLES),
    ("gaps", "问答缺口", "/console/gaps", OFFICE_ROLES),
    ("accounts", "账号与登录日志", "/console/accounts", (ADMIN,)),
)

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _static_url(name: str) -> str:
    digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:10]
    return f"/console/static/{name}?v={digest}"


def setup(app: web.Application) -> None:
    """Jinja2 for the console (autoescaped; called by ``bot.app.create_app``)."""
    # aiohttp-jinja2 1.6 stores its per-request context under a plain string key
    warnings.filterwarnings("ignore", category=web.NotAppKeyWarning, module="aiohttp_jinja2")
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                               undefined=jinja2.ChainableUndefined,
                               context_processors=[aiohttp_jinja2.request_processor])
    env.globals["static"] = functools.cache(_static_url)
    env.filters.update(local=_local, iso=_iso, remaining=remaining_text)


def _local(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return local(moment).strftime(fmt) if moment else ""


def _iso(moment: datetime | None) -> str:
    return moment.replace(tzinfo=UTC).isoformat() if moment else ""


def remaining_text(deadline: datetime | None, now: datetime) -> str:
    """剩余 3 小时 20 分 (the server's first rendering of a countdown the script then keeps live)."""
    if deadline is None:
        return ""
    left = int((deadline.replace(tzinfo=UTC) - now).total_seconds())
    if left <= 0:
        return "已超时"
    hours, minutes = divmod(left // 60, 60)
    return f"剩余 {hours} 小时 {minutes} 分" if hours else f"剩余 {minutes} 分"


def home_for(member: staff.StaffMember) -> str:
    if member.role in (CLINIC, NURSE):
        return "/console/workbench"
    if member.role == CENTRE:
        return "/console/day"
    return "/console/bookings"


def secure(response: web.StreamResponse) -> web.StreamResponse:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def render(request: web.Request, template: str, context: dict[str, Any], *,
                 s: ConsoleSession | None = None, status: int = 200, active: str = "") -> web.Response:
    if s is not None:
        member = s.member
        institution = (await institutions.get_institution(request.app[DB], member.institution_id)
                       if member.institution_id else None)
        context = {
            "member": member, "csrf": s.csrf, "active": active, "role_label": staff.ROLE_LABELS.get(member.role),
            "institution_name": institution.get("name") if institution else "",
            "nav": [{"key": k, "label": label, "href": href} for k, label, href, roles in NAV if member.role in roles],
            "flash": await console_session.take_flash(request, s), **context,
        }
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    return secure(response)  # type: ignore[return-value]


async def error_page(request: web.Request, s: ConsoleSession | None, status: int, heading: str,
                     message: str) -> web.Response:
    return await render(request, "error.html", {"title": heading, "heading": heading, "message": message},
                        s=s, status=status)


def redirect(location: str) -> web.HTTPSeeOther:
    response = web.HTTPSeeOther(location)
    secure(response)
    return response


Page = Callable[..., Awaitable[web.StreamResponse]]


def page(*roles: str, csrf: bool = True) -> Callable[[Page], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Guard a console view: a live session (else the login page), one of ``roles`` (else 403),
    a valid CSRF token on every POST (else 403), and a forced password change first."""

    def decorate(view: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(view)
        async def guarded(request: web.Request) -> web.StreamResponse:
            s = await console_session.current(request)
            if s is None:
                if request.method == "GET":
                    raise redirect(f"/console/login?next={quote(request.path_qs, safe='')}")
                raise redirect("/console/login?expired=1")
            if request.method == "POST" and csrf:
                form = await request.post()
                if not console_session.csrf_ok(s, form):
                    log.info("console form without a valid CSRF token", extra={"path": request.path})
                    return await error_page(request, s, 403, "请求被拒绝",
                                            "表单已失效或来源不明（缺少安全令牌）。请返回上一页刷新后重试。")
            if s.member.must_change_password and request.path not in ("/console/password", "/console/logout"):
                raise redirect("/console/password")
            if roles and s.member.role not in roles:
                return await error_page(request, s, 403, "没有权限", "您的角色不能使用此页面。")
            try:
                return await view(request, s)
            except ApiError as exc:
                if exc.status == 403:
                    return await error_page(request, s, 403, "没有权限", exc.message)
                if exc.status == 404:
                    return await error_page(request, s, 404, "找不到", exc.message)
                return await error_page(request, s, exc.status, "无法完成", exc.message)
            except web.HTTPException:
                raise
            except Exception:
                log.exception("console page failed", extra={"path": request.path})
                return await error_page(request, s, 500, "系统出错了",
                                        "页面暂时无法显示，请稍后重试；如果一直出现，请联系信息科并告知出错时间。")

        return guarded

    return decorate


def institution_of(request: web.Request, s: ConsoleSession) -> str | None:
    """The institution a page shows: the member's own; an admin of every institution picks one
    with ``?institution=`` (None: not chosen yet)."""
    if s.member.institution_id:
        return s.member.institution_id
    return request.query.get("institution") or None


def form_errors(exc: ValidationError, model: type[BaseModel]) -> dict[str, str]:
    """Pydantic's problems as {field: Chinese message} for showing next to each field."""
    errors: dict[str, str] = {}
    for problem in exc.errors(include_url=False, include_context=False, include_input=False):
        field = str(problem["loc"][0]) if problem["loc"] else "_"
        message = _MESSAGES.get(problem["type"], "取值无效")
        if problem["type"] == "value_error":
            message = str(problem.get("msg", "")).removeprefix("Value error, ") or message
        info = model.model_fields.get(field)
        errors.setdefault(field, f"{info.title}{message}" if info and info.title else message)
    return errors


def parse_form(model: type[BaseModel], form: Any) -> tuple[Any, dict[str, str]]:
    """Validate a form post with ``model``; (instance, {}) or (None, errors by field)."""
    data = {key: value for key, value in form.items() if key != console_session.CSRF_FIELD
            and isinstance(value, str)}
    try:
        return model.model_validate(data), {}
    except ValidationError as exc:
        return None, form_errors(exc, model)
