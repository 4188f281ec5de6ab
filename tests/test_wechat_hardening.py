"""The callback against replays and forged senders (issue 18, findings 1, 9 and 10): a captured
plain-mode URL carries no other body, the body's sender must be the URL's openid, an EncodingAESKey
means safe mode only; product-scan follows are follows; menu clicks differ by their EventKey; and
deliveries reaching two instances are still processed once."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.chat import replies as wechat_replies
from bot.chat import rules as wechat_rules
from bot.chat.router import on_text
from bot.keys import SETTINGS
from bot.wechat.callback import DEV_AES_KEY, CallbackCredentials
from bot.wechat.simulator import Simulator, event_xml, message_xml, signed_query, text_xml


async def _post(client, query: dict[str, str], body: str) -> tuple[int, str]:
    response = await client.post("/wechat/callback", params=query, data=body.encode())
    return response.status, await response.text()


async def _eventually(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


# --- finding 1: replay with a forged sender -----------------------------------------------------------

async def test_a_captured_url_cannot_carry_another_users_click(client):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    query, body = signed_query(credentials, text_xml("o-attacker", "你好"), aes=False, openid="o-attacker")
    status, first = await _post(client, query, body)
    assert status == 200 and "<Content>" in first
    forged = event_xml("o-victim", "CLICK", "MENU_SETTLEMENT")
    # the body's sender differs from the URL's openid
    assert (await _post(client, query, forged))[0] == 403
    # the URL's openid changed too (it is not signed): the nonce was already used with another body
    assert (await _post(client, {**query, "openid": "o-victim"}, forged))[0] == 403
    # a genuine retry (same URL, same body) still gets the same reply
    assert await _post(client, query, body) == (200, first)


async def test_same_message_id_with_another_body_under_a_used_nonce_is_refused(client):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    query, body = signed_query(credentials, text_xml("o-r", "你好", msg_id=5550001), aes=False, openid="o-r")
    assert (await _post(client, query, body))[0] == 200
    altered = text_xml("o-r", "异地就医怎么备案", msg_id=5550001)
    assert (await _post(client, query, altered))[0] == 403


async def test_a_new_signed_nonce_for_the_same_message_is_a_retry(client):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    xml = text_xml("o-retry", "异地就医怎么备案", msg_id=5550002)
    replies = []
    for nonce in ("first", "second"):
        query, body = signed_query(credentials, xml, aes=False, openid="o-retry", nonce=nonce)
        replies.append(await _post(client, query, body))
    assert replies[0] == replies[1] and replies[0][0] == 200 and "备案" in replies[0][1]


@pytest.mark.parametrize("openid", [None, "o-other", "o-sender\n", "o sender"])
async def test_sender_must_be_the_urls_openid(client, openid):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    query, body = signed_query(credentials, text_xml("o-sender", "你好"), aes=False, openid="o-sender")
    if openid is None:
        del query["openid"]
    else:
        query["openid"] = openid
    assert (await _post(client, query, body))[0] == 403


async def test_a_configured_aes_key_means_safe_mode_only(make_client, db):
    client = await make_client(wechat_encoding_aes_key=DEV_AES_KEY)
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    query, body = signed_query(credentials, text_xml("o-safe", "你好"), aes=False, openid="o-safe")
    assert (await _post(client, query, body))[0] == 403
    bot = Simulator(client.session, str(client.make_url("/")), credentials, "o-safe", aes=True)
    assert (await bot.text("异地就医怎么备案")).kind == "text"


async def test_safe_mode_only_can_be_switched_off(make_client, db):
    client = await make_client(wechat_encoding_aes_key=DEV_AES_KEY, wechat_safe_mode_only=False)
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    bot = Simulator(client.session, str(client.make_url("/")), credentials, "o-compat")
    assert (await bot.text("异地就医怎么备案")).kind == "text"


def test_safe_mode_only_is_read_from_the_environment():
    from bot.config import Settings

    assert Settings.from_env({}).wechat_safe_mode_only is True
    assert Settings.from_env({"WECHAT_SAFE_MODE_ONLY": "false"}).wechat_safe_mode_only is False


async def test_dev_login_openid_refuses_a_trailing_newline(client):
    response = await client.post("/api/v1/auth/dev-login", json={"openid": "resident-1\n"})
    assert response.status == 400


# --- finding 9: product-scan follows and menu clicks in one second ------------------------------------

@pytest.mark.parametrize("key", ["scanbarcode|EAN13|6901234567892", "scanimage|a1b2c3"])
async def test_a_product_scan_follow_is_welcomed_and_marks_the_user(client, db, key):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    bot = Simulator(client.session, str(client.make_url("/")), credentials, "o-scan-product")
    reply = await bot.send(event_xml(bot.openid, "subscribe", key))
    assert reply.content == wechat_replies.WELCOME

    async def subscribed() -> bool:
        user = await db.users.find_one({"_id": bot.openid}) or {}
        return user.get("subscribed") is True and user.get("last_message_at") is not None

    await _eventually(subscribed)


async def test_two_menu_clicks_in_one_second_are_two_events(client):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    bot = Simulator(client.session, str(client.make_url("/")), credentials, "o-clicks")
    created = int(time.time())
    help_click = message_xml(bot.openid, "event", create_time=created, Event="CLICK", EventKey="MENU_HELP")
    nurse_click = message_xml(bot.openid, "event", create_time=created, Event="CLICK", EventKey="MENU_BOOK_NURSE")
    first = await bot.send(help_click)
    second = await bot.send(nurse_click)
    assert "使用帮助" in first.content and "网约护士" in second.content
    assert first.content != second.content  # not the first click's reply given again


# --- deliveries of one message reaching two instances -------------------------------------------------

calls: dict[str, int] = {}


async def _slow(ctx) -> str:
    calls[ctx.text] = calls.get(ctx.text, 0) + 1
    await asyncio.sleep(0.3)
    return f"慢慢的回答：{ctx.text}"


async def _cdata_end(ctx) -> str:
    return "前]]>后 <b>&amp;"


CHAT_RULES = [on_text(r"^慢问题", _slow), on_text(r"^CDATA$", _cdata_end)]


@pytest.fixture
def slow_rule(monkeypatch):
    monkeypatch.setattr(wechat_rules, "CAPABILITY_MODULES", [__name__])
    wechat_rules.rules.cache_clear()
    calls.clear()
    yield
    wechat_rules.rules.cache_clear()


async def test_retries_on_two_instances_are_processed_once_with_one_reply(slow_rule, make_client, db):
    first, second = await make_client(), await make_client()
    credentials = CallbackCredentials.from_settings(first.app[SETTINGS])
    query, body = signed_query(credentials, text_xml("o-two", "慢问题A", msg_id=5550003), aes=False, openid="o-two")
    results = await asyncio.gather(_post(first, query, body), _post(second, query, body), _post(second, query, body))
    assert calls == {"慢问题A": 1}
    assert {status for status, _ in results} == {200}
    assert len({text for _, text in results}) == 1 and "慢慢的回答：慢问题A" in results[0][1]


async def test_reply_text_with_a_cdata_end_survives_rendering(slow_rule, client):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    bot = Simulator(client.session, str(client.make_url("/")), credentials, "o-cdata")
    reply = await bot.text("CDATA")
    assert reply.kind == "text" and reply.content == "前]]>后 <b>&amp;"
    assert "<ToUserName><![CDATA[o-cdata]]></ToUserName>" in reply.raw
