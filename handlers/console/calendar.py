"""The institution's calendar: its opening rules, the day overrides (close a day, open a holiday
by appointment, change capacity) and, for a chosen date, the bookings an override affects.
An override is one per institution and date, so closing a day closes it for every service at once.
Validation and storage are the domain's (``scheduling.overrides``); slots are regenerated as the
JSON API does."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from bot.errors import ApiError
from bot.keys import DB, SETTINGS
from handlers.bookings import policy_of
from handlers.catalogue import MAX_OVERRIDE_AHEAD_DAYS, OVERRIDE_ROLES
from handlers.console import session as console_session
from handlers.console.base import institution_of, page, redirect, render
from handlers.console.session import ConsoleSession
from scheduling import bookings, institutions, overrides, slots
from scheduling import transitions as t
from scheduling.booking_base import BOOKINGS, Actor
from scheduling.calendar import RulesError

routes = web.RouteTableDef()
ACTION_LABELS = {"close": "停止服务（全天所有事项）", "open": "开放预约（如节假日）", "capacity": "调整容量"}


def _date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


async def affected(db: Any, institution_id: str, day: dt.date) -> list[dict[str, Any]]:
    """Bookings of that day that still hold an appointment (they need a call, a reschedule or a cancel)."""
    return await db[BOOKINGS].find({"institution_id": institution_id, "date": day.isoformat(),
                                    "status": {"$in": sorted(t.UPCOMING)}}).sort("start", 1).to_list(1000)


async def _page(request: web.Request, s: ConsoleSession, *, errors: dict[str, str] | None = None,
                values: dict[str, Any] | None = None, status: int = 200) -> web.Response:
    db = request.app[DB]
    institution_id = institution_of(request, s)
    if institution_id is None:
        return await render(request, "pick_institution.html", {
            "title": "选择机构", "institutions": await institutions.list_institutions(db), "path": request.path},
            s=s, active="calendar")
    institution = await institutions.get_institution(db, institution_id) or {"_id": institution_id}
    today = slots.today_local()
    chosen = _date(request.query.get("date") or (values or {}).get("date"))
    listed = await overrides.list_overrides(db, institution_id, today)
    return await render(request, "calendar.html", {
        "title": "日历与停诊", "institution": institution,
        "hours": institutions.hours_summary(institution.get("calendar") or {}), "overrides": listed,
        "chosen": chosen.isoformat() if chosen else "", "affected": await affected(db, institution_id, chosen)
        if chosen else [], "chosen_override": next((o for o in listed if chosen and o["date"] == chosen.isoformat()),
                                                   None),
        "labels": t.STATUS_LABELS, "action_labels": ACTION_LABELS, "errors": errors or {}, "values": values or {},
        "today": today.isoformat(), "last_day": (today + timedelta(days=MAX_OVERRIDE_AHEAD_DAYS)).isoformat(),
        "institution_param": "" if s.member.institution_id else institution_id,
    }, s=s, status=status, active="calendar")


@routes.get("/console/calendar")
@page(*OVERRIDE_ROLES)
async def calendar(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    return await _page(request, s)


async def _regenerate(request: web.Request, institution_id: str) -> str:
    institution = await institutions.get_institution(request.app[DB], institution_id)
    try:
        report = await slots.generate_slots(request.app[DB], institution or institution_id,
                                            default_horizon_days=request.app[SETTINGS].booking_horizon_days)
    except (RulesError, LookupError):
        return "（机构日历规则有误，时段未重新生成）"
    return f"（已重新生成时段，保留有预约的时段 {report.kept_with_bookings} 个）" if report.kept_with_bookings else ""


def _institution(request: web.Request, s: ConsoleSession, form: Any) -> str:
    return institution_of(request, s) or str(form.get("institution", ""))


@routes.post("/console/calendar/overrides")
@page(*OVERRIDE_ROLES)
async def set_override(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    form = await request.post()
    values = {k: str(v) for k, v in form.items() if k != console_session.CSRF_FIELD}
    institution_id = _institution(request, s, form)
    day = _date(values.get("date"))
    today = slots.today_local()
    if day is None:
        return await _page(request, s, errors={"date": "请选择日期"}, values=values, status=400)
    if not today <= day <= today + timedelta(days=MAX_OVERRIDE_AHEAD_DAYS):
        return await _page(request, s, errors={"date": f"只能调整今天起 {MAX_OVERRIDE_AHEAD_DAYS} 天内的日期"},
                           values=values, status=400)
    body: dict[str, Any] = {"action": values.get("action"), "reason": values.get("reason", "")}
    if values.get("capacity"):
        body["capacity"] = int(values["capacity"]) if values["capacity"].isdigit() else values["capacity"]
    if values.get("action") == "open":
        body.update(open=values.get("open"), close=values.get("close"),
                    appointment_only=values.get("appointment_only") == "1")
    try:
        fields = overrides.parse_override(body)
    except RulesError as exc:
        return await _page(request, s, errors={"override": str(exc)}, values=values, status=400)
    await overrides.set_override(request.app[DB], institution_id, day, fields, s.member.username)
    note = await _regenerate(request, institution_id)
    await console_session.flash(request, s, f"已设置 {day.isoformat()}：{ACTION_LABELS[fields['action']]}{note}")
    suffix = f"&institution={institution_id}" if not s.member.institution_id else ""
    raise redirect(f"/console/calendar?date={day.isoformat()}{suffix}#affected")


@routes.post("/console/calendar/overrides/{date}/delete")
@page(*OVERRIDE_ROLES)
async def delete_override(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    form = await request.post()
    institution_id = _institution(request, s, form)
    day = _date(request.match_info["date"])
    if day and await overrides.delete_override(request.app[DB], institution_id, day):
        note = await _regenerate(request, institution_id)
        await console_session.flash(request, s, f"已撤销 {day.isoformat()} 的调整，恢复常规安排{note}")
    raise redirect("/console/calendar")


@routes.post("/console/calendar/{date}/cancel-affected")
@page(*OVERRIDE_ROLES)
async def cancel_affected(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    """Cancel every booking still held on a closed day, each with the reason (each family is told)."""
    form = await request.post()
    institution_id = _institution(request, s, form)
    day = _date(request.match_info["date"])
    reason = str(form.get("reason", "")).strip()[:200]
    if day is None or not reason:
        return await _page(request, s, errors={"cancel": "请填写取消原因（会通知每一位预约人）"}, status=400)
    db = request.app[DB]
    done, failed = 0, []
    for booking in await affected(db, institution_id, day):
        try:
            await bookings.transition(db, booking["_id"], t.CANCELLED, Actor.staff(s.member), policy_of(request),
                                      reason=reason, now=datetime.now(UTC))
            done += 1
        except ApiError as exc:
            failed.append(f"{booking['_id']}：{exc.message}")
    message = f"已取消 {done} 个预约并通知预约人"
    if failed:
        message += f"；{len(failed)} 个未能取消（{'；'.join(failed[:3])}）"
    await console_session.flash(request, s, message)
    raise redirect(f"/console/calendar?date={day.isoformat()}#affected")
