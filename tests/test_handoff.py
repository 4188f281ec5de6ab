"""人工 queue (bot.chat.handoff) against the real database: one open request per resident, one
staff member takes it, answers go by customer-service message inside the window and to the
inbox outside it."""

from __future__ import annotations

import asyncio

import pytest

from bot.chat import handoff
from bot.notify import inbox
from bot.wechat import users


async def test_one_open_request_per_resident_even_when_messages_race(db):
    results = await asyncio.gather(*(handoff.request_person(db, "o-1", f"人工 {n}") for n in range(5)))
    assert sum(new for _, new in results) == 1
    assert await db[handoff.COLLECTION].count_documents({"openid": "o-1", "open": True}) == 1
    current = await handoff.open_for(db, "o-1")
    assert len(current["messages"]) == 5


async def test_only_one_staff_member_takes_a_request(db):
    request, _ = await handoff.request_person(db, "o-2", "人工")
    outcomes = await asyncio.gather(*(handoff.take(db, request["_id"], f"clerk-{n}") for n in range(3)),
                                    return_exceptions=True)
    assert sum(not isinstance(o, Exception) for o in outcomes) == 1
    assert all(isinstance(o, handoff.HandoffError) for o in outcomes if isinstance(o, Exception))


async def test_an_answer_outside_the_window_goes_to_the_inbox(db):
    request, _ = await handoff.request_person(db, "o-3", "人工")
    await handoff.take(db, request["_id"], "clerk")
    with pytest.raises(handoff.HandoffError):
        await handoff.answer(db, None, request["_id"], "someone-else", "你好")
    channel = await handoff.answer(db, None, request["_id"], "clerk", "请到 3 号窗口办理")
    assert channel == handoff.INBOX  # no message from o-3 within 48 h
    entries, unread = await inbox.entries_for(db, "o-3")
    assert unread == 1 and any("3 号窗口" in e["text"] for e in entries)
    stored = await handoff.get(db, request["_id"])
    assert stored["first_answer_at"] is not None and stored["messages"][-1]["channel"] == handoff.INBOX


async def test_inside_the_window_a_customer_service_message_is_sent(make_client, fake_wechat, db):
    from bot.wechat.api import WECHAT

    client = await make_client(wechat_app_id=fake_wechat.app_id, wechat_app_secret=fake_wechat.secret,
                               wechat_api_base=fake_wechat.base_url, wechat_token="t")
    await users.record_interaction(db, "o-4", opens_window=True)
    fake_wechat.open_window("o-4")
    request, _ = await handoff.request_person(db, "o-4", "人工")
    await handoff.take(db, request["_id"], "clerk")
    channel = await handoff.answer(db, client.app[WECHAT], request["_id"], "clerk", "您好")
    assert channel == handoff.CUSTOMER_SERVICE
    assert fake_wechat.sent_to("o-4", "custom")[-1]["text"] == "您好"


async def test_the_resident_can_end_it(db):
    request, _ = await handoff.request_person(db, "o-5", "人工")
    await handoff.close(db, None, request["_id"], "resident", by_resident=True)
    assert await handoff.open_for(db, "o-5") is None
    again, new = await handoff.request_person(db, "o-5", "人工")
    assert new and again["_id"] != request["_id"]
