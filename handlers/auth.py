"""Resident authentication: the development login and logout, and the guard every resident
endpoint uses. The WeChat mini-program login lives beside them."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bot.accounts import sessions
from bot.endpoints import Api, Body
from bot.errors import ApiError
from bot.keys import DB, SETTINGS
from bot.wechat.users import touch_user

api = Api("auth")
routes = api.routes

OPENID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
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


class DevLogin(Body):
    # an identifier is taken as sent: "resident-1\n" is refused, not trimmed into another resident's openid
    model_config = ConfigDict(str_strip_whitespace=False)

    openid: str = Field(min_length=1, max_length=64, pattern=OPENID_PATTERN, title="openid",
                        description="1 到 64 位字母、数字、下划线或连字符", examples=["demo-resident"])


@api.schema
class Session(BaseModel):
    """本系统的登录令牌（Bearer），到期或退出登录后失效"""

    token: str
    expires_at: datetime
    openid: str


class LoggedOut(BaseModel):
    ok: bool


@api.post("/api/v1/auth/dev-login", summary="开发登录（仅开发模式 APP_ENV=development 且未配置 WECHAT_APP_ID 时可用）",
          body=DevLogin, response=Session, invalid_code="invalid_openid",
          errors={400: "openid 格式不正确", 404: "生产模式或已配置微信 AppID 时不可用"})
async def dev_login(request: web.Request, body: DevLogin) -> web.Response | dict:
    if request.app[SETTINGS].wechat_configured:
        raise web.HTTPNotFound()
    db = request.app[DB]
    await touch_user(db, body.openid)
    token, expires_at = await sessions.issue(db, sessions.RESIDENT, body.openid)
    return {"token": token, "expires_at": expires_at, "openid": body.openid}


@api.post("/api/v1/auth/logout", summary="退出登录（作废当前令牌）", response=LoggedOut, auth=True)
async def logout(request: web.Request) -> dict:
    token = bearer_token(request)
    if not token or not await sessions.revoke(request.app[DB], token):
        raise UNAUTHORIZED
    return {"ok": True}
