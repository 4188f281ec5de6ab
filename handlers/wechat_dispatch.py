"""From a parsed callback message to the reply, under WeChat's rules:

- each message is processed once across instances (``bot.wechat_dedupe``); a retried or concurrent
  delivery waits for the first one's stored reply and answers the same;
- the handler runs in its own task; if it is not done after ``reply_timeout`` (4 s by default,
  ``WECHAT_REPLY_TIMEOUT_MS``) the delivery answers ``success`` and, when the handler finishes, its
  reply goes out as a customer-service message (failures are logged);
- a handler that raises gets an apology as its reply, never an HTTP error.

``chat_context`` (an aiohttp cleanup context) holds the dispatcher and lets background handlers
finish at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from prometheus_client import Counter
from wechatpy.messages import BaseMessage

from bot import users
from bot import wechat_dedupe as dedupe
from bot.keys import CHAT, DB, SETTINGS, WECHAT
from bot.wechat_api import WeChatError
from handlers.wechat_router import TRANSFER, ChatContext, Reply, Rule, classify, fit_text, route

log = logging.getLogger(__name__)

SORRY = "抱歉，系统暂时繁忙，请稍后再试，或拨打 12393 医保服务热线咨询。"
# Events after which WeChat allows customer-service messages (like a user message).
WINDOW_EVENTS = frozenset({"subscribe", "subscribe_scan", "scan", "click", "scancode_push", "scancode_waitmsg"})
SHUTDOWN_GRACE_SECONDS = 5.0

CHAT_MESSAGES = Counter("wechat_chat_messages_total", "Chat deliveries by kind and outcome", ["kind", "outcome"])


def stored_reply(reply: Reply) -> dict[str, Any]:
    if reply is None or reply == "":
        return dedupe.EMPTY
    if reply is TRANSFER:
        return {"type": "transfer"}
    return {"type": "text", "content": fit_text(str(reply))}


class ChatDispatcher:
    def __init__(self, app: web.Application, rules: Callable[[], list[Rule]], reply_timeout: float) -> None:
        self.app = app
        self.rules = rules
        self.reply_timeout = reply_timeout
        self._tasks: set[asyncio.Task[Any]] = set()

    async def respond(self, fields: dict[str, Any], message: BaseMessage) -> dict[str, Any]:
        """The stored-reply dict for this delivery (see ``bot.wechat_dedupe``)."""
        db = self.app[DB]
        key = dedupe.key_for(fields)
        facts = classify(message, fields)
        if not await dedupe.claim(db, key):
            CHAT_MESSAGES.labels(facts["kind"], "duplicate").inc()
            return await dedupe.wait_for_reply(db, key, self.reply_timeout) or dedupe.EMPTY
        task = asyncio.create_task(self._process(key, fields, message, facts))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        try:
            reply = await asyncio.wait_for(asyncio.shield(task), self.reply_timeout)
        except TimeoutError:
            finished = await dedupe.mark_late(db, key)
            if finished is not None:
                return finished  # it finished just as the deadline passed
            CHAT_MESSAGES.labels(facts["kind"], "late").inc()
            log.warning("chat reply late; answering success now", extra={"kind": facts["kind"]})
            return dedupe.EMPTY
        CHAT_MESSAGES.labels(facts["kind"], "replied").inc()
        return reply

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # retrieved here, so never lost
            log.error("chat processing failed", exc_info=task.exception())

    async def _process(
        self, key: str, fields: dict[str, Any], message: BaseMessage, facts: dict[str, Any]
    ) -> dict[str, Any]:
        db = self.app[DB]
        openid = fields["FromUserName"]
        event = facts.get("event")
        subscribed = {"subscribe": True, "subscribe_scan": True, "unsubscribe": False}.get(event or "")
        try:
            await users.record_interaction(
                db, openid, opens_window=facts["kind"] != "event" or event in WINDOW_EVENTS, subscribed=subscribed
            )
            ctx = ChatContext(app=self.app, db=db, openid=openid, message=message, fields=fields, **facts)
            reply = stored_reply(await route(self.rules(), ctx))
        except Exception:
            log.exception("chat handler failed", extra={"kind": facts["kind"], "event": event})
            reply = {"type": "text", "content": SORRY}
        if await dedupe.finish(db, key, reply):
            return reply
        await self._deliver_late(key, openid, reply)
        return reply

    async def _deliver_late(self, key: str, openid: str, reply: dict[str, Any]) -> None:
        if reply["type"] != "text":
            await dedupe.note_late_delivery(self.app[DB], key, "nothing to send")
            return
        try:
            await self.app[WECHAT].send_custom_text(openid, reply["content"])
            outcome = "sent"
        except WeChatError as exc:
            outcome = f"failed {exc.errcode}"
            log.warning("late chat reply not delivered",
                        extra={"errcode": exc.errcode, "errmsg": exc.errmsg, "transient": exc.transient})
        await dedupe.note_late_delivery(self.app[DB], key, outcome)

    async def drain(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Let running handlers finish (and send late replies), then cancel the rest."""
        pending = set(self._tasks)
        if not pending:
            return
        _, still_running = await asyncio.wait(pending, timeout=grace)
        for task in still_running:
            task.cancel()
        await asyncio.gather(*still_running, return_exceptions=True)


async def chat_context(app: web.Application) -> AsyncIterator[None]:
    from handlers.wechat_rules import rules

    dispatcher = ChatDispatcher(app, rules, app[SETTINGS].wechat_reply_timeout_ms / 1000)
    app[CHAT] = dispatcher
    yield
    await dispatcher.drain()
