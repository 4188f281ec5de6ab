"""The outbox dispatcher against the fake WeChat API, with injected faults."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from prometheus_client import REGISTRY

from bot.config import Settings
from bot.notify import grants, outbox
from bot.notify.dispatcher import Dispatcher, DispatchPolicy, backoff, outbox_stats_job
from bot.notify.templates import SAMPLE_PAYLOADS, TemplateBook
from bot.wechat import users
from bot.wechat.api import WeChatClient
from tests.fakes.wechat_api import CUSTOM_SEND, SUBSCRIBE_SEND, FakeWeChat

TEMPLATE = "TPL-SETTLEMENT"
OPENID = "resident-a"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(seconds=5)  # what the test enqueues is due

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def wechat(http, db, settings: Settings, fake_wechat: FakeWeChat) -> WeChatClient:
    configured = dataclasses.replace(settings, wechat_api_base=fake_wechat.base_url,
                                     wechat_app_id=fake_wechat.app_id, wechat_app_secret=fake_wechat.secret)
    return WeChatClient(http, db, configured, timeout=0.3)


@pytest.fixture
def book() -> TemplateBook:
    return TemplateBook.load(template_ids=f"settlement_status={TEMPLATE}")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_dispatcher(db, wechat, book, clock, **policy) -> Dispatcher:
    defaults = {"retry_base": timedelta(seconds=1), "lease": timedelta(seconds=30), "concurrency": 8}
    return Dispatcher(db, wechat, book, DispatchPolicy(**{**defaults, **policy}), clock=clock)


async def notify(db, openid: str = OPENID, n: int = 1, **payload) -> list:
    for i in range(n):
        await outbox.enqueue(db, kind="settlement_status", openid=openid,
                             payload={**SAMPLE_PAYLOADS["settlement_status"], "settlement_id": f"JS-{i}", **payload})
    return await db.notifications.find({"openid": openid}).to_list()


async def with_grant(db, fake: FakeWeChat, openid: str = OPENID, ours: int = 1, theirs: int = 1) -> None:
    if ours:
        await grants.add_grant(db, openid, TEMPLATE, ours)
    if theirs:
        fake.grant(openid, TEMPLATE, theirs)


async def in_window(db, fake: FakeWeChat | None, openid: str = OPENID) -> None:
    await users.record_interaction(db, openid, opens_window=True)
    if fake is not None:
        fake.open_window(openid)


async def only(db) -> dict:
    documents = await db.notifications.find({}).to_list()
    assert len(documents) == 1
    return documents[0]


async def test_subscribe_message_when_a_grant_is_left(db, wechat, book, clock, fake_wechat):
    await with_grant(db, fake_wechat)
    await in_window(db, fake_wechat)
    await notify(db)
    stats = await make_dispatcher(db, wechat, book, clock).run()
    assert stats.sent == {"subscribe": 1}
    document = await only(db)
    assert document["status"] == "sent" and document["channel"] == "subscribe" and document["attempts"] == 1
    [sent] = fake_wechat.sent
    assert sent["kind"] == "subscribe" and sent["template_id"] == TEMPLATE
    assert sent["data"]["phrase2"] == "待补材料" and sent["data"]["amount3"] == "12345.67元"
    assert sent["page"] == "pages/settlement/detail?id=JS-0"
    assert await grants.available(db, OPENID, TEMPLATE) == 0
    assert await db.inbox.count_documents({"_id": document["_id"]}) == 1  # the inbox has a copy anyway


async def test_customer_service_message_inside_the_window(db, wechat, book, clock, fake_wechat):
    await in_window(db, fake_wechat)
    await notify(db)
    await make_dispatcher(db, wechat, book, clock).run()
    assert (await only(db))["channel"] == "customer_service"
    [sent] = fake_wechat.sent
    assert sent["kind"] == "custom" and "结算状态：待补材料；总费用 12,345.67 元" in sent["text"]


async def test_inbox_only_outside_the_window_and_without_grant(db, wechat, book, clock, fake_wechat):
    await notify(db)
    stats = await make_dispatcher(db, wechat, book, clock).run()
    assert stats.sent == {"inbox": 1} and fake_wechat.sent == []
    document = await only(db)
    assert document["channel"] == "inbox" and document["last_error"] is None
    entry = await db.inbox.find_one({"_id": document["_id"]})
    assert entry["openid"] == OPENID and entry["title"] == "结算进度通知" and entry["read_at"] is None


async def test_43101_falls_back_to_customer_service(db, wechat, book, clock, fake_wechat):
    await with_grant(db, fake_wechat, theirs=0)  # we believe in a grant WeChat does not have
    await in_window(db, fake_wechat)
    await notify(db)
    await make_dispatcher(db, wechat, book, clock).run()
    document = await only(db)
    assert document["channel"] == "customer_service" and "subscribe: 43101" in document["last_error"]
    assert await grants.available(db, OPENID, TEMPLATE) == 0  # 43101: there was nothing to give back
    assert [s["kind"] for s in fake_wechat.sent] == ["custom"]


async def test_43101_then_45015_ends_in_the_inbox(db, wechat, book, clock, fake_wechat):
    await with_grant(db, fake_wechat, theirs=0)
    await in_window(db, None)  # our record says inside the window, WeChat says otherwise
    await notify(db)
    await make_dispatcher(db, wechat, book, clock).run()
    document = await only(db)
    assert document["status"] == "sent" and document["channel"] == "inbox"
    assert "subscribe: 43101" in document["last_error"] and "customer_service: 45015" in document["last_error"]
    assert fake_wechat.sent == [] and await db.inbox.count_documents({}) == 1


async def test_45015_goes_to_the_inbox(db, wechat, book, clock, fake_wechat):
    await in_window(db, None)
    await notify(db)
    await make_dispatcher(db, wechat, book, clock).run()
    document = await only(db)
    assert document["channel"] == "inbox" and "45015" in document["last_error"]


async def test_other_permanent_error_returns_the_grant(db, wechat, book, clock, fake_wechat):
    await with_grant(db, fake_wechat)
    fake_wechat.fail_next(SUBSCRIBE_SEND, [47003])
    await notify(db)
    await make_dispatcher(db, wechat, book, clock).run()
    assert (await only(db))["channel"] == "inbox"
    assert await grants.available(db, OPENID, TEMPLATE) == 1  # WeChat did not use it


@pytest.mark.parametrize("fault", [-1, 45009, "http:502"])
async def test_transient_errors_are_retried_with_backoff(db, wechat, book, clock, fake_wechat, fault):
    await with_grant(db, fake_wechat)
    fake_wechat.fail_next(SUBSCRIBE_SEND, [fault])
    await notify(db)
    dispatcher = make_dispatcher(db, wechat, book, clock)
    stats = await dispatcher.run()
    assert stats.retried == 1 and fake_wechat.sent == []
    document = await only(db)
    assert document["status"] == "pending" and document["attempts"] == 1
    assert document["due_at"] > clock.now and document["last_error"].startswith("subscribe:")
    assert await grants.available(db, OPENID, TEMPLATE) == 0  # the notification keeps its grant for the retry
    grant = await db.subscription_grants.find_one({"openid": OPENID})
    assert grant["holders"] == [str(document["_id"])]
    assert (await dispatcher.run()).claimed == 0  # not due yet
    clock.advance(seconds=2)
    await dispatcher.run()
    document = await only(db)
    assert document["status"] == "sent" and document["channel"] == "subscribe" and document["attempts"] == 2
    assert len(fake_wechat.sent) == 1 and await grants.available(db, OPENID, TEMPLATE) == 0


async def test_transient_error_of_customer_service_is_retried(db, wechat, book, clock, fake_wechat):
    await in_window(db, fake_wechat)
    fake_wechat.fail_next(CUSTOM_SEND, [45009])
    await notify(db)
    dispatcher = make_dispatcher(db, wechat, book, clock)
    await dispatcher.run()
    assert (await only(db))["status"] == "pending"
    clock.advance(seconds=2)
    await dispatcher.run()
    assert (await only(db))["channel"] == "customer_service" and len(fake_wechat.sent) == 1


async def test_40001_refreshes_the_token_and_succeeds(db, wechat, book, clock, fake_wechat):
    await with_grant(db, fake_wechat)
    await wechat.access_token()
    fake_wechat.fail_next(SUBSCRIBE_SEND, [40001])
    await notify(db)
    stats = await make_dispatcher(db, wechat, book, clock).run()
    assert stats.sent == {"subscribe": 1} and stats.retried == 0
    assert fake_wechat.stable_token_calls == 2 and len(fake_wechat.sent) == 1


async def test_timeout_is_retried_and_is_the_documented_ambiguity(db, wechat, book, clock, fake_wechat):
    await with_grant(db, fake_wechat, ours=1, theirs=2)
    fake_wechat.delay[SUBSCRIBE_SEND] = 0.6  # longer than the client's 0.3 s time-out
    await notify(db)
    dispatcher = make_dispatcher(db, wechat, book, clock)
    await dispatcher.run()
    document = await only(db)
    assert document["status"] == "pending" and "timed out" in document["last_error"]
    fake_wechat.delay.clear()
    clock.advance(seconds=2)
    await dispatcher.run()
    assert (await only(db))["channel"] == "subscribe"
    # WeChat (the fake) still processed the request that timed out: a time-out may have been
    # delivered, and the retry repeats it -- the window documented in bot/notify/dispatcher.py
    for _ in range(40):
        if len(fake_wechat.sent) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(fake_wechat.sent) == 2


async def test_retries_end_failed_with_the_reason_and_the_inbox_copy_stays(db, wechat, book, clock, fake_wechat):
    await in_window(db, fake_wechat)
    fake_wechat.fail_next(CUSTOM_SEND, [-1, -1, -1])
    await notify(db)
    dispatcher = make_dispatcher(db, wechat, book, clock, max_attempts=3)
    for _ in range(3):
        await dispatcher.run()
        clock.advance(seconds=10)
    document = await only(db)
    assert document["status"] == "failed" and document["attempts"] == 3
    assert document["last_error"] == "customer_service: -1 system error (injected) rid: fake"
    assert await db.inbox.count_documents({"_id": document["_id"]}) == 1
    assert (await dispatcher.run()).claimed == 0


async def test_expired_lease_is_reclaimed_and_live_lease_is_left_alone(db, wechat, book, clock, fake_wechat):
    await in_window(db, fake_wechat)
    ids = [d["_id"] for d in await notify(db, n=2)]
    for notification_id, holder, lease in ((ids[0], "crashed", -1), (ids[1], "busy", 60)):
        await db.notifications.update_one({"_id": notification_id}, {"$set": {
            "status": "sending", "claimed_by": holder, "claim_token": holder,
            "lease_until": clock.now + timedelta(seconds=lease)}})
    before = REGISTRY.get_sample_value("outbox_claims_total", {"source": "reclaimed"}) or 0
    stats = await make_dispatcher(db, wechat, book, clock).run()
    assert stats.claimed == 1
    assert (await db.notifications.find_one({"_id": ids[0]}))["status"] == "sent"
    assert (await db.notifications.find_one({"_id": ids[1]}))["status"] == "sending"
    assert REGISTRY.get_sample_value("outbox_claims_total", {"source": "reclaimed"}) == before + 1


async def test_reclaimed_notification_sends_with_the_grant_it_holds(db, wechat, book, clock, fake_wechat):
    """A worker died after taking the grant for a notification and before sending it."""
    await with_grant(db, fake_wechat, ours=1, theirs=1)
    [document] = await notify(db)
    dead = make_dispatcher(db, wechat, book, clock)
    dead.holder = "dead-instance"
    assert len(await dead._claim([(document["_id"], "due")])) == 1
    assert await grants.hold_grant(db, OPENID, TEMPLATE, str(document["_id"]))
    assert await grants.available(db, OPENID, TEMPLATE) == 0
    clock.advance(minutes=1)  # its lease runs out
    await make_dispatcher(db, wechat, book, clock).run()
    document = await only(db)
    assert document["channel"] == "subscribe" and document["attempts"] == 2
    assert len(fake_wechat.sent) == 1 and await grants.available(db, OPENID, TEMPLATE) == 0


async def test_holding_grants_for_a_batch(db):
    """``hold_grants`` answers which holders hold a grant: all of them in one write when each
    could take one; otherwise it reads back and leaves out those with none left."""
    for openid in ("a", "b", "c"):
        await grants.add_grant(db, openid, TEMPLATE)
    await grants.add_grant(db, "a", TEMPLATE)
    assert await grants.hold_grants(db, [("a", TEMPLATE, "n1"), ("b", TEMPLATE, "n2")]) == {"n1", "n2"}
    held = await grants.hold_grants(db, [("a", TEMPLATE, "n0"), ("b", TEMPLATE, "n3"), ("c", TEMPLATE, "n4")])
    assert held == {"n0", "n4"}  # b has no grant left for n3
    assert [await grants.available(db, o, TEMPLATE) for o in ("a", "b", "c")] == [0, 0, 0]
    await grants.add_grant(db, "a", "TPL-OTHER", 2)
    await grants.add_grant(db, "d", TEMPLATE)
    assert await grants.hold_grants(db, [("a", "TPL-OTHER", "n5"), ("d", TEMPLATE, "n6")]) == {"n5", "n6"}
    assert await grants.available(db, "a", "TPL-OTHER") == 1 and await grants.available(db, "d", TEMPLATE) == 0
    assert (await db.subscription_grants.find_one({"openid": "a", "template_id": TEMPLATE}))["holders"] == ["n1", "n0"]


async def test_retries_exhausted_give_the_held_grant_back(db, wechat, book, clock, fake_wechat):
    await with_grant(db, fake_wechat)
    fake_wechat.fail_next(SUBSCRIBE_SEND, [-1, -1])
    await notify(db)
    dispatcher = make_dispatcher(db, wechat, book, clock, max_attempts=2)
    await dispatcher.run()
    clock.advance(seconds=10)
    await dispatcher.run()
    assert (await only(db))["status"] == "failed"
    assert await grants.available(db, OPENID, TEMPLATE) == 1


async def test_concurrent_dispatchers_send_each_notification_once(db, wechat, book, clock, fake_wechat):
    openids = [f"resident-{i}" for i in range(120)]
    for openid in openids:
        await in_window(db, fake_wechat, openid)
        await notify(db, openid)
    first = make_dispatcher(db, wechat, book, clock, concurrency=16)
    second = Dispatcher(db, wechat, book, first.policy, holder="second-instance", clock=clock)
    a, b = await asyncio.gather(first.run(), second.run())
    assert a.claimed + b.claimed == 120 and a.claimed and b.claimed
    assert sorted(s["openid"] for s in fake_wechat.sent) == sorted(openids)
    assert await db.notifications.count_documents({"status": "sent"}) == 120
    assert await db.inbox.count_documents({}) == 120


async def test_future_and_cancelled_notifications_wait(db, wechat, book, clock, fake_wechat):
    await outbox.enqueue(db, kind="booking_reminder", openid=OPENID, due_at=clock.now + timedelta(hours=2),
                         payload=SAMPLE_PAYLOADS["booking"], key="reminder:b-1:2h")
    await outbox.enqueue(db, kind="booking_reminder", openid=OPENID, due_at=clock.now, key="reminder:b-2:2h",
                         payload=SAMPLE_PAYLOADS["booking"])
    await outbox.cancel(db, "reminder:b-2:2h")
    dispatcher = make_dispatcher(db, wechat, book, clock)
    assert (await dispatcher.run()).claimed == 0
    clock.advance(hours=2)
    assert (await dispatcher.run()).sent == {"inbox": 1}
    entry = await db.inbox.find_one({})
    assert entry["title"] == "预约提醒" and "明天就要开始了" in entry["text"]


async def test_without_wechat_everything_goes_to_the_inbox(db, book, clock):
    await in_window(db, None)
    await notify(db, n=3)
    stats = await make_dispatcher(db, None, book, clock).run()
    assert stats.sent == {"inbox": 3}


async def test_outbox_gauges(db, client):
    await notify(db, n=2)
    await outbox_stats_job(client.app)
    assert REGISTRY.get_sample_value("outbox_depth", {"status": "pending"}) == 2
    assert REGISTRY.get_sample_value("outbox_oldest_pending_age_seconds") >= 0


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    base, cap = timedelta(seconds=10), timedelta(minutes=5)
    assert backoff(1, base, cap, rand=lambda: 0.0) == timedelta(seconds=5)
    assert backoff(1, base, cap, rand=lambda: 1.0) == timedelta(seconds=10)
    assert backoff(3, base, cap, rand=lambda: 1.0) == timedelta(seconds=40)
    assert backoff(20, base, cap, rand=lambda: 1.0) == cap
