"""The resident's in-app inbox and the subscribe-message acceptances the mini-program reports."""

from __future__ import annotations

from aiohttp import web

from bot.errors import ApiError, bad_request, not_found
from bot.keys import DB
from bot.notify import grants, inbox
from bot.notify.templates import TEMPLATES
from bot.openapi import BEARER, error_response, json_body, ref
from bot.web import json_response, read_json
from handlers.auth import current_resident
from handlers.settlements import limit_of

routes = web.RouteTableDef()

MAX_ACCEPTED = 10


@routes.get("/api/v1/inbox")
async def list_inbox(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    found = await inbox.entries_for(request.app[DB], openid, limit=limit_of(request),
                                    before=request.query.get("before"))
    if found is None:
        raise bad_request("invalid_before", "before 应为本收件箱中一条消息的 id")
    entries, unread = found
    return json_response({"items": [inbox.entry_view(e) for e in entries], "unread": unread})


@routes.post("/api/v1/inbox/{entry_id}/read")
async def read_entry(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    entry = await inbox.mark_read(request.app[DB], openid, request.match_info["entry_id"])
    if entry is None:
        raise not_found("找不到该消息", code="inbox_entry_not_found")
    return json_response(inbox.entry_view(entry))


@routes.post("/api/v1/subscriptions")
async def report_subscriptions(request: web.Request) -> web.Response:
    """The templates the user accepted in one ``wx.requestSubscribeMessage``: one grant each."""
    openid = await current_resident(request)
    body = await read_json(request)
    accepted = body.get("accepted")
    if (not isinstance(accepted, list) or not accepted or len(accepted) > MAX_ACCEPTED
            or not all(isinstance(t, str) for t in accepted)):
        raise bad_request("invalid_accepted", f"accepted 应为 1 到 {MAX_ACCEPTED} 个模板 id 的数组")
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
    return json_response({"granted": result})


_UNAUTHORIZED = error_response("未登录或令牌无效")

OPENAPI = {
    "paths": {
        "/api/v1/inbox": {
            "get": {
                "summary": "站内消息（每条通知都有一份，最新在前）",
                "tags": ["inbox"], "security": BEARER,
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100,
                                                                "default": 20}},
                    {"name": "before", "in": "query", "schema": {"type": "string"},
                     "description": "翻页：只返回早于这条消息的"},
                ],
                "responses": {"200": json_body({"type": "object", "properties": {
                    "items": {"type": "array", "items": ref("InboxEntry")}, "unread": {"type": "integer"}}}),
                    "400": error_response("参数不正确"), "401": _UNAUTHORIZED},
            }
        },
        "/api/v1/inbox/{entry_id}/read": {
            "post": {
                "summary": "标记消息已读",
                "tags": ["inbox"], "security": BEARER,
                "parameters": [{"name": "entry_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": json_body(ref("InboxEntry")), "401": _UNAUTHORIZED,
                              "404": error_response("找不到该消息")},
            }
        },
        "/api/v1/subscriptions": {
            "post": {
                "summary": "上报用户在 wx.requestSubscribeMessage 中接受的模板（每次接受可发送一条订阅消息）",
                "tags": ["inbox"], "security": BEARER,
                "requestBody": json_body({"type": "object", "required": ["accepted"], "properties": {
                    "accepted": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_ACCEPTED,
                                 "description": "结果为 accept 的模板 id"}}}),
                "responses": {
                    "200": json_body({"type": "object", "properties": {"granted": {"type": "array", "items": {
                        "type": "object", "properties": {"template_id": {"type": "string"},
                                                         "available": {"type": "integer"}}}}}}),
                    "400": error_response("模板 id 不正确或未被本服务使用"),
                    "401": _UNAUTHORIZED,
                    "503": error_response("消息模板配置有误"),
                },
            }
        },
    },
    "schemas": {
        "InboxEntry": {
            "type": "object",
            "properties": {
                "id": {"type": "string"}, "kind": {"type": "string", "example": "settlement_status"},
                "title": {"type": "string"}, "text": {"type": "string"},
                "link": {"type": "string", "nullable": True, "description": "小程序页面路径"},
                "ref": {"type": "object", "description": "settlement_id / booking_id / waitlist_id"},
                "created_at": {"type": "string", "format": "date-time"},
                "read": {"type": "boolean"},
                "read_at": {"type": "string", "format": "date-time", "nullable": True},
            },
        }
    },
}
