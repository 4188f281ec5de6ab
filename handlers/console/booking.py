"""One booking in full (history from the audit log, every message sent with its channel and
delivery state), the booking search, and the generic status actions of the transition table,
allowed to the roles the JSON API allows (``handlers.staff_bookings.ACTIONS``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from bot.endpoints import QueryInt
from bot.errors import ApiError
from bot.keys import DB
from handlers.bookings import ALL_STATUSES, policy_of
from handlers.console import queries
from handlers.console import session as console_session
from handlers.console.access import REASONS
from handlers.console.base import OFFICE_ROLES, institution_of, page, redirect, render
from handlers.console.session import ConsoleSession
from handlers.console.workbench import assessment_rows, patient_for
from handlers.staff_bookings import ACTIONS
from scheduling import bookings
from scheduling import transitions as t
from scheduling.booking_base import Actor

routes = web.RouteTableDef()

# path → (target status, roles): exactly the JSON API's table
_ACTIONS = {path: (target, roles) for path, target, roles, *_ in ACTIONS}
_AUDIT_ACTIONS = {"create": "提交预约", "transition": "状态变更", "reschedule": "改约"}
CHANNEL_LABELS = {"subscribe": "订阅消息", "customer_service": "客服消息", "inbox": "小程序消息中心", None: "—"}
DELIVERY_LABELS = {"pending": "待发送", "sending": "发送中", "sent": "已发送", "failed": "发送失败",
                   "cancelled": "已取消"}
KIND_LABELS = {"booking_confirmed": "确认通知", "booking_rejected": "拒绝通知", "booking_cancelled": "取消通知",
               "booking_expired": "过期通知", "booking_reminder": "上门/办事提醒", "waitlist_offer": "候补通知"}


def back_to(form: Any, default: str) -> str:
    target = str(form.get("next", "")) if form is not None else ""
    return target if target.startswith("/console/") and not target.startswith("//") else default


def actor_text(actor: dict[str, Any]) -> str:
    kind = actor.get("kind")
    if kind == "resident":
        return "家属 / 群众"
    if kind == "system":
        return "系统"
    return f"工作人员 {actor.get('id', '')}"


@routes.get("/console/bookings/{booking_id}")
@page(*OFFICE_ROLES, "nurse")
async def detail(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    db = request.app[DB]
    booking = await bookings.get(db, request.match_info["booking_id"], Actor.staff(s.member))
    history = await bookings.history(db, booking["_id"])
    messages = await queries.messages_of(db, booking["_id"])
    revealed = console_session.revealed(s, booking["_id"]) and s.member.institution_id == booking["institution_id"]
    return await render(request, "booking.html", {
        "title": f"预约详情 · {booking.get('service_name', '')}", "b": booking,
        "patient": patient_for(booking, revealed) if booking.get("patient") else None,
        "assessment": assessment_rows(booking), "history": history, "messages": messages,
        "labels": t.STATUS_LABELS, "audit_labels": _AUDIT_ACTIONS, "channel_labels": CHANNEL_LABELS,
        "delivery_labels": DELIVERY_LABELS, "kind_labels": KIND_LABELS, "actor_text": actor_text,
        "reveal_reasons": REASONS,
        "next_actions": [(path, target) for path, (target, roles) in _ACTIONS.items()
                         if s.member.role in roles and target in t.targets(booking["kind"], booking["status"])
                         and target not in (t.CONFIRMED, t.REJECTED)],
        "error": request.query.get("error", ""),
    }, s=s, active="bookings")


class ActForm(BaseModel):
    reason: str = Field("", max_length=200, title="原因")
    next: str = Field("", max_length=300)


ACTION_LABELS = {"check-in": "签到", "start-trip": "护士出发", "start-service": "开始服务", "complete": "完成 / 办结",
                 "no-show": "标记未到场", "cancel": "取消预约"}


@routes.post("/console/bookings/{booking_id}/act/{action}")
@page(*OFFICE_ROLES, "nurse")
async def act(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    form = await request.post()
    action = request.match_info["action"]
    booking_id = request.match_info["booking_id"]
    back = back_to(form, f"/console/bookings/{booking_id}")
    if action not in _ACTIONS or action in ("confirm", "reject"):
        raise redirect(back)
    target, roles = _ACTIONS[action]
    if s.member.role not in roles:
        await console_session.flash(request, s, "您的角色不能执行该操作")
        raise redirect(back)
    try:
        updated = await bookings.transition(request.app[DB], booking_id, target, Actor.staff(s.member),
                                            policy_of(request), reason=str(form.get("reason", "")) or None,
                                            now=datetime.now(UTC))
    except ApiError as exc:
        if exc.status in (403, 404):
            raise
        await console_session.flash(request, s, f"未能{ACTION_LABELS.get(action, '操作')}：{exc.message}")
        raise redirect(back) from None
    label = ACTION_LABELS.get(action, "操作")
    await console_session.flash(request, s, f"已{label}，当前状态：{t.STATUS_LABELS[updated['status']]}")
    raise redirect(back)


class SearchQuery(BaseModel):
    status: str | None = Field(None, max_length=20)
    date: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    kind: str | None = Field(None, pattern="^(centre|nursing)$")
    page: QueryInt = Field(1, ge=1, le=10000)


@routes.get("/console/bookings")
@page(*OFFICE_ROLES)
async def search(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    raw = {k: v for k, v in request.query.items() if v}
    try:
        query = SearchQuery.model_validate(raw)
        problem = "" if query.status in (None, *ALL_STATUSES) else "状态不正确"
    except Exception:
        query, problem = SearchQuery(), "筛选条件格式不正确（日期应为 YYYY-MM-DD）"
    institution_id = institution_of(request, s)
    found, total = await queries.search_bookings(request.app[DB], institution_id, status=query.status,
                                                 day=query.date, kind=query.kind,
                                                 skip=(query.page - 1) * queries.PAGE_SIZE)
    return await render(request, "bookings.html", {
        "title": "预约查询", "found": found, "total": total, "q": query, "problem": problem,
        "pages": max(1, -(-total // queries.PAGE_SIZE)), "labels": t.STATUS_LABELS, "statuses": ALL_STATUSES,
    }, s=s, active="bookings")
