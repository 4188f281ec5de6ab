"""The official-account callback ``/wechat/callback`` (服务器配置 URL).

GET verifies ``signature`` and echoes ``echostr``. POST accepts plain, compatibility and safe (AES)
mode: with ``encrypt_type=aes`` the envelope is verified with ``msg_signature`` (never
``signature``), decrypted, and the reply encrypted; otherwise ``signature`` is checked.

Refusals: 403 for a missing or bad signature, a timestamp more than 5 minutes off, a body whose
``FromUserName`` is not the URL's ``openid``, a (timestamp, nonce) pair used before with another
body (``bot.wechat.dedupe``), and plain mode when an EncodingAESKey is configured (unless
``WECHAT_SAFE_MODE_ONLY=false``); 400 for
empty, non-UTF-8 or malformed XML, XML with a DOCTYPE/entities, and undecryptable envelopes; 413
above ``bot.wechat.callback.MAX_BODY_BYTES``; 408 for a body that does not arrive within 10 s;
503 when no callback token is configured. Anything unexpected answers ``success`` (logged) —
never a 500, which WeChat would retry and then show the user as "该公众号暂时无法提供服务".

Development: without ``WECHAT_APP_ID`` and ``WECHAT_TOKEN`` the token is ``yibao-dev-token``
(see ``bot.wechat.callback``), the one ``python -m bot chat`` uses by default.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from bot.chat.dispatch import CHAT
from bot.keys import SETTINGS
from bot.wechat import dedupe
from bot.wechat.callback import (
    MAX_BODY_BYTES,
    CallbackCredentials,
    CallbackRejectedError,
    check_sender,
    check_timestamp,
    decode_body,
    decrypt,
    encrypt,
    parse_xml,
    to_message,
    verify_signature,
)

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

BODY_TIMEOUT_SECONDS = 10.0


def _refusal(rejected: CallbackRejectedError, request: web.Request) -> web.Response:
    log.warning("wechat callback refused",
                extra={"status": rejected.status, "reason": rejected.reason, "method": request.method})
    return web.Response(status=rejected.status, text=rejected.reason)


def _credentials(request: web.Request) -> CallbackCredentials:
    credentials = CallbackCredentials.from_settings(request.app[SETTINGS])
    if credentials.token is None:  # an AppID without a token: nothing can be verified
        raise web.HTTPServiceUnavailable(text="WECHAT_TOKEN not configured")
    return credentials


@routes.get("/wechat/callback")
async def verify(request: web.Request) -> web.Response:
    credentials = _credentials(request)
    query = request.query
    try:
        check_timestamp(query.get("timestamp"))
        verify_signature(credentials.token, query.get("signature"), query["timestamp"], query.get("nonce"))
    except CallbackRejectedError as rejected:
        return _refusal(rejected, request)
    return web.Response(text=query.get("echostr", ""))


async def _read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise CallbackRejectedError(413, "body too large")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise CallbackRejectedError(413, "body too large")
                chunks.append(chunk)
    except TimeoutError:
        raise CallbackRejectedError(408, "body not received in time") from None
    return b"".join(chunks)


@routes.post("/wechat/callback")
async def receive(request: web.Request) -> web.Response:
    credentials = _credentials(request)
    query = request.query
    safe_mode = query.get("encrypt_type", "raw").lower() == "aes"
    try:
        timestamp = query.get("timestamp")
        check_timestamp(timestamp)
        assert timestamp is not None
        nonce = query.get("nonce")
        if not safe_mode:  # plain mode: the signature covers no body, check it before reading one
            verify_signature(credentials.token, query.get("signature"), timestamp, nonce)
        if not safe_mode and credentials.safe_mode_only:
            raise CallbackRejectedError(403, "plain mode refused: an EncodingAESKey is configured")
        if safe_mode and not query.get("msg_signature"):
            raise CallbackRejectedError(403, "missing msg_signature")
        body = await _read_body(request)
        text = decode_body(body)
        if safe_mode:
            envelope = parse_xml(text, required=("Encrypt",))
            text = decrypt(credentials, envelope, query.get("msg_signature"), timestamp, nonce)
        fields = parse_xml(text)
        check_sender(fields, query.get("openid"))
        message = to_message(text, fields)
    except CallbackRejectedError as rejected:
        return _refusal(rejected, request)
    # plain mode: the body is not signed, so its (timestamp, nonce) may carry only this body
    replay = None if safe_mode else (timestamp, nonce or "", dedupe.body_digest(body))
    try:
        reply = await request.app[CHAT].respond(fields, message, replay)
        return _render(reply, fields, credentials if safe_mode else None, nonce or "", timestamp)
    except dedupe.ReplayedError:
        return _refusal(CallbackRejectedError(403, "timestamp and nonce already used with another body"), request)
    except Exception:
        log.exception("wechat callback failed; answering success")
        return web.Response(text="success")


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _reply_xml(fields: dict[str, Any], msg_type: str, body: str = "") -> str:
    """A passive reply to the message ``fields`` (the sender becomes the recipient)."""
    return (f"<xml><ToUserName>{_cdata(fields['FromUserName'])}</ToUserName>"
            f"<FromUserName>{_cdata(fields['ToUserName'])}</FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType>{_cdata(msg_type)}</MsgType>{body}</xml>")


def _render(reply: dict[str, Any], fields: dict[str, Any], credentials: CallbackCredentials | None,
            nonce: str, timestamp: str) -> web.Response:
    if reply["type"] == "text":
        rendered = _reply_xml(fields, "text", f"<Content>{_cdata(reply['content'])}</Content>")
    elif reply["type"] == "transfer":
        rendered = _reply_xml(fields, "transfer_customer_service")
    else:
        return web.Response(text="success")  # WeChat's "no reply"; plain even in safe mode
    if credentials is not None:
        rendered = encrypt(credentials, rendered, nonce, timestamp)
    return web.Response(text=rendered, content_type="application/xml")


OPENAPI = {
    "paths": {
        "/wechat/callback": {
            "get": {
                "summary": "微信服务器配置校验：校验 signature 后原样返回 echostr",
                "tags": ["wechat"],
                "parameters": [
                    {"name": n, "in": "query", "required": True, "schema": {"type": "string"}}
                    for n in ("signature", "timestamp", "nonce", "echostr")
                ],
                "responses": {
                    "200": {"description": "echostr", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    "403": {"description": "签名错误、缺少签名或时间戳偏差超过 5 分钟"},
                    "503": {"description": "未配置 WECHAT_TOKEN"},
                },
            },
            "post": {
                "summary": "接收公众号消息与事件（明文、兼容、安全模式），被动回复",
                "description": "安全模式（encrypt_type=aes）用 msg_signature 校验并解密，回复同样加密。"
                "同一消息（MsgId，或事件的 FromUserName+CreateTime+Event+EventKey）只处理一次，重试得到相同回复；"
                "明文模式下同一 timestamp+nonce 只能携带同一请求体，FromUserName 必须与 URL 中的 openid 一致；"
                "配置了 EncodingAESKey 时只接受安全模式（WECHAT_SAFE_MODE_ONLY）；"
                "4 秒内未能回复时先回复 success，稍后以客服消息发送。",
                "tags": ["wechat"],
                "parameters": [
                    *({"name": n, "in": "query", "required": n in ("timestamp", "nonce"),
                       "schema": {"type": "string"}}
                      for n in ("signature", "timestamp", "nonce", "openid", "encrypt_type", "msg_signature")),
                ],
                "requestBody": {"required": True,
                                "content": {"application/xml": {"schema": {"type": "string"}}}},
                "responses": {
                    "200": {"description": "被动回复 XML（安全模式下加密），或 success",
                            "content": {"application/xml": {"schema": {"type": "string"}}}},
                    "400": {"description": "XML 格式错误、含 DOCTYPE/实体、非 UTF-8、无法解密"},
                    "403": {"description": "签名错误、缺少签名、时间戳偏差超过 5 分钟、FromUserName 与 openid 不符、"
                                           "timestamp+nonce 已用于另一请求体，或已配置 EncodingAESKey 时的明文请求"},
                    "408": {"description": "请求体未在 10 秒内收到"},
                    "413": {"description": "请求体超过 64 KiB"},
                    "503": {"description": "未配置 WECHAT_TOKEN"},
                },
            },
        }
    }
}
