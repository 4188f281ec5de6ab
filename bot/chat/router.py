"""A small declarative message router for the official-account chat (in the spirit of WxJava's
``WxMpMessageRouter`` and Senparc's ``MessageHandler``).

A ``Rule`` matches on the message kind, the event, the EventKey, a text pattern and an optional
async condition; the first rule that matches handles the message. Handlers are plain functions::

    async def handler(ctx: ChatContext) -> Reply

where ``Reply`` is a ``str`` (a text reply), ``None`` (no reply: WeChat gets ``success``) or
``TRANSFER`` (hand the conversation to a human agent, 转人工). ``ctx.match`` holds the
``re.Match`` of a text rule; ``ctx.remember/recall/forget`` keep per-user state for a while
(``bot.chat.state``; changes are stored right after the reply, before the user's next message is
handled); ``ctx.after_reply(work)`` runs bookkeeping once the reply is on its way.

Voice messages with WeChat's speech recognition count as text (kind ``"text"``, ``ctx.text`` is
the recognised sentence), so every text rule works by voice too.

The routing table itself lives in ``bot/chat/rules.py`` (how to add a rule is explained there).
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase
from wechatpy.messages import BaseMessage

from bot.chat import state as chat_state
from bot.config import Settings
from bot.group_commit import GroupCommit
from bot.keys import SETTINGS

log = logging.getLogger(__name__)


class _Transfer:
    def __repr__(self) -> str:
        return "TRANSFER"


TRANSFER: Final = _Transfer()  # reply that hands the user over to the customer-service agents
Reply = str | _Transfer | None


@dataclass
class ChatContext:
    app: web.Application
    db: AsyncDatabase
    openid: str
    message: BaseMessage  # wechatpy's parsed message or event
    fields: dict[str, Any]  # the raw top-level XML fields (strings)
    kind: str  # "text" (incl. recognised voice), "voice", "image", "event", …
    text: str | None = None  # the text of a text kind, NFKC-normalised and stripped
    event: str | None = None  # lower-case event name for kind "event"
    event_key: str | None = None
    match: re.Match[str] | None = None
    group: GroupCommit | None = field(default=None, repr=False)  # group commit for state writes
    _recalled: dict[str, Any] = field(default_factory=dict, repr=False)
    _changes: list[tuple[str, Any, timedelta]] = field(default_factory=list, repr=False)
    _after_reply: list[Callable[[], Awaitable[Any]]] = field(default_factory=list, repr=False)

    @property
    def settings(self) -> Settings:
        return self.app[SETTINGS]

    async def remember(self, key: str, value: Any, ttl: timedelta | None = None) -> None:
        """Keep ``value`` for this user for ``ttl`` (30 minutes by default). Visible to ``recall``
        at once; stored when the handler has answered (off the reply's path, before the message
        counts as done), so the user's next message sees it."""
        self._recalled[key] = value
        self._changes.append((key, value, ttl or chat_state.DEFAULT_TTL))

    async def recall(self, key: str, default: Any = None) -> Any:
        if key not in self._recalled:  # read once per message, even if a condition and a handler ask
            self._recalled[key] = await chat_state.recall(self.db, self.openid, key)
        value = self._recalled[key]
        return default if value is None else value

    async def forget(self, key: str) -> None:
        await self.remember(key, None)

    def after_reply(self, work: Callable[[], Awaitable[Any]]) -> None:
        """Run ``work()`` once the reply is on its way (bookkeeping nobody waits for: statistics,
        knowledge gaps …); its errors are logged, never shown to the user."""
        self._after_reply.append(work)

    async def save_state(self) -> None:
        """Store what ``remember``/``forget`` changed (the dispatcher calls it after the reply)."""
        if not self._changes:
            return
        latest = {key: (value, ttl) for key, value, ttl in self._changes}  # the last change per key wins
        self._changes = []
        await asyncio.gather(*(chat_state.remember(self.db, self.openid, key, value, ttl, self.group)
                               for key, (value, ttl) in latest.items()))

    async def run_after_reply(self) -> None:
        work, self._after_reply = self._after_reply, []
        for item in work:
            try:
                await item()
            except Exception:
                log.exception("after-reply work failed")


def classify(message: BaseMessage, fields: dict[str, Any]) -> dict[str, Any]:
    """What rules match on: ``kind``, ``text`` (text kinds), ``event`` and ``event_key`` (events)."""
    if str(fields.get("MsgType", "")).strip().lower() == "event":
        # wechatpy refines some events (subscribe with a QR scene → subscribe_scan)
        event = getattr(message, "event", "") or str(fields.get("Event", ""))
        key = fields.get("EventKey")
        return {"kind": "event", "event": event.strip().lower(),
                "event_key": key.strip() if isinstance(key, str) else None}
    if message.type == "text":
        return {"kind": "text", "text": _normalise(getattr(message, "content", None) or "")}
    if message.type == "voice":
        recognition = _normalise(getattr(message, "recognition", None) or "")
        return {"kind": "text", "text": recognition} if recognition else {"kind": "voice"}
    return {"kind": message.type}


def _normalise(text: str) -> str:
    # full-width digits and letters → ASCII, so "１" and "取消预约 ３" match simple patterns
    return unicodedata.normalize("NFKC", text).strip()


Handler = Callable[[ChatContext], Awaitable[Reply]]
Condition = Callable[[ChatContext], Awaitable[bool]]


@dataclass(frozen=True)
class Rule:
    handler: Handler
    kind: str | None = None
    event: str | None = None
    event_key: str | None = None
    pattern: re.Pattern[str] | None = None
    when: Condition | None = None
    name: str = ""

    def matches(self, ctx: ChatContext) -> re.Match[str] | bool:
        """The cheap part of matching (no I/O); ``when`` is awaited by ``route``."""
        if self.kind is not None and ctx.kind != self.kind:
            return False
        if self.event is not None and ctx.event != self.event:
            return False
        if self.event_key is not None and ctx.event_key != self.event_key:
            return False
        if self.pattern is not None:
            return self.pattern.search(ctx.text or "") or False
        return True


def on_text(pattern: str | re.Pattern[str], handler: Handler, *, when: Condition | None = None,
            name: str = "") -> Rule:
    """Text (or recognised voice) whose normalised text matches ``pattern`` (``re.search``)."""
    compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
    return Rule(handler, kind="text", pattern=compiled, when=when, name=name or f"text {compiled.pattern}")


# What may surround a typed command without changing it: a polite lead-in, a particle, punctuation.
_LEAD = r"(?:请|麻烦|帮我|我要|我想|我想要|想)?(?:查一下|查查|看一下|看看|查看)?"
_TAIL = r"(?:一下)?(?:吧|呀|啊|呢|哈|的)?[\s。．.！!？?~～…,，]*"


def phrases_pattern(phrases: tuple[str, ...] | list[str]) -> re.Pattern[str]:
    """An anchored pattern matching exactly one of ``phrases`` (case-insensitive), optionally with a
    polite lead-in ("请", "帮我", "我要") and a closing particle or punctuation: "查看预约", "帮我查看预约吧！"."""
    alternatives = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"^{_LEAD}(?:{alternatives}){_TAIL}$", re.IGNORECASE)


def on_phrases(phrases: tuple[str, ...] | list[str], handler: Handler, *, when: Condition | None = None,
               name: str = "") -> Rule:
    """Text that is one of ``phrases`` (see ``phrases_pattern``): a typed command, not a question."""
    return on_text(phrases_pattern(phrases), handler, when=when, name=name or f"phrases {phrases[0]}")


def on_click(key: str, handler: Handler, *, name: str = "") -> Rule:
    """A click on the custom-menu button with EventKey ``key``."""
    return Rule(handler, kind="event", event="click", event_key=key, name=name or f"click {key}")


def on_event(event: str, handler: Handler, *, key: str | None = None, name: str = "") -> Rule:
    """An event by its lower-case name (``subscribe``, ``subscribe_msg_popup_event`` …)."""
    return Rule(handler, kind="event", event=event.lower(), event_key=key, name=name or f"event {event}")


def on_kind(kind: str, handler: Handler, *, when: Condition | None = None, name: str = "") -> Rule:
    """Any message of a kind: ``text``, ``voice`` (unrecognised), ``image``, ``location``, ``event`` …"""
    return Rule(handler, kind=kind, when=when, name=name or f"kind {kind}")


def otherwise(handler: Handler) -> Rule:
    return Rule(handler, name="otherwise")


async def route(rules: list[Rule], ctx: ChatContext) -> Reply:
    """Run the first matching rule's handler; None when no rule matches."""
    for rule in rules:
        matched = rule.matches(ctx)
        if matched is False:
            continue
        if rule.when is not None and not await rule.when(ctx):
            continue
        ctx.match = matched if isinstance(matched, re.Match) else None
        return await rule.handler(ctx)
    return None


def fit_text(text: str, max_bytes: int = 2000, ellipsis: str = "……") -> str:
    """Cut ``text`` to WeChat's text-message size (about 2048 bytes of UTF-8) on a character boundary."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    room = max_bytes - len(ellipsis.encode("utf-8"))
    return encoded[:room].decode("utf-8", "ignore") + ellipsis
