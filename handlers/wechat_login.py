"""Mini-program login: ``POST /api/v1/auth/wx-login {"code"}`` exchanges the ``wx.login`` code with
WeChat (code2session) for the user's openid and issues our own bearer session (``bot.accounts.sessions``).
WeChat's ``session_key`` never leaves the server and is not stored."""

from __future__ import annotations

import logging

from aiohttp import web

from bot.accounts import sessions
from bot.errors import ApiError, bad_request
from bot.keys import DB
from bot.openapi import error_response, json_body, ref
from bot.web import json_response, read_json
from bot.wechat.api import CODE_BEEN_USED, INVALID_CODE, NOT_CONFIGURED, WECHAT, WeChatError
from bot.wechat.users import record_login

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

MAX_CODE_LENGTH = 128


@routes.post("/api/v1/auth/wx-login")
async def wx_login(request: web.Request) -> web.Response:
    body = await read_json(request)
    code = body.get("code")
    if not isinstance(code, str) or not code.strip() or len(code) > MAX_CODE_LENGTH:
        raise bad_request("invalid_code", "登录凭证 code 缺失或格式不正确")
    try:
        session = await request.app[WECHAT].code2session(code.strip())
    except WeChatError as exc:
        raise _login_error(exc) from None
    db = request.app[DB]
    openid = session["openid"]
    await record_login(db, openid, session.get("unionid"))
    token, expires_at = await sessions.issue(db, sessions.RESIDENT, openid)
    return json_response({"token": token, "expires_at": expires_at, "openid": openid})


def _login_error(exc: WeChatError) -> ApiError:
    if exc.errcode in (INVALID_CODE, CODE_BEEN_USED):
        return bad_request("invalid_code", "登录凭证无效或已使用，请重新进入小程序")
    if exc.errcode == NOT_CONFIGURED:
        return ApiError(503, "wechat_not_configured", "未配置微信小程序（WECHAT_APP_ID），开发环境请使用开发登录")
    log.warning("code2session failed", extra={"errcode": exc.errcode, "transient": exc.transient})
    if exc.transient:
        return ApiError(503, "wechat_unavailable", "微信服务暂时不可用，请稍后再试")
    return ApiError(502, "wechat_error", "微信登录失败，请稍后再试")


OPENAPI = {
    "paths": {
        "/api/v1/auth/wx-login": {
            "post": {
                "summary": "小程序登录：用 wx.login 的 code 换取本系统的登录令牌",
                "tags": ["auth"],
                "requestBody": json_body({"type": "object", "required": ["code"],
                                          "properties": {"code": {"type": "string", "maxLength": MAX_CODE_LENGTH}}}),
                "responses": {
                    "200": json_body(ref("Session"), "已登录"),
                    "400": error_response("code 缺失、无效或已使用"),
                    "502": error_response("微信返回错误"),
                    "503": error_response("未配置微信小程序，或微信服务暂时不可用"),
                },
            }
        }
    }
}
