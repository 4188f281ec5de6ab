"""人工 on the console: the residents who asked for a person, take one, answer (customer-service
message inside the 48-hour window, the in-app inbox outside it), close. The rules are in
``bot.chat.handoff``; this module only shows and posts."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from pydantic import BaseModel, Field

from bot.chat import handoff
from bot.endpoints import QueryInt
from bot.keys import DB
from bot.wechat.api import WECHAT
from bot.wechat.users import in_service_window
from handlers.console import session as console_session
from handlers.console.base import OFFICE_ROLES, page, redirect, render
from handlers.console.session import ConsoleSession

routes = web.RouteTableDef()
PAGE = 20


class ListQuery(BaseModel):
    status: str | None = Field(None, pattern="^(waiting|taken|closed)$")
    mine: str | None = None
    page: QueryInt = Field(1, ge=1, le=10000)


def who(openid: str) -> str:
    return f"微信用户 …{openid[-6:]}"


@routes.get("/console/handoffs")
@page(*OFFICE_ROLES)
async def list_handoffs(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    try:
        q = ListQuery.model_validate({k: v for k, v in request.query.items() if v})
    except Exception:
        q = ListQuery()
    found, total = await handoff.list_requests(request.app[DB], status=q.status,
                                               taken_by=s.member.username if q.mine else None,
                                               skip=(q.page - 1) * PAGE, limit=PAGE)
    now = datetime.now(UTC)
    return await render(request, "handoffs.html", {
        "title": "人工咨询", "items": [{**h, "who": who(h["openid"]), "overdue": handoff.overdue(h, now)}
                                       for h in found],
        "total": total, "q": q, "pages": max(1, -(-total // PAGE)), "labels": handoff.STATUS_LABELS,
        "flag_hours": int(handoff.FLAG_AFTER.total_seconds() // 3600),
    }, s=s, active="handoffs")


@routes.get("/console/handoffs/{handoff_id}")
@page(*OFFICE_ROLES)
async def show(request: web.Request, s: ConsoleSession, *, error: str = "", status: int = 200) -> web.StreamResponse:
    db = request.app[DB]
    item = await handoff.get(db, request.match_info["handoff_id"])
    if item is None:
        raise redirect("/console/handoffs")
    return await render(request, "handoff.html", {
        "title": "人工咨询", "h": item, "who": who(item["openid"]), "labels": handoff.STATUS_LABELS,
        "window_open": await in_service_window(db, item["openid"]), "error": error,
        "mine": item["status"] == handoff.TAKEN and item["taken_by"] == s.member.username,
        "overdue": handoff.overdue(item),
    }, s=s, status=status, active="handoffs")


@routes.post("/console/handoffs/{handoff_id}/take")
@page(*OFFICE_ROLES)
async def take(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    handoff_id = request.match_info["handoff_id"]
    try:
        await handoff.take(request.app[DB], handoff_id, s.member.username)
        await console_session.flash(request, s, "已接入，群众的后续留言会显示在这里")
    except handoff.HandoffError as exc:
        await console_session.flash(request, s, str(exc))
    raise redirect(f"/console/handoffs/{handoff_id}")


class AnswerForm(BaseModel):
    text: str = Field(min_length=1, max_length=600, title="回复内容")


@routes.post("/console/handoffs/{handoff_id}/answer")
@page(*OFFICE_ROLES)
async def answer(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    handoff_id = request.match_info["handoff_id"]
    form = await request.post()
    text = str(form.get("text", "")).strip()
    if not text or len(text) > 600:
        return await _show_error(request, s, "请填写回复内容（不超过 600 字）")
    try:
        channel = await handoff.answer(request.app[DB], request.app.get(WECHAT), handoff_id, s.member.username, text)
    except handoff.HandoffError as exc:
        return await _show_error(request, s, str(exc))
    await console_session.flash(request, s, "已通过微信客服消息发送" if channel == handoff.CUSTOMER_SERVICE else
                                "对方超过 48 小时未发消息，微信不允许直接回复：已存入其小程序消息中心")
    raise redirect(f"/console/handoffs/{handoff_id}")


async def _show_error(request: web.Request, s: ConsoleSession, message: str) -> web.StreamResponse:
    return await show.__wrapped__(request, s, error=message, status=400)  # type: ignore[attr-defined]


@routes.post("/console/handoffs/{handoff_id}/close")
@page(*OFFICE_ROLES)
async def close(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    handoff_id = request.match_info["handoff_id"]
    try:
        await handoff.close(request.app[DB], request.app.get(WECHAT), handoff_id, s.member.username)
        await console_session.flash(request, s, "已结束本次人工服务，并已告知群众")
    except handoff.HandoffError as exc:
        await console_session.flash(request, s, str(exc))
    raise redirect("/console/handoffs")
