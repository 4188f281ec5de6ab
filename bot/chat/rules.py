"""The chat's routing table: which handler answers which message. First match wins.

How another capability adds or replaces chat rules — ONE line, in ONE place:

1. In your own module, define ``CHAT_RULES`` with the helpers of ``bot.chat.router``::

       # scheduling/chat.py
       from bot.chat.router import ChatContext, on_click, on_text

       async def my_bookings(ctx: ChatContext) -> str: ...
       async def cancel_booking(ctx: ChatContext) -> str: ...      # ctx.match.group(1) is N
       async def confirm_cancel(ctx: ChatContext) -> str: ...
       async def cancel_pending(ctx: ChatContext) -> bool:
           return await ctx.recall("cancel_booking") is not None

       CHAT_RULES = [
           on_click("MENU_MY_BOOKINGS", my_bookings),             # replaces the placeholder
           on_text(r"^取消预约\\s*(\\d+)$", cancel_booking),
           on_text(r"^(确认|确定)$", confirm_cancel, when=cancel_pending),
       ]

2. Add your module's dotted name to ``CAPABILITY_MODULES`` below (that is the one line).

Capability rules are tried before every built-in rule except the transfer to a person, so a
capability rule for ``MENU_MY_BOOKINGS`` or ``MENU_SETTLEMENT`` shadows the placeholder and a text
rule wins over the FAQ. Keep patterns anchored (``^…$``) so they do not swallow FAQ questions.

**Intents** (``INTENTS`` below): typed commands — 我的预约, 取消预约, 预约护士, 结算进度, and the bare
confirmations (是/好的/对/嗯/确认) and refusals (不/不用了/算了) — are actions, never FAQ questions, and so
never recorded as knowledge gaps. They come after the capability rules (so "确认" confirms a pending
cancellation first, "取消预约 2" cancels booking 2) and before the FAQ. Each intent lists its phrasings;
a message matches when it is exactly one of them, give or take a polite lead-in and a particle
(``router.phrases_pattern``). Add a phrasing to the table, and a case to ``tests/test_chat_intents.py``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

from bot.chat import bookings, faq, replies, settlements
from bot.chat.router import (
    ChatContext,
    Handler,
    Reply,
    Rule,
    on_click,
    on_event,
    on_kind,
    on_phrases,
    on_text,
    otherwise,
)

# Modules exposing CHAT_RULES, tried in this order (e.g. "scheduling.chat", "settlement.chat").
CAPABILITY_MODULES: list[str] = ["bot.chat.settlements", "bot.chat.bookings"]

TRANSFER_PATTERN = r"^(?:转|找|要|请|我要找|我要)?(?:人工|客服|人工客服|人工服务)(?:客服|服务)?[。！!？?]?$|转人工"
NUMBER_PATTERN = r"^(\d{1,2})$"

ACKNOWLEDGED = "好的。还有其他医保问题，直接发给我就行。"
REFUSED = "好的，不打扰您了。有医保问题随时发给我。"


async def acknowledge(ctx: ChatContext) -> Reply:
    """A bare "是/好的/对" with nothing pending. After a numbered list it asks for the number instead."""
    choices = await ctx.recall(faq.CHOICES)
    if choices:
        return f"请回复数字 1 到 {len(choices)} 选择您想看的问题，或直接输入新的问题。"
    return ACKNOWLEDGED


async def refuse(ctx: ChatContext) -> Reply:
    await ctx.forget(faq.CHOICES)
    return REFUSED


async def cancel_which(ctx: ChatContext) -> Reply:
    """"取消预约" without a number: the list, whose footer says to reply "取消预约 编号"."""
    return await bookings.my_bookings(ctx)


@dataclass(frozen=True)
class Intent:
    name: str
    phrases: tuple[str, ...]
    handler: Handler


INTENTS: list[Intent] = [
    Intent("my_bookings", (
        "我的预约", "查看预约", "查预约", "查一下预约", "看预约", "看看预约", "我的预约记录", "预约记录",
        "查看我的预约", "看看我的预约", "我约了什么", "我预约了什么",
    ), bookings.my_bookings),
    Intent("cancel_booking", (
        "取消预约", "取消我的预约", "取消订单", "预约取消", "不想约了", "退预约", "退掉预约",
    ), cancel_which),
    Intent("book_nurse", (
        "预约护士", "约护士", "约护士上门", "预约护士上门", "护士上门", "请护士上门", "预约网约护士",
        "约网约护士", "网约护士预约", "上门护理预约", "预约上门护理",
    ), replies.book_nurse),
    Intent("book_centre", ("预约办事", "预约延时服务", "延时服务预约", "预约窗口", "约窗口"), replies.book_centre),
    Intent("settlement", (
        "结算进度", "报销进度", "查结算", "查报销", "查看结算", "查看报销", "我的结算", "我的报销",
        "结算查询", "报销查询", "查结算进度", "查报销进度", "报销到哪了", "结算到哪了",
    ), settlements.latest_settlements),
    Intent("confirm", (
        "是", "是的", "是滴", "对", "对的", "对对", "嗯", "嗯嗯", "恩", "好", "好的", "好滴", "好嘞",
        "行", "可以", "确认", "确定", "没问题", "ok", "okay", "收到", "知道了", "明白了", "谢谢", "好的谢谢",
    ), acknowledge),
    Intent("refuse", (
        "不", "不是", "不对", "不用", "不用了", "不要", "不要了", "不需要", "算了", "否", "没有", "没事",
        "没事了", "没了",
    ), refuse),
]

INTENT_RULES: list[Rule] = [on_phrases(intent.phrases, intent.handler, name=f"intent {intent.name}")
                            for intent in INTENTS]

FIRST_RULES: list[Rule] = [
    on_text(TRANSFER_PATTERN, replies.transfer_to_agent, name="transfer to a person"),
    # a resident whose request for a person is open talks to that person, not to the FAQ
    on_kind("text", replies.relay_to_agent, when=replies.in_handoff, name="talking to a person"),
]

BUILTIN_RULES: list[Rule] = [
    on_text(NUMBER_PATTERN, faq.show_choice, when=faq.has_choices, name="FAQ number reply"),
    on_kind("text", faq.answer_question, name="FAQ"),
    on_kind("voice", replies.ask_to_type, name="voice without recognition"),
    on_event("subscribe", replies.welcome),
    on_event("subscribe_scan", replies.welcome),
    on_event("unsubscribe", replies.unsubscribed),
    on_click("MENU_HELP", replies.help_menu),
    on_click("MENU_BOOK_CENTRE", replies.book_centre),
    on_click("MENU_BOOK_NURSE", replies.book_nurse),
    on_click("MENU_MY_BOOKINGS", replies.my_bookings),
    on_click("MENU_SETTLEMENT", replies.settlement),
    on_event("subscribe_msg_popup_event", replies.subscription_changed),
    on_event("subscribe_msg_change_event", replies.subscription_changed),
    on_event("subscribe_msg_sent_event", replies.subscription_sent),
    on_kind("event", replies.no_reply, name="other events"),
    otherwise(replies.unsupported),  # image, location, link, video, short video, unknown
]


@cache
def rules() -> list[Rule]:
    """The full table, built once per process."""
    capability: list[Rule] = []
    for module_name in CAPABILITY_MODULES:
        capability.extend(importlib.import_module(module_name).CHAT_RULES)
    return [*FIRST_RULES, *capability, *INTENT_RULES, *BUILTIN_RULES]
