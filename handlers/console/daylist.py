"""The centre's day list: the day's bookings by slot, check-in at the counter (a text field that
a USB barcode scanner types into, ending with Enter), no-show, and a printable list."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from bot.errors import ApiError
from bot.keys import DB
from handlers.bookings import ALL_STATUSES, policy_of
from handlers.console import queries
from handlers.console import session as console_session
from handlers.console.base import DESK_ROLES, institution_of, page, redirect, render
from handlers.console.session import ConsoleSession
from scheduling import bookings, institutions
from scheduling import transitions as t
from scheduling.booking_base import Actor, local
from scheduling.slots import today_local

routes = web.RouteTableDef()


PAGE = 200


class DayQuery(BaseModel):
    date: dt.date | None = None
    status: str | None = Field(None, max_length=20)
    page: int = Field(1, ge=1, le=1000)


class CheckInForm(BaseModel):
    code: str = Field(min_length=1, max_length=64, title="预约号")


def _group_by_slot(found: list[dict[str, Any]]) -> list[tuple[datetime, list[dict[str, Any]]]]:
    groups: dict[datetime, list[dict[str, Any]]] = {}
    for booking in found:
        groups.setdefault(booking["start"], []).append(booking)
    return list(groups.items())


async def _day(request: web.Request, s: ConsoleSession, *, code_error: str = "", code: str = "",
               status: int = 200, checked_in: dict[str, Any] | None = None) -> web.Response:
    db = request.app[DB]
    institution_id = institution_of(request, s)
    if institution_id is None:
        return await render(request, "pick_institution.html", {
            "title": "选择机构", "institutions": await institutions.list_institutions(db, "centre"),
            "path": request.path}, s=s, active="day")
    raw = {k: v for k, v in request.query.items() if v and k in ("date", "status", "page")}
    try:
        query = DayQuery.model_validate(raw)
    except Exception:
        query = DayQuery()
    if query.status not in (None, *ALL_STATUSES):
        query.status = None
    day = (query.date or today_local()).isoformat()
    found, total, counts = await queries.day_list(db, institution_id, day, status=query.status,
                                                  skip=(query.page - 1) * PAGE, limit=PAGE)
    institution = await institutions.get_institution(db, institution_id)
    return await render(request, "day.html", {
        "title": "当日名单", "day": day, "groups": _group_by_slot(found), "total": total, "status": query.status or "",
        "statuses": ALL_STATUSES, "labels": t.STATUS_LABELS, "counts": counts, "code_error": code_error,
        "code": code, "now": datetime.now(UTC), "institution": institution or {}, "checked_in": checked_in,
        "print_mode": request.query.get("print") == "1", "page": query.page,
        "pages": max(1, -(-total // PAGE)), "is_today": day == today_local().isoformat(),
    }, s=s, status=status, active="day")


@routes.get("/console/day")
@page(*DESK_ROLES)
async def day_list(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    return await _day(request, s)


# What the counter says for each refusal of the code lookup (scheduling.bookings.check_in_by_code).
CODE_MESSAGES = {
    "code_not_found": "找不到该预约号，请核对后重新输入",
    "code_used": "该预约已经签到过了，请勿重复签到",
    "code_other_institution": "该预约不属于本中心",
    "code_not_for_check_in": "这是网约护士预约，不能在窗口签到",
    "forbidden": "该预约不属于本中心",
}


async def booking_for_code(request: web.Request, s: ConsoleSession, code: str) -> dict[str, Any]:
    """Check in the booking a counter code stands for (typed, or scanned from the visitor's QR
    code): the domain's code lookup, which refuses a used, expired, cancelled or other
    institution's code, and lets exactly one of two simultaneous scans through."""
    return await bookings.check_in_by_code(request.app[DB], code, Actor.staff(s.member), policy_of(request),
                                           now=datetime.now(UTC))


@routes.post("/console/day/check-in")
@page(*DESK_ROLES)
async def check_in(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    form = await request.post()
    code = str(form.get("code", "")).strip()
    if not code:
        return await _day(request, s, code_error="请输入或扫描预约号", status=400)
    if len(code) > 64:
        return await _day(request, s, code_error="预约号过长，请核对", code=code[:64], status=400)
    try:
        updated = await booking_for_code(request, s, code)
    except ApiError as exc:
        message = CODE_MESSAGES.get(exc.code, exc.message)
        return await _day(request, s, code_error=message, code=code, status=exc.status if exc.status < 500 else 409)
    await console_session.flash(request, s, f"签到成功：{updated.get('service_name', '')}，"
                                            f"{local(updated['start']):%H:%M} 时段")
    raise redirect(f"/console/day?date={updated['date']}")
