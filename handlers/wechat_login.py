"""Mini-program login: ``POST /api/v1/auth/wx-login {"code"}`` exchanges the ``wx.login`` code with
WeChat (code2session) for the user's openid and issues our own bearer session (``bot.accounts.sessions``).
WeChat's ``session_key`` never leaves the server and is not stored."""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import Field

from bot.accounts import sessions
from bot.endpoints import Api, Body
from bot.errors import ApiError
from bot.keys import DB
from bot.wechat.api import CODE_BEEN_USED, INVALID_CODE, NOT_CONFIGURED, WECHAT, WeChatError
from bot.wechat.users import record_login
from handlers.auth import Session

log = logging.getLogger(__name__)

api = Api("auth")
routes = api.routes

MAX_CODE_LENGTH = 128


class WxLogin(Body):
    code: str = Field(min_length=1, max_length=MAX_CODE_LENGTH, title="登录凭证 code",
                      description="小程序 wx.login 返回的 code（一次有效）")


@api.post("/api/v1/auth/wx-login", summary="小程序登录：用 wx.login 的 code 换取本系统的登录令牌", body=WxLogin,
          response=Session, invalid_code="invalid_code",
          errors={400: "code 缺失或格式不正确", 401: "code 无效或已使用（请重新调用 wx.login）", 502: "微信返回错误",
                  503: "未配置微信小程序，或微信服务暂时不可用"})
async def wx_login(request: web.Request, body: WxLogin) -> dict:
    try:
        session = await request.app[WECHAT].code2session(body.code)
    except WeChatError as exc:
        raise _login_error(exc) from None
    db = request.app[DB]
    openid = session["openid"]
    await record_login(db, openid, session.get("unionid"))
    token, expires_at = await sessions.issue(db, sessions.RESIDENT, openid)
    return {"token": token, "expires_at": expires_at, "openid": openid}


def _login_error(exc: WeChatError) -> ApiError:
    if exc.errcode in (INVALID_CODE, CODE_BEEN_USED):  # well-formed, but it does not authenticate
        return ApiError(401, "invalid_code", "登录凭证无效或已使用，请重新进入小程序")
    if exc.errcode == NOT_CONFIGURED:
        return ApiError(503, "wechat_not_configured", "未配置微信小程序（WECHAT_APP_ID），开发环境请使用开发登录")
    log.warning("code2session failed", extra={"errcode": exc.errcode, "transient": exc.transient})
    if exc.transient:
        return ApiError(503, "wechat_unavailable", "微信服务暂时不可用，请稍后再试")
    return ApiError(502, "wechat_error", "微信登录失败，请稍后再试")
