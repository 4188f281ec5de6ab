"""From a parsed callback message to the reply, under WeChat's rules:

- each message is processed once across instances (``bot.wechat.dedupe``); a retried or concurrent
  delivery waits for the first one's stored reply and answers the same;
- the handler runs in its own task; if it is not done after ``reply_timeout`` (4 s by default,
  ``WECHAT_REPLY_TIMEOUT_MS``) the delivery answers ``success`` and, when the handler finishes, its
  reply goes out as a customer-service message (failures are logged);
- the request answers as soon as the handler has; the stored outcome (for retries) and the
  conversation state are written right after, group-committed, and the same user's next message
  waits for them on this instance. Retries that arrive meanwhile wait for the stored outcome;
- a handler that raises gets an apology as its reply, never an HTTP error.

``chat_context`` (an aiohttp cleanup context) holds the dispatcher and lets background handlers
finish at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import Counter
from wechatpy.messages import BaseMessage

from bot.chat.router import TRANSFER, ChatContext, Reply, Rule, classify, fit_text, route
from bot.group_commit import GroupCommit
from bot.keys import DB, SETTINGS
from bot.wechat import dedupe, users
from bot.wechat.api import WECHAT, WeChatError

log = logging.getLogger(__name__)

SORRY = "抱歉，系统暂时繁忙，请稍后再试，或拨打 12393 医保服务热线咨询。"
# Events after which WeChat allows customer-service messages (like a user message).
WINDOW_EVENTS = frozenset({"subscribe", "subscribe_scan", "subscribe_scan_product", "scan", "click",
                           "scancode_push", "scancode_waitmsg"})
# Follows: wechatpy names a follow through a QR scene ``subscribe_scan`` and one through scanning a
# product barcode or image (EventKey ``scanbarcode|…``/``scanimage|…``) ``subscribe_scan_product``.
SUBSCRIPTION_CHANGES = {"subscribe": True, "subscribe_scan": True, "subscribe_scan_product": True,
                        "unsubscribe": False}
# Events the rules see under another name: a product-scan follow is welcomed like any follow.
EVENT_ALIASES = {"subscribe_scan_product": "subscribe"}
SHUTDOWN_GRACE_SECONDS = 5.0
USER_WRITE_INTERVAL = 60.0  # seconds; see ChatDispatcher._record_user
RECORDED_USERS_LIMIT = 100_000
PREVIOUS_MESSAGE_WAIT = 2.0  # seconds a user's message waits for their previous message's writes

CHAT_MESSAGES = Counter("wechat_chat_messages_total", "Chat deliveries by kind and outcome", ["kind", "outcome"])


def stored_reply(reply: Reply) -> dict[str, Any]:
    if reply is None or reply == "":
        return dedupe.EMPTY
    if reply is TRANSFER:
        return {"type": "transfer"}
    return {"type": "text", "content": fit_text(str(reply))}


@dataclass
class _Delivery:
    """What the request and its handler task share; both run on one event loop, so checking and
    setting these fields without an ``await`` in between cannot interleave."""

    ready: asyncio.Future[dict[str, Any]]  # the reply, as soon as the handler has answered
    late: bool = False  # set by the request when the deadline passed first


def _expire(delivery: _Delivery) -> None:
    if not delivery.ready.done():
        delivery.late = True
        delivery.ready.set_result(dedupe.EMPTY)


class ChatDispatcher:
    def __init__(self, app: web.Application, rules: Callable[[], list[Rule]], reply_timeout: float) -> None:
        self.app = app
        self.rules = rules
        self.reply_timeout = reply_timeout
        # Claims are on the reply's path and linger at most 2 ms under load; the user record, the
        # stored outcome and the conversation state are written after the reply and may gather longer.
        self.group = GroupCommit(app[DB], linger=0.002, busy_window=0.02)
        self.background = GroupCommit(app[DB], linger=0.05, busy_window=0.5)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._recorded: dict[str, float] = {}  # openid -> when this instance last stored a message time
        self._saving: dict[str, asyncio.Future[None]] = {}  # openid -> its last message's writes

    async def respond(self, fields: dict[str, Any], message: BaseMessage,
                      nonce: tuple[str, str, str] | None = None) -> dict[str, Any]:
        """The stored-reply dict for this delivery (see ``bot.wechat.dedupe``). ``nonce``: the
        plain-mode request's (timestamp, nonce, body digest); ``dedupe.ReplayedError`` when that
        pair was already used with another body."""
        db = self.app[DB]
        key = dedupe.key_for(fields)
        facts = classify(message, fields)
        if not await dedupe.claim(db, key, self.group, nonce):
            CHAT_MESSAGES.labels(facts["kind"], "duplicate").inc()
            return await dedupe.wait_for_reply(db, key, self.reply_timeout) or dedupe.EMPTY
        loop = asyncio.get_running_loop()
        delivery = _Delivery(loop.create_future())
        task = loop.create_task(self._process(key, fields, message, facts, delivery))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        # the deadline resolves ``ready`` as late unless the handler has answered first (one timer,
        # no extra task: cheaper than wait_for on the hot path)
        deadline = loop.call_later(self.reply_timeout, _expire, delivery)
        try:
            reply = await asyncio.shield(delivery.ready)
        finally:
            deadline.cancel()
        if delivery.late:
            CHAT_MESSAGES.labels(facts["kind"], "late").inc()
            log.warning("chat reply late; answering success now", extra={"kind": facts["kind"]})
            await dedupe.mark_late(db, key, self.group)
            return dedupe.EMPTY
        CHAT_MESSAGES.labels(facts["kind"], "replied").inc()
        return reply

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # retrieved here, so never lost
            log.error("chat processing failed", exc_info=task.exception())

    async def _process(
        self, key: str, fields: dict[str, Any], message: BaseMessage, facts: dict[str, Any], delivery: _Delivery
    ) -> None:
        db = self.app[DB]
        openid = fields["FromUserName"]
        event = facts.get("event")
        subscribed = SUBSCRIPTION_CHANGES.get(event or "")
        if event in EVENT_ALIASES:
            facts = {**facts, "event": EVENT_ALIASES[event]}
        # One user's messages follow each other: wait (briefly) until the previous one's state is stored.
        previous = self._saving.get(openid)
        if previous is not None and not previous.done():
            await asyncio.wait({previous}, timeout=PREVIOUS_MESSAGE_WAIT)
        saved: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._saving[openid] = saved
        ctx: ChatContext | None = None
        try:
            try:
                ctx = ChatContext(app=self.app, db=db, openid=openid, message=message, fields=fields,
                                  group=self.background, **facts)
                reply = stored_reply(await route(self.rules(), ctx))
            except Exception:
                log.exception("chat handler failed", extra={"kind": facts["kind"], "event": event})
                reply = {"type": "text", "content": SORRY}
            late = delivery.late
            if not late:
                delivery.ready.set_result(reply)  # the request answers now; the writes below follow
            # independent writes, each group-committed with other messages' writes: start them together
            writes = [self._record_user(openid, facts["kind"] != "event" or event in WINDOW_EVENTS, subscribed)]
            if ctx is not None:
                writes += [ctx.save_state(), ctx.run_after_reply()]
            if not late:
                writes.append(dedupe.finish(db, key, reply, self.background))
            await asyncio.gather(*writes)
        finally:
            saved.set_result(None)
            if self._saving.get(openid) is saved:
                del self._saving[openid]
        if late:
            await self._deliver_late(key, openid, reply)

    async def _record_user(self, openid: str, opens_window: bool, subscribed: bool | None) -> None:
        """Store the user's interaction, at most once a ``USER_WRITE_INTERVAL`` per user and instance
        unless it changes the subscription: a conversation of several messages costs one write, and
        the stored ``last_message_at`` is never more than that interval behind (so the 48-hour window
        is judged slightly early, never late)."""
        now = time.monotonic()
        last = self._recorded.get(openid)
        if subscribed is None and last is not None and now - last < USER_WRITE_INTERVAL:
            return
        # a user this instance has not recorded is tried as a new one (an insert, cheaper than an upsert)
        await users.record_interaction(self.app[DB], openid, opens_window=opens_window, subscribed=subscribed,
                                       group=self.background, new=last is None)
        if opens_window:
            if len(self._recorded) >= RECORDED_USERS_LIMIT:
                self._recorded.clear()
            self._recorded[openid] = now

    async def _deliver_late(self, key: str, openid: str, reply: dict[str, Any]) -> None:
        if reply["type"] != "text":
            await dedupe.note_late_delivery(self.app[DB], key, reply, "nothing to send")
            return
        try:
            await self.app[WECHAT].send_custom_text(openid, reply["content"])
            outcome = "sent"
        except WeChatError as exc:
            outcome = f"failed {exc.errcode}"
            log.warning("late chat reply not delivered",
                        extra={"errcode": exc.errcode, "errmsg": exc.errmsg, "transient": exc.transient})
        await dedupe.note_late_delivery(self.app[DB], key, reply, outcome)

    async def drain(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Let running handlers finish (and send late replies), then cancel the rest."""
        pending = set(self._tasks)
        if not pending:
            return
        _, still_running = await asyncio.wait(pending, timeout=grace)
        for task in still_running:
            task.cancel()
        await asyncio.gather(*still_running, return_exceptions=True)


CHAT: web.AppKey[ChatDispatcher] = web.AppKey("chat")


async def chat_context(app: web.Application) -> AsyncIterator[None]:
    from bot.chat.rules import rules

    dispatcher = ChatDispatcher(app, rules, app[SETTINGS].wechat_reply_timeout_ms / 1000)
    app[CHAT] = dispatcher
    yield
    await dispatcher.drain()
