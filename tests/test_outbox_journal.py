"""The acceptance journal (a crashed dispatcher's deliveries are not sent again) and the graceful
stop of the dispatch job at shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from datetime import UTC, datetime, timedelta

import aiohttp
from aiohttp import web

from bot.keys import DB, SETTINGS
from bot.notify import outbox
from bot.notify.dispatcher import DISPATCH, Dispatcher, DispatchPolicy, dispatch_context, dispatch_job
from bot.notify.journal import AcceptanceJournal
from bot.notify.templates import SAMPLE_PAYLOADS, TEMPLATES, TemplateBook
from bot.wechat import users
from bot.wechat.api import WECHAT, WeChatClient
from tests.fakes.wechat_api import CUSTOM_SEND

PAYLOAD = SAMPLE_PAYLOADS["settlement_status"]


async def sending_notification(db, holder: str) -> dict:
    await outbox.enqueue(db, kind="settlement_status", openid="resident-j", payload=PAYLOAD)
    await db.notifications.update_one({}, {"$set": {
        "status": "sending", "claimed_by": holder, "claim_token": holder,
        "lease_until": datetime.now(UTC) - timedelta(seconds=1)}})
    return await db.notifications.find_one({})


async def test_a_dead_dispatchers_journal_is_replayed_instead_of_sending_again(db, tmp_path, fake_wechat):
    await users.record_interaction(db, "resident-j", opens_window=True)
    fake_wechat.open_window("resident-j")
    document = await sending_notification(db, "dead")
    dead = AcceptanceJournal(tmp_path, "host:dead")
    dead.accepted(document["_id"], "customer_service")  # WeChat accepted; the database never heard
    os.close(dead.fd)  # the process died: its lock is gone, its file stays

    alive = AcceptanceJournal(tmp_path, "host:alive")
    stats = await Dispatcher(db, None, TemplateBook.load(), journal=alive).run()
    assert stats.claimed == 0 and fake_wechat.sent == []
    recovered = await db.notifications.find_one({"_id": document["_id"]})
    assert recovered["status"] == "sent" and recovered["channel"] == "customer_service"
    assert "journal" in recovered["last_error"]
    assert not dead.path.exists() and alive.path.exists()
    alive.close()
    assert not alive.path.exists()


async def test_a_live_dispatchers_journal_is_left_alone(db, tmp_path):
    document = await sending_notification(db, "other")
    other = AcceptanceJournal(tmp_path, "host:other")  # alive: holds its lock
    other.accepted(document["_id"], "subscribe")
    mine = AcceptanceJournal(tmp_path, "host:mine")
    assert await mine.replay(db.notifications) == 0
    assert other.path.exists()
    other.close()
    mine.close()


async def test_shutdown_lets_the_running_dispatch_finish_its_sends(db, settings, tmp_path, fake_wechat):
    await users.record_interaction(db, "resident-j", opens_window=True)
    fake_wechat.open_window("resident-j")
    fake_wechat.delay[CUSTOM_SEND] = 0.3
    await outbox.enqueue(db, kind="settlement_status", openid="resident-j", payload=PAYLOAD)
    async with aiohttp.ClientSession() as http:
        configured = dataclasses.replace(settings, wechat_api_base=fake_wechat.base_url, data_dir=tmp_path,
                                         wechat_app_id=fake_wechat.app_id, wechat_app_secret=fake_wechat.secret)
        app = web.Application()
        app[SETTINGS], app[DB], app[TEMPLATES] = configured, db, TemplateBook.load()
        app[WECHAT] = WeChatClient(http, db, configured)
        context = dispatch_context(app)
        await context.__anext__()
        job = asyncio.create_task(dispatch_job(app))
        for _ in range(100):  # until the send is in flight
            if fake_wechat.requests and fake_wechat.requests[-1]["path"] == CUSTOM_SEND:
                break
            await asyncio.sleep(0.01)
        try:
            await context.__anext__()  # shutdown: waits for the run to finish its send
        except StopAsyncIteration:
            pass
        assert job.done()
        assert app[DISPATCH].stopping.is_set()
    document = await db.notifications.find_one({})
    assert document["status"] == "sent" and document["channel"] == "customer_service"
    assert len(fake_wechat.sent) == 1


async def test_stopped_dispatcher_claims_nothing(db):
    await outbox.enqueue(db, kind="settlement_status", openid="r", payload=SAMPLE_PAYLOADS["settlement_status"])
    stopping = asyncio.Event()
    stopping.set()
    stats = await Dispatcher(db, None, TemplateBook.load(), DispatchPolicy(), stopping=stopping).run()
    assert stats.claimed == 0
