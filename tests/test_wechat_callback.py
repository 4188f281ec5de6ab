"""The callback protocol: signatures, clock window, safe and compatibility mode, the official
encryption vectors, and every bad input (never a 500, never a hang)."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest
from wechatpy.crypto import PrpCrypto, WeChatCrypto

from bot.keys import SETTINGS
from bot.wechat import callback as wechat_callback
from bot.wechat.callback import (
    DEV_TOKEN,
    CallbackCredentials,
    CallbackRejectedError,
    decrypt,
    encrypt,
    parse_xml,
    sign,
)
from bot.wechat.simulator import Simulator, decode_reply, message_xml, signed_query, text_xml
from handlers import wechat as wechat_handler

# Official test vectors (WeChat's sample code), see DESIGN.md.
VECTOR_TOKEN = "pamtest"
VECTOR_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
VECTOR_APP_ID = "wxb11529c136998cb6"
VECTOR_TIMESTAMP = "1409304348"
VECTOR_NONCE = "xxxxxx"
VECTOR_PLAINTEXT = "我是中文abcd123"
VECTOR_CIPHERTEXT = "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="


class _FixedPrefix(PrpCrypto):
    def get_random_string(self) -> str:
        return "aaaabbbbccccdddd"


def test_official_vector_encrypts_to_the_published_ciphertext():
    key = base64.b64decode(VECTOR_AES_KEY + "=")
    assert _FixedPrefix(key).encrypt(VECTOR_PLAINTEXT, VECTOR_APP_ID).decode() == VECTOR_CIPHERTEXT
    assert PrpCrypto(key).decrypt(VECTOR_CIPHERTEXT, VECTOR_APP_ID) == VECTOR_PLAINTEXT


def test_official_vector_decrypts_through_our_safe_mode_path():
    credentials = CallbackCredentials(VECTOR_TOKEN, VECTOR_AES_KEY, VECTOR_APP_ID, development=False)
    msg_signature = sign(VECTOR_TOKEN, VECTOR_TIMESTAMP, VECTOR_NONCE, VECTOR_CIPHERTEXT)
    envelope = {"Encrypt": VECTOR_CIPHERTEXT}
    assert decrypt(credentials, envelope, msg_signature, VECTOR_TIMESTAMP, VECTOR_NONCE) == VECTOR_PLAINTEXT
    with pytest.raises(CallbackRejectedError) as bad:
        decrypt(credentials, envelope, "0" * 40, VECTOR_TIMESTAMP, VECTOR_NONCE)
    assert bad.value.status == 403
    other_app = CallbackCredentials(VECTOR_TOKEN, VECTOR_AES_KEY, "wx0000000000000000", development=False)
    with pytest.raises(CallbackRejectedError) as wrong_app:
        decrypt(other_app, envelope, msg_signature, VECTOR_TIMESTAMP, VECTOR_NONCE)
    assert wrong_app.value.status == 400


def test_reply_encryption_round_trips_with_wechatpy():
    credentials = CallbackCredentials(VECTOR_TOKEN, VECTOR_AES_KEY, VECTOR_APP_ID, development=False)
    envelope = encrypt(credentials, "<xml><Content>你好</Content></xml>", VECTOR_NONCE, VECTOR_TIMESTAMP)
    fields = parse_xml(envelope, required=("Encrypt", "MsgSignature"))
    crypto = WeChatCrypto(VECTOR_TOKEN, VECTOR_AES_KEY, VECTOR_APP_ID)
    assert "你好" in crypto.decrypt_message(envelope, fields["MsgSignature"], VECTOR_TIMESTAMP, VECTOR_NONCE)


def test_development_defaults_only_without_app_id(settings):
    dev = CallbackCredentials.from_settings(settings)
    assert dev.token == DEV_TOKEN and dev.aes_key and dev.development
    production = CallbackCredentials.from_settings(type(settings)(**{**settings.__dict__, "wechat_app_id": "wx1"}))
    assert production.token is None and production.aes_key is None


@pytest.fixture
async def bot(client):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    return Simulator(client.session, str(client.make_url("/")), credentials, "openid-callback")


def _query(token: str = DEV_TOKEN, timestamp: str | None = None, nonce: str = "n0nce") -> dict[str, str]:
    timestamp = timestamp or str(int(time.time()))
    return {"signature": sign(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}


async def test_get_echoes_echostr_with_a_good_signature(client):
    response = await client.get("/wechat/callback", params={**_query(), "echostr": "hello-123"})
    assert response.status == 200 and await response.text() == "hello-123"


@pytest.mark.parametrize("case", ["bad", "missing", "stale", "future", "not a number"])
async def test_get_refuses_bad_signature_and_clock(client, case):
    query = {**_query(), "echostr": "x"}
    if case == "bad":
        query["signature"] = "0" * 40
    elif case == "missing":
        del query["signature"]
    elif case == "stale":
        query = {**_query(timestamp=str(int(time.time()) - 301)), "echostr": "x"}
    elif case == "future":
        query = {**_query(timestamp=str(int(time.time()) + 400)), "echostr": "x"}
    else:
        query["timestamp"] = "yesterday"
    response = await client.get("/wechat/callback", params=query)
    assert response.status == 403


async def test_plain_mode_text_gets_a_text_reply(bot):
    reply = await bot.text("异地就医怎么备案")
    assert reply.status == 200 and reply.kind == "text" and "备案" in reply.content


async def test_safe_mode_decrypts_and_encrypts_the_reply(bot):
    bot.aes = True
    reply = await bot.text("门诊慢特病怎么申请")
    assert reply.status == 200 and reply.kind == "text" and "慢特病" in reply.content


async def test_safe_mode_reply_is_an_encrypted_envelope(client):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    query, body = signed_query(credentials, text_xml("o-aes", "你好"), aes=True, openid="o-aes")
    response = await client.post("/wechat/callback", params=query, data=body.encode())
    text = await response.text()
    assert response.status == 200 and "<Encrypt>" in text and "你好" not in text
    assert decode_reply(credentials, 200, text, aes=True).kind == "text"


async def test_compatibility_mode_uses_msg_signature_and_encrypts(client):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    inner = text_xml("o-compat", "门诊慢特病怎么申请")
    query, envelope = signed_query(credentials, inner, aes=True, openid="o-compat")
    # compatibility mode: plaintext fields and the ciphertext side by side
    both = inner.replace("</xml>", parse_xml(envelope, required=("Encrypt",))["Encrypt"].join(
        ("<Encrypt>", "</Encrypt></xml>")))
    response = await client.post("/wechat/callback", params=query, data=both.encode())
    reply = decode_reply(credentials, response.status, await response.text(), aes=True)
    assert reply.kind == "text" and "慢特病" in reply.content


async def test_safe_mode_ignores_signature_and_needs_msg_signature(client):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    query, body = signed_query(credentials, text_xml("o1", "你好"), aes=True, openid="o1")
    missing = {k: v for k, v in query.items() if k != "msg_signature"}
    assert (await client.post("/wechat/callback", params=missing, data=body.encode())).status == 403
    forged = {**query, "msg_signature": "0" * 40}
    assert (await client.post("/wechat/callback", params=forged, data=body.encode())).status == 403


async def _post(client, body: bytes | str, **query: str) -> int:
    data = body.encode() if isinstance(body, str) else body
    response = await client.post("/wechat/callback", params={**_query(), **query}, data=data)
    await response.read()
    return response.status


XXE = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       '<xml><ToUserName>a</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>'
       '<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>1</MsgId></xml>')
BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                  '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
                  '<xml><ToUserName>a</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>'
                  '<MsgType>text</MsgType><Content>&lol3;</Content></xml>')
DOCTYPE_ONLY = '<!DOCTYPE xml><xml><ToUserName>a</ToUserName></xml>'
UNDECLARED_ENTITY = ('<xml><ToUserName>a</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>'
                     '<MsgType>text</MsgType><Content>&undefined;</Content></xml>')


@pytest.mark.parametrize("body", [
    pytest.param(XXE, id="external entity"),
    pytest.param(BILLION_LAUGHS, id="entity expansion"),
    pytest.param(DOCTYPE_ONLY, id="doctype"),
    pytest.param(UNDECLARED_ENTITY, id="undeclared entity"),
    pytest.param("<xml><ToUserName>a</ToUserName", id="truncated"),
    pytest.param("not xml at all", id="not xml"),
    pytest.param("", id="empty"),
    pytest.param("<root><MsgType>text</MsgType></root>", id="wrong root"),
    pytest.param(message_xml("o", "text", Content="hi").replace("<MsgType>text</MsgType>", ""), id="no MsgType"),
    pytest.param(message_xml("o", "text", MsgType2="x").replace("<MsgType>text</MsgType>",
                                                                "<MsgType><a>text</a></MsgType>"), id="nested MsgType"),
    pytest.param(message_xml("o", "text", Content="hi") .replace("</xml>", "<MsgType>text</MsgType></xml>"),
                 id="repeated MsgType"),
    pytest.param(message_xml("o", "text", Content="hi").replace("<CreateTime>", "<CreateTime>x"), id="bad CreateTime"),
    pytest.param(message_xml("o", "text", Content="hi", MsgId="abc"), id="bad MsgId"),
    pytest.param(message_xml("o", "text", Content="中文").encode("gbk"), id="GBK body"),
    pytest.param(b"\xff\xfe<\x00x\x00", id="UTF-16 body"),
])
async def test_bad_bodies_get_400(client, body):
    assert await _post(client, body) == 400


async def test_bad_envelopes_in_safe_mode_get_400(client):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    timestamp, nonce = str(int(time.time())), "n1"
    for encrypted in ("not base64!!", base64.b64encode(b"short").decode(), base64.b64encode(b"x" * 48).decode()):
        query = {**_query(timestamp=timestamp, nonce=nonce), "encrypt_type": "aes",
                 "msg_signature": sign(credentials.token, timestamp, nonce, encrypted)}
        body = f"<xml><ToUserName>a</ToUserName><Encrypt>{encrypted}</Encrypt></xml>"
        assert (await client.post("/wechat/callback", params=query, data=body.encode())).status == 400
    # an envelope without Encrypt, and a DOCTYPE in the envelope
    query = {**_query(), "encrypt_type": "aes", "msg_signature": "x"}
    assert (await client.post("/wechat/callback", params=query, data=b"<xml><A>1</A></xml>")).status == 400
    assert (await client.post("/wechat/callback", params=query, data=XXE.encode())).status == 400


async def test_decrypted_xml_is_checked_as_strictly(client):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    query, body = signed_query(credentials, XXE, aes=True, openid="o1")
    assert (await client.post("/wechat/callback", params=query, data=body.encode())).status == 400


@pytest.mark.parametrize("case", ["bad signature", "no signature", "stale", "no timestamp"])
async def test_post_refuses_bad_signature_and_clock(client, case):
    query = _query()
    if case == "bad signature":
        query["signature"] = "f" * 40
    elif case == "no signature":
        del query["signature"]
    elif case == "stale":
        query = _query(timestamp=str(int(time.time()) - 600))
    else:
        del query["timestamp"]
    response = await client.post("/wechat/callback", params=query, data=text_xml("o1", "你好").encode())
    assert response.status == 403


async def test_oversized_body_gets_413(client):
    big = text_xml("o1", "长" * (wechat_callback.MAX_BODY_BYTES // 3 + 10))
    assert await _post(client, big) == 413

    async def chunked():
        for _ in range(40):
            yield b"<xml>" + b"x" * 4096

    response = await client.post("/wechat/callback", params=_query(), data=chunked())
    assert response.status == 413


async def test_body_that_never_arrives_gets_408(client, monkeypatch):
    monkeypatch.setattr(wechat_handler, "BODY_TIMEOUT_SECONDS", 0.3)
    url = client.make_url("/wechat/callback")
    query = "&".join(f"{k}={v}" for k, v in _query().items())
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(f"POST /wechat/callback?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n<xml>".encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert b" 408 " in status_line


async def test_callback_disabled_without_token_in_production(make_client, db):
    client = await make_client(wechat_app_id="wx123", wechat_app_secret="s")
    assert (await client.get("/wechat/callback", params={**_query(), "echostr": "x"})).status == 503
    assert (await client.post("/wechat/callback", params=_query(), data=b"<xml/>")).status == 503
