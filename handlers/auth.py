"""Resident authentication: the development login and logout, and the guard every resident
endpoint uses. The WeChat mini-program login lives beside them."""

from __future__ import annotations

import re

from aiohttp import web

from bot.accounts import sessions
from bot.errors import ApiError, bad_request
from bot.keys import DB, SETTINGS
from bot.openapi import BEARER, error_response, json_body, ref
from bot.web import json_response, read_json
from bot.wechat.users import touch_user

routes = web.RouteTableDef()

_OPENID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # fullmatch: "$" accepts a trailing newline
UNAUTHORIZED = ApiError(401, "unauthorized", "请先登录")


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def current_resident(request: web.Request) -> str:
    """The openid of the signed-in resident, or 401."""
    token = bearer_token(request)
    session = token and await sessions.resolve(request.app[DB], token, sessions.RESIDENT)
    if not session:
        raise UNAUTHORIZED
    return session["subject"]


@routes.post("/api/v1/auth/dev-login")
async def dev_login(request: web.Request) -> web.Response:
    if request.app[SETTINGS].wechat_configured:
        raise web.HTTPNotFound()
    body = await read_json(request)
    openid = body.get("openid")
    if not isinstance(openid, str) or not _OPENID.fullmatch(openid):
        raise bad_request("invalid_openid", "openid 必须是 1 到 64 位字母、数字、下划线或连字符")
    db = request.app[DB]
    await touch_user(db, openid)
    token, expires_at = await sessions.issue(db, sessions.RESIDENT, openid)
    return json_response({"token": token, "expires_at": expires_at, "openid": openid})


@routes.post("/api/v1/auth/logout")
async def logout(request: web.Request) -> web.Response:
    token = bearer_token(request)
    if not token or not await sessions.revoke(request.app[DB], token):
        raise UNAUTHORIZED
    return json_response({"ok": True})


OPENAPI = {
    "paths": {
        "/api/v1/auth/dev-login": {
            "post": {
                "summary": "开发登录（未配置 WECHAT_APP_ID 时可用）",
                "tags": ["auth"],
                "requestBody": json_body({"type": "object", "required": ["openid"],
                                          "properties": {"openid": {"type": "string"}}}),
                "responses": {
                    "200": json_body(ref("Session"), "已登录"),
                    "400": error_response("openid 格式不正确"),
                    "404": error_response("已配置微信 AppID 时不可用"),
                },
            }
        },
        "/api/v1/auth/logout": {
            "post": {
                "summary": "退出登录（作废当前令牌）",
                "tags": ["auth"],
                "security": BEARER,
                "responses": {"200": json_body({"type": "object"}, "已退出"),
                              "401": error_response("未登录或令牌无效")},
            }
        },
    },
    "schemas": {
        "Session": {
            "type": "object",
            "required": ["token", "expires_at", "openid"],
            "properties": {"token": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"},
                           "openid": {"type": "string"}},
        }
    },
}
