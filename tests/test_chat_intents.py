"""The chat's intents (``bot.chat.rules.INTENTS``): typed commands and bare confirmations are actions
answered before the FAQ, never FAQ questions and never knowledge gaps."""

from __future__ import annotations

import asyncio

import pytest

from bot.chat import replies
from bot.chat import rules as chat_rules
from bot.chat.router import phrases_pattern
from bot.keys import SETTINGS
from bot.wechat.callback import CallbackCredentials
from bot.wechat.simulator import Simulator
from knowledge.gaps import COLLECTION as GAPS


def _intent_of(text: str) -> str | None:
    for intent in chat_rules.INTENTS:
        if phrases_pattern(intent.phrases).search(text):
            return intent.name
    return None


def test_every_phrasing_belongs_to_exactly_one_intent() -> None:
    for intent in chat_rules.INTENTS:
        for phrase in intent.phrases:
            owners = [other.name for other in chat_rules.INTENTS if phrases_pattern(other.phrases).search(phrase)]
            assert owners == [intent.name], phrase


@pytest.mark.parametrize(("text", "intent"), [
    ("我的预约", "my_bookings"), ("查看预约", "my_bookings"), ("帮我查看预约吧！", "my_bookings"),
    ("取消预约", "cancel_booking"), ("我要取消预约。", "cancel_booking"),
    ("预约护士", "book_nurse"), ("约护士上门", "book_nurse"), ("我想约护士上门", "book_nurse"),
    ("结算进度", "settlement"), ("报销进度？", "settlement"), ("查一下报销进度", "settlement"),
    ("是", "confirm"), ("好的", "confirm"), ("对", "confirm"), ("嗯", "confirm"), ("确认", "confirm"),
    ("OK", "confirm"), ("好的！", "confirm"),
    ("不", "refuse"), ("不用了", "refuse"), ("算了吧", "refuse"),
])
def test_typed_commands_are_intents(text: str, intent: str) -> None:
    assert _intent_of(text) == intent


@pytest.mark.parametrize("text", [
    "预约护士要多少钱", "网约护士怎么取消", "结算进度怎么查", "我的预约怎么改时间", "是不是要先备案",
    "好的医院能报多少", "对方已经赔了钱医保还报吗", "异地就医怎么备案", "取消预约 2",
])
def test_questions_are_not_intents(text: str) -> None:
    assert _intent_of(text) is None


@pytest.fixture
async def bot(client):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    return Simulator(client.session, str(client.make_url("/")), credentials, "openid-intents")


async def test_intents_answer_as_actions_and_leave_no_knowledge_gap(bot, db) -> None:
    assert "我的预约" in (await bot.text("查看预约")).content
    assert "我的预约" in (await bot.text("取消预约")).content
    assert (await bot.text("约护士上门")).content.startswith("网约护士")
    assert "结算" in (await bot.text("报销进度")).content
    assert (await bot.text("好的")).content == chat_rules.ACKNOWLEDGED
    assert (await bot.text("嗯")).content == chat_rules.ACKNOWLEDGED
    assert (await bot.text("不用了")).content == chat_rules.REFUSED
    assert (await bot.text("是")).content != replies.UNSUPPORTED
    await asyncio.sleep(0.2)  # gaps are written after the reply
    assert await db[GAPS].count_documents({}) == 0


async def test_a_bare_yes_after_a_numbered_list_asks_for_the_number(bot) -> None:
    reply = (await bot.text("异地就医备案怎么办理")).content
    if "1." not in reply:
        pytest.skip("no numbered follow-ups for this answer")
    assert "请回复数字" in (await bot.text("好的")).content


async def test_a_neighbouring_service_is_referred_not_declined(bot, db) -> None:
    reply = (await bot.text("住房公积金怎么提取出来")).content
    assert "12329" in reply and "答不上来" not in reply
    reply = (await bot.text("养老金每个月啥时候发")).content
    assert "12333" in reply
    await asyncio.sleep(0.2)
    assert await db[GAPS].count_documents({}) == 0  # a referral is not a knowledge gap
