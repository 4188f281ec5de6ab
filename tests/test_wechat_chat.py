"""The chat end to end through the real callback: every handler, the router and its extension
point, FAQ follow-ups, grants, users, dedupe and the late-reply fallback."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from bot.chat import faq as wechat_faq
from bot.chat import replies as wechat_replies
from bot.chat import rules as wechat_rules
from bot.chat import state as chat_state
from bot.chat.dispatch import SORRY
from bot.chat.router import ChatContext, on_click, on_text
from bot.keys import SETTINGS
from bot.notify import grants
from bot.wechat import dedupe, users
from bot.wechat.callback import CallbackCredentials
from bot.wechat.simulator import Simulator, message_xml, signed_query, text_xml

# --- a capability module's rules, registered by the ``capability`` fixture ------------------------

calls: dict[str, int] = {}
SLOW_SECONDS = 0.3


async def _my_bookings(ctx: ChatContext) -> str:
    return "您有 2 个预约"


async def _cancel(ctx: ChatContext) -> str:
    assert ctx.match is not None
    await ctx.remember("cancel_booking", int(ctx.match.group(1)), ttl=timedelta(minutes=5))
    return f"确定取消预约 {ctx.match.group(1)} 吗？回复“确认”取消"


async def _pending(ctx: ChatContext) -> bool:
    return await ctx.recall("cancel_booking") is not None


async def _confirm(ctx: ChatContext) -> str:
    number = await ctx.recall("cancel_booking")
    await ctx.forget("cancel_booking")
    return f"已取消预约 {number}"


async def _slow(ctx: ChatContext) -> str:
    calls[ctx.text or ""] = calls.get(ctx.text or "", 0) + 1
    await asyncio.sleep(SLOW_SECONDS)
    return f"慢慢的回答：{ctx.text}"


async def _broken(ctx: ChatContext) -> str:
    raise RuntimeError("boom")


async def _takes_human_words(ctx: ChatContext) -> str:
    return "capability saw it"


CHAT_RULES = [
    on_click("MENU_MY_BOOKINGS", _my_bookings),
    on_text(r"^取消预约\s*(\d+)$", _cancel),
    on_text(r"^(确认|确定)$", _confirm, when=_pending),
    on_text(r"^慢问题\d*$", _slow),
    on_text(r"^出错吧$", _broken),
    on_text(r"^人工$", _takes_human_words),  # must never win over the transfer rule
]


@pytest.fixture
def capability(monkeypatch):
    monkeypatch.setattr(wechat_rules, "CAPABILITY_MODULES", [__name__])
    wechat_rules.rules.cache_clear()
    calls.clear()
    yield
    wechat_rules.rules.cache_clear()


@pytest.fixture
async def bot(client):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    return Simulator(client.session, str(client.make_url("/")), credentials, "openid-chat-1")


# --- events and menus --------------------------------------------------------------------------------

async def _user(db, openid: str, **expected) -> dict:
    """The user document once it shows ``expected`` (user records are written just after the reply)."""
    found: dict = {}

    async def check() -> bool:
        found.update(await db.users.find_one({"_id": openid}) or {})
        return all(found.get(k) == v for k, v in expected.items())

    await _eventually(check)
    return found


async def test_subscribe_welcomes_and_marks_the_user(bot, db):
    reply = await bot.subscribe()
    assert reply.content == wechat_replies.WELCOME and "12393" in reply.content
    user = await _user(db, bot.openid, subscribed=True)
    assert user["last_message_at"] and user["first_seen"]
    assert (await bot.unsubscribe()).kind == "empty"
    user = await _user(db, bot.openid, subscribed=False)
    assert user["unsubscribed_at"]


@pytest.mark.parametrize(("key", "words"), [
    ("MENU_BOOK_CENTRE", "延时服务"), ("MENU_BOOK_NURSE", "网约护士"), ("MENU_MY_BOOKINGS", "我的预约"),
    ("MENU_SETTLEMENT", "结算"), ("MENU_HELP", "使用帮助"),
])
async def test_menu_clicks(bot, key, words):
    reply = await bot.click(key)
    assert reply.kind == "text" and words in reply.content


async def test_menu_placeholders_link_the_mini_program_when_configured(make_client, db):
    client = await make_client(wechat_miniprogram_app_id="wxminiprogram01")
    bot = Simulator(client.session, str(client.make_url("/")),
                    CallbackCredentials.from_settings(client.app[SETTINGS]), "o-link")
    reply = await bot.click("MENU_BOOK_NURSE")
    assert 'data-miniprogram-appid="wxminiprogram01"' in reply.content
    assert 'data-miniprogram-path="pages/nurse/index"' in reply.content


@pytest.mark.parametrize("words", ["人工", "转人工", "客服", "人工客服", "我要找人工客服", "请帮我转人工"])
async def test_asking_for_a_person_transfers(bot, words):
    # our own queue (bot.chat.handoff), with an answer at once saying who answers and when
    reply = await bot.text(words)
    assert reply.kind == "text" and "已转接人工客服" in reply.content and "工作日" in reply.content


async def test_customer_service_phone_question_is_not_a_transfer(bot):
    assert (await bot.text("客服电话是多少")).kind == "text"


async def test_voice_with_recognition_is_answered_like_text(bot):
    reply = await bot.voice("门诊慢特病怎么申请")
    assert reply.kind == "text" and "慢特病" in reply.content
    assert "已转接人工客服" in (await bot.voice("转人工")).content


async def test_voice_without_recognition_asks_to_type(bot):
    assert (await bot.voice(None)).content == wechat_replies.ASK_TO_TYPE


@pytest.mark.parametrize("msg_type", ["image", "location", "link", "video", "shortvideo", "file", "nonsense"])
async def test_unreadable_messages_get_a_polite_explanation(bot, msg_type):
    reply = await bot.send(message_xml(bot.openid, msg_type, MsgId=int(time.time() * 1000) + hash(msg_type) % 997))
    assert reply.content == wechat_replies.UNSUPPORTED


@pytest.mark.parametrize("event", ["VIEW", "LOCATION", "TEMPLATESENDJOBFINISH", "some_future_event"])
async def test_other_events_get_no_reply(bot, event):
    reply = await bot.send(message_xml(bot.openid, "event", Event=event, EventKey="x"))
    assert reply.status == 200 and reply.kind == "empty"


# --- FAQ ---------------------------------------------------------------------------------------------

async def test_answer_lists_related_questions_and_a_number_shows_one(bot):
    reply = await bot.text("门诊慢特病怎么申请")
    assert "相关问题：\n1. " in reply.content and wechat_faq.PICK_HINT in reply.content
    second = reply.content.split("相关问题：")[1].split("\n2. ")[1].split("\n")[0]
    picked = await bot.text("2")
    assert picked.content.startswith(f"【{second}】")
    full_width = await bot.text("１")
    assert full_width.content.startswith("【")
    assert "之间的数字" in (await bot.text("9")).content


async def test_unsure_offers_did_you_mean_and_numbers_resolve(bot):
    reply = await bot.text("医保")
    assert reply.content.startswith("您是不是想问") and "\n1. " in reply.content
    first = reply.content.split("\n1. ")[1].split("\n")[0]
    assert (await bot.text("1")).content.startswith(f"【{first}】")


async def test_decline_offers_a_person_and_the_hotline_and_records_the_gap(bot, db):
    reply = await bot.text("今天股票会涨吗")
    assert reply.content == wechat_faq.DECLINE and "人工" in reply.content and "12393" in reply.content

    async def gap_recorded() -> bool:
        return await db.faq_gaps.count_documents({}) == 1

    await _eventually(gap_recorded)
    assert not (await bot.text("1")).content.startswith("【")  # no list is on offer any more


async def test_greeting_gets_the_faq_greeting(bot):
    reply = await bot.text("你好")
    assert "医保小助手" in reply.content


# --- subscribe-message grants ------------------------------------------------------------------------

def _grant_event(openid: str, event: str, wrapper: str, items: list[dict[str, str]], created: int) -> str:
    lists = "".join("<List>" + "".join(f"<{k}>{v}</{k}>" for k, v in item.items()) + "</List>" for item in items)
    return (f"<xml><ToUserName>gh</ToUserName><FromUserName>{openid}</FromUserName><CreateTime>{created}</CreateTime>"
            f"<MsgType>event</MsgType><Event>{event}</Event><{wrapper}>{lists}</{wrapper}></xml>")


async def test_subscription_events_record_grants(bot, db):
    now = int(time.time())
    popup = _grant_event(bot.openid, "subscribe_msg_popup_event", "SubscribeMsgPopupEvent", [
        {"TemplateId": "T-SETTLE", "SubscribeStatusString": "accept", "PopupScene": "0"},
        {"TemplateId": "T-BOOK", "SubscribeStatusString": "reject", "PopupScene": "0"},
    ], now)
    assert (await bot.send(popup)).kind == "empty"
    again = _grant_event(bot.openid, "subscribe_msg_popup_event", "SubscribeMsgPopupEvent", [
        {"TemplateId": "T-SETTLE", "SubscribeStatusString": "accept", "PopupScene": "0"}], now + 1)
    await bot.send(again)
    assert await grants.available(db, bot.openid, "T-SETTLE") == 2
    assert (await db.subscription_grants.find_one({"openid": bot.openid, "template_id": "T-BOOK"}))["available"] == 0
    sent = _grant_event(bot.openid, "subscribe_msg_sent_event", "SubscribeMsgSentEvent", [
        {"TemplateId": "T-SETTLE", "MsgID": "1700", "ErrorCode": "0", "ErrorStatus": "success"}], now + 2)
    await bot.send(sent)
    document = await db.subscription_grants.find_one({"openid": bot.openid, "template_id": "T-SETTLE"})
    assert document["last_sent"]["msg_id"] == "1700" and document["available"] == 2
    change = _grant_event(bot.openid, "subscribe_msg_change_event", "SubscribeMsgChangeEvent", [
        {"TemplateId": "T-SETTLE", "SubscribeStatusString": "reject"}], now + 3)
    await bot.send(change)
    assert await grants.available(db, bot.openid, "T-SETTLE") == 0


# --- router and its extension point ------------------------------------------------------------------

async def test_capability_rules_shadow_placeholders_and_use_state(capability, bot):
    assert (await bot.click("MENU_MY_BOOKINGS")).content == "您有 2 个预约"
    assert (await bot.text("确认")).content != "已取消预约 3"  # nothing pending: the FAQ answers
    assert (await bot.text("取消预约 3")).content.startswith("确定取消预约 3")
    assert (await bot.text("确认")).content == "已取消预约 3"
    assert "已转接人工客服" in (await bot.text("人工")).content


async def test_a_failing_handler_gets_an_apology_not_an_error(capability, bot):
    reply = await bot.text("出错吧")
    assert reply.status == 200 and reply.content == SORRY


# --- dedupe and the late fallback --------------------------------------------------------------------

async def test_three_concurrent_deliveries_are_processed_once_with_one_reply(capability, client):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    query, body = signed_query(credentials, text_xml("o-dup", "慢问题1", msg_id=424242), aes=False, openid="o-dup")
    responses = await asyncio.gather(*(client.post("/wechat/callback", params=query, data=body.encode())
                                       for _ in range(3)))
    texts = [await r.text() for r in responses]
    assert calls == {"慢问题1": 1}
    contents = {t.split("<Content><![CDATA[")[1].split("]]>")[0] for t in texts}
    assert contents == {"慢慢的回答：慢问题1"}
    retry = await client.post("/wechat/callback", params=query, data=body.encode())  # a later retry
    assert "慢慢的回答：慢问题1" in await retry.text() and calls == {"慢问题1": 1}


async def test_events_are_deduplicated_by_sender_time_and_event(bot, db):
    created = int(time.time())
    xml = message_xml(bot.openid, "event", create_time=created, Event="subscribe", EventKey="")
    first, second = await asyncio.gather(bot.send(xml), bot.send(xml))
    assert first.content == second.content == wechat_replies.WELCOME
    assert await db.wechat_dedupe.count_documents({"_id": f"event:{bot.openid}:{created}:subscribe:"}) == 1


@pytest.fixture
async def late_client(make_client, db, fake_wechat):
    return await make_client(wechat_reply_timeout_ms=100, wechat_app_id=fake_wechat.app_id,
                             wechat_app_secret=fake_wechat.secret, wechat_api_base=fake_wechat.base_url,
                             wechat_token="callback-token")


async def _eventually(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_slow_answer_replies_success_then_a_customer_service_message(capability, late_client, fake_wechat, db):
    credentials = CallbackCredentials.from_settings(late_client.app[SETTINGS])
    assert credentials.token == "callback-token"
    fake_wechat.open_window("o-late")
    bot = Simulator(late_client.session, str(late_client.make_url("/")), credentials, "o-late")
    xml = text_xml("o-late", "慢问题2", msg_id=777001)
    reply = await bot.send(xml)
    assert reply.kind == "empty"

    async def delivered() -> bool:
        return bool(fake_wechat.sent_to("o-late", "custom"))

    await _eventually(delivered)
    assert fake_wechat.sent_to("o-late", "custom")[0]["text"] == "慢慢的回答：慢问题2"
    assert (await bot.send(xml)).kind == "empty"  # a retry of a late message does not repeat it
    assert calls == {"慢问题2": 1}

    async def noted() -> bool:
        document = await db.wechat_replies.find_one({"_id": "msg:777001"})
        return document.get("late_delivery") == "sent"

    await _eventually(noted)


async def test_late_reply_that_cannot_be_delivered_is_recorded(capability, late_client, fake_wechat, db):
    credentials = CallbackCredentials.from_settings(late_client.app[SETTINGS])
    bot = Simulator(late_client.session, str(late_client.make_url("/")), credentials, "o-closed")
    assert (await bot.send(text_xml("o-closed", "慢问题3", msg_id=777002))).kind == "empty"

    async def noted() -> bool:
        document = await db.wechat_replies.find_one({"_id": "msg:777002"})
        return document.get("late_delivery") == "failed 45015"

    await _eventually(noted)
    assert fake_wechat.sent == []


# --- users and conversation state --------------------------------------------------------------------

async def test_service_window_follows_user_messages_not_passive_events(bot, db):
    assert not await users.in_service_window(db, bot.openid)
    await bot.send(message_xml(bot.openid, "event", Event="VIEW", EventKey="https://example.invalid"))
    user = await _user(db, bot.openid, _id=bot.openid)
    assert user["first_seen"] and user["last_seen"] and "last_message_at" not in user
    assert not await users.in_service_window(db, bot.openid)
    await bot.text("你好")

    async def window_open() -> bool:
        return await users.in_service_window(db, bot.openid)

    await _eventually(window_open)


async def test_chat_state_expires(db):
    await chat_state.remember(db, "o1", "k", [1, 2], ttl=timedelta(seconds=-1))
    assert await chat_state.recall(db, "o1", "k", "gone") == "gone"
    await chat_state.remember(db, "o1", "k", [1, 2])
    assert await chat_state.recall(db, "o1", "k") == [1, 2]
    await chat_state.forget(db, "o1", "k")
    assert await chat_state.recall(db, "o1", "k") is None


def test_dedupe_keys():
    message = {"FromUserName": "o1", "CreateTime": "123", "MsgType": "text", "MsgId": "99"}
    assert dedupe.key_for(message) == "msg:99"
    event = {"FromUserName": "o1", "CreateTime": "123", "MsgType": "event", "Event": "CLICK"}
    assert dedupe.key_for(event) == "event:o1:123:click:"
    assert dedupe.key_for({**event, "EventKey": " MENU_HELP "}) == "event:o1:123:click:MENU_HELP"
