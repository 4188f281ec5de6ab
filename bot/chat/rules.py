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
"""

from __future__ import annotations

import importlib
from functools import cache

from bot.chat import faq, replies
from bot.chat.router import Rule, on_click, on_event, on_kind, on_text, otherwise

# Modules exposing CHAT_RULES, tried in this order (e.g. "scheduling.chat", "settlement.chat").
CAPABILITY_MODULES: list[str] = ["bot.chat.settlements", "bot.chat.bookings"]

TRANSFER_PATTERN = r"^(?:转|找|要|请|我要找|我要)?(?:人工|客服|人工客服|人工服务)(?:客服|服务)?[。！!？?]?$|转人工"
NUMBER_PATTERN = r"^(\d{1,2})$"

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
    return [*FIRST_RULES, *capability, *BUILTIN_RULES]
