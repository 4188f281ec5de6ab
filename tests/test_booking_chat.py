"""The booking chat rules through the real WeChat callback: 我的预约 lists, "取消预约 N" cancels after "确认"."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from bot.keys import SETTINGS
from bot.wechat.callback import CallbackCredentials
from bot.wechat.simulator import Simulator, message_xml
from scheduling import bookings
from tests.booking_factories import (
    ASSESSMENT,
    CENTRE_SERVICE,
    NURSING_SERVICE,
    POLICY,
    VISITOR,
    make_patient,
    visitor,
    world,
)

OPENID = "chat-family"
_clicks = itertools.count(1_900_000_000)  # distinct CreateTime: a new click, not a WeChat retry


@pytest.fixture
async def chat(client, db):
    credentials = CallbackCredentials.from_settings(client.app[SETTINGS])
    bot = Simulator(client.session, str(client.make_url("/")), credentials, OPENID)
    bot.world = await world(db)
    return bot


async def my_bookings(bot: Simulator) -> str:
    xml = message_xml(bot.openid, "event", create_time=next(_clicks), Event="CLICK", EventKey="MENU_MY_BOOKINGS")
    reply = await bot.send(xml)
    assert reply.kind == "text"
    return reply.content


async def book_two(db, w) -> tuple[dict, dict]:
    centre, _ = await bookings.create_booking(db, OPENID, bookings.BookingRequest(
        await w.centre_slot(days=2, hour=10), CENTRE_SERVICE, "c", visitor=VISITOR), POLICY)
    patient = await make_patient(db, OPENID)
    nursing, _ = await bookings.create_booking(db, OPENID, bookings.BookingRequest(
        await w.nursing_slot(days=3), NURSING_SERVICE, "n", patient_id=patient["_id"], assessment=ASSESSMENT),
        POLICY)
    return centre, nursing


async def test_menu_lists_upcoming_bookings_numbered(chat, db):
    assert "没有待进行的预约" in await my_bookings(chat)
    centre, _ = await book_two(db, chat.world)
    await bookings.create_booking(db, "someone-else", bookings.BookingRequest(
        centre["slot_id"], CENTRE_SERVICE, "x", visitor=visitor("x")), POLICY)
    text = await my_bookings(chat)
    assert "我的预约（待进行 2 个）" in text and f"预约码 {centre['code']}" in text
    first, second = (line for line in text.splitlines() if line[:2] in ("1.", "2."))
    assert "异地就医备案" in first and "【已预约】" in first
    assert "更换导尿管" in second and "（王**）" in second and "【待审核】" in second
    assert "王秀英" not in text and "139" not in text
    assert "取消预约 1" in text


async def test_cancel_n_asks_for_confirmation_then_cancels(chat, db):
    centre, nursing = await book_two(db, chat.world)
    await my_bookings(chat)
    assert "没有编号为 3 的预约" in (await chat.text("取消预约 3")).content
    ask = (await chat.text("取消预约１")).content  # full-width digit, as phones type it
    assert "异地就医备案" in ask and "回复“确认”" in ask
    assert (await db.bookings.find_one({"_id": centre["_id"]}))["status"] == "booked"
    done = (await chat.text("确认")).content
    assert done.startswith("已取消预约") and "【已取消】" in done
    stored = await db.bookings.find_one({"_id": centre["_id"]})
    assert stored["status"] == "cancelled" and stored["status_reason"] == "微信对话中取消"
    assert (await db.slots.find_one({"_id": centre["slot_id"]}))["booked"] == 0
    last = await db.audit_log.find_one({"entity_id": centre["_id"], "to": "cancelled"})
    assert last["actor"] == {"kind": "resident", "id": OPENID, "role": "resident"}
    # the list changed: numbers must be looked at again before another cancellation
    again = (await chat.text("取消预约 1")).content
    assert again.startswith("请先核对编号") and "1. " in again and "更换导尿管" in again
    assert (await db.bookings.find_one({"_id": nursing["_id"]}))["status"] == "requested"


async def test_keep_and_deadline_are_respected(chat, db):
    _, nursing = await book_two(db, chat.world)
    await my_bookings(chat)
    assert "回复“确认”" in (await chat.text("取消预约 2")).content
    assert (await chat.text("不取消")).content == "好的，预约已保留。"
    assert (await db.bookings.find_one({"_id": nursing["_id"]}))["status"] == "requested"
    await db.bookings.update_one({"_id": nursing["_id"]},
                                 {"$set": {"cancel_deadline": datetime.now(UTC) - timedelta(minutes=1)}})
    refused = (await chat.text("取消预约 2")).content
    assert "已超过可自行取消的时间" in refused
    assert (await db.bookings.find_one({"_id": nursing["_id"]}))["status"] == "requested"
