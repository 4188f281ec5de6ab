"""A terminal stand-in for the WeChat server: builds callback messages like WeChat does, signs them
with the callback token (and with ``aes=True`` encrypts them, safe mode), posts them to a running
instance's ``/wechat/callback`` and decodes the passive reply.

``python -m bot chat --url http://127.0.0.1:8080`` runs it interactively (see ``bot.wechat.cli``);
tests and the benchmark use ``Simulator`` directly.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import aiohttp

from bot.wechat.callback import CallbackCredentials, encrypt, parse_xml, sign

ACCOUNT = "gh_yibao_dev"  # the official account's original id (ToUserName)
_msg_ids = itertools.count(int(time.time() * 1000) * 1000)


def message_xml(openid: str, msg_type: str, *, create_time: int | None = None, to_user: str = ACCOUNT,
                **fields: str | int) -> str:
    """A callback message as WeChat sends it (``fields`` become elements, e.g. Content, MsgId)."""
    parts = [f"<ToUserName>{escape(to_user)}</ToUserName>", f"<FromUserName>{escape(openid)}</FromUserName>",
             f"<CreateTime>{create_time or int(time.time())}</CreateTime>",
             f"<MsgType>{escape(msg_type)}</MsgType>"]
    parts += [f"<{name}>{escape(str(value))}</{name}>" for name, value in fields.items()]
    return "<xml>" + "".join(parts) + "</xml>"


def text_xml(openid: str, content: str, msg_id: int | None = None) -> str:
    return message_xml(openid, "text", Content=content, MsgId=msg_id or next(_msg_ids))


def voice_xml(openid: str, recognition: str | None) -> str:
    extra = {"Recognition": recognition} if recognition else {}
    return message_xml(openid, "voice", MediaId="media-" + secrets.token_hex(4), Format="amr",
                       MsgId=next(_msg_ids), **extra)


def event_xml(openid: str, event: str, key: str | None = None) -> str:
    extra = {"EventKey": key} if key is not None else {}
    return message_xml(openid, "event", Event=event, **extra)


@dataclass(frozen=True)
class BotReply:
    status: int
    kind: str  # "text", "transfer_customer_service", "empty" (success), "error"
    content: str = ""
    raw: str = ""


def signed_query(credentials: CallbackCredentials, body: str, *, aes: bool, openid: str,
                 timestamp: str | None = None, nonce: str | None = None) -> tuple[dict[str, str], str]:
    """The query string and body WeChat would send for ``body`` (plain or safe mode)."""
    assert credentials.token is not None
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or secrets.token_hex(5)
    query = {"signature": sign(credentials.token, timestamp, nonce), "timestamp": timestamp,
             "nonce": nonce, "openid": openid}
    if aes:
        envelope = parse_xml(encrypt(credentials, body, nonce, timestamp), required=("Encrypt", "MsgSignature"))
        encrypted = envelope["Encrypt"]
        query.update(encrypt_type="aes", msg_signature=envelope["MsgSignature"])
        body = f"<xml><ToUserName>{ACCOUNT}</ToUserName><Encrypt>{escape(encrypted)}</Encrypt></xml>"
    return query, body


def decode_reply(credentials: CallbackCredentials, status: int, text: str, *, aes: bool) -> BotReply:
    if status != 200:
        return BotReply(status, "error", text, text)
    if text.strip() in ("", "success"):
        return BotReply(status, "empty", "", text)
    plain = text
    if aes:
        envelope = parse_xml(text, required=("Encrypt", "MsgSignature", "TimeStamp", "Nonce"))
        plain = credentials.crypto().decrypt_message(text, envelope["MsgSignature"], envelope["TimeStamp"],
                                                     envelope["Nonce"])
    fields = parse_xml(plain)
    return BotReply(status, fields["MsgType"], str(fields.get("Content", "")), plain)


class Simulator:
    def __init__(self, http: aiohttp.ClientSession, url: str, credentials: CallbackCredentials,
                 openid: str = "dev-openid-0001", *, aes: bool = False) -> None:
        self.http = http
        self.endpoint = url.rstrip("/") + "/wechat/callback"
        self.credentials = credentials
        self.openid = openid
        self.aes = aes

    async def send(self, xml: str, **query_overrides: Any) -> BotReply:
        query, body = signed_query(self.credentials, xml, aes=self.aes, openid=self.openid)
        query.update(query_overrides)
        async with self.http.post(self.endpoint, params=query, data=body.encode("utf-8"),
                                  headers={"Content-Type": "text/xml"}) as response:
            return decode_reply(self.credentials, response.status, await response.text(), aes=self.aes)

    async def text(self, content: str) -> BotReply:
        return await self.send(text_xml(self.openid, content))

    async def voice(self, recognition: str | None) -> BotReply:
        return await self.send(voice_xml(self.openid, recognition))

    async def click(self, key: str) -> BotReply:
        return await self.send(event_xml(self.openid, "CLICK", key))

    async def subscribe(self) -> BotReply:
        return await self.send(event_xml(self.openid, "subscribe", ""))

    async def unsubscribe(self) -> BotReply:
        return await self.send(event_xml(self.openid, "unsubscribe"))

    async def image(self) -> BotReply:
        return await self.send(message_xml(self.openid, "image", PicUrl="http://example.invalid/a.jpg",
                                           MediaId="m1", MsgId=next(_msg_ids)))

    async def location(self) -> BotReply:
        return await self.send(message_xml(self.openid, "location", Location_X="31.2", Location_Y="107.5",
                                           Scale="15", Label="达州市政务服务中心", MsgId=next(_msg_ids)))
