"""The resident's in-app inbox and the subscribe-message acceptances the mini-program reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from bot.endpoints import Api, Body, Query, QueryInt
from bot.errors import ApiError, bad_request, not_found
from bot.keys import DB
from bot.notify import grants, inbox
from bot.notify.templates import TEMPLATES
from handlers.auth import current_resident

api = Api("inbox")
routes = api.routes

MAX_ACCEPTED = 10


class InboxQuery(Query):
    limit: QueryInt = Field(20, ge=1, le=100, title="limit")
    before: str | None = Field(None, max_length=64, title="before", description="翻页：只返回早于这条消息的")


class InboxEntry(BaseModel):
    id: str
    kind: str = Field(examples=["settlement_status"])
    title: str
    text: str
    link: str | None = Field(description="小程序页面路径")
    ref: dict[str, str] = Field(description="settlement_id / booking_id / waitlist_id")
    created_at: datetime
    read: bool
    read_at: datetime | None


class InboxPage(BaseModel):
    items: list[InboxEntry]
    unread: int


class SubscriptionsIn(Body):
    accepted: list[str] = Field(min_length=1, max_length=MAX_ACCEPTED, title="accepted",
                                description="结果为 accept 的模板 id")


class GrantCount(BaseModel):
    template_id: str
    available: int


class Granted(BaseModel):
    granted: list[GrantCount]


@api.get("/api/v1/inbox", summary="站内消息（每条通知都有一份，最新在前）", query=InboxQuery, response=InboxPage,
         auth=True, errors={400: "参数不正确（invalid_parameter、invalid_before）"})
async def list_inbox(request: web.Request, query: InboxQuery) -> dict[str, Any]:
    openid = await current_resident(request)
    found = await inbox.entries_for(request.app[DB], openid, limit=query.limit, before=query.before)
    if found is None:
        raise bad_request("invalid_before", "before 应为本收件箱中一条消息的 id")
    entries, unread = found
    return {"items": [inbox.entry_view(e) for e in entries], "unread": unread}


@api.post("/api/v1/inbox/{entry_id}/read", summary="标记消息已读", response=InboxEntry, auth=True,
          errors={404: "inbox_entry_not_found：找不到该消息"})
async def read_entry(request: web.Request) -> dict[str, Any]:
    openid = await current_resident(request)
    entry = await inbox.mark_read(request.app[DB], openid, request.match_info["entry_id"])
    if entry is None:
        raise not_found("找不到该消息", code="inbox_entry_not_found")
    return inbox.entry_view(entry)


@api.post("/api/v1/subscriptions",
          summary="上报用户在 wx.requestSubscribeMessage 中接受的模板（每次接受可发送一条订阅消息）",
          body=SubscriptionsIn, response=Granted, auth=True, invalid_code="invalid_accepted",
          errors={400: "模板 id 不正确或未被本服务使用（invalid_accepted、unknown_template）",
                  503: "templates_unavailable：消息模板配置有误"})
async def report_subscriptions(request: web.Request, body: SubscriptionsIn) -> dict[str, Any]:
    """The templates the user accepted in one ``wx.requestSubscribeMessage``: one grant each."""
    openid = await current_resident(request)
    accepted = body.accepted
    if len(set(accepted)) != len(accepted):
        raise bad_request("invalid_accepted", "同一次订阅中的模板 id 不能重复")
    templates = request.app.get(TEMPLATES)
    if templates is None:
        raise ApiError(503, "templates_unavailable", "消息模板配置有误，暂不能登记订阅")
    known = templates.template_ids()
    unknown = [t for t in accepted if t not in known]
    if unknown:
        raise bad_request("unknown_template", "包含本服务未使用的订阅消息模板", template_ids=unknown)
    db = request.app[DB]
    result = []
    for template_id in accepted:
        await grants.add_grant(db, openid, template_id)
        result.append({"template_id": template_id, "available": await grants.available(db, openid, template_id)})
    return {"granted": result}
