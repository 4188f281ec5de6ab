"""One-key alarm (issue 16): delivered at once to the on-duty staff through the (fake) WeChat API,
escalated when unacknowledged, acknowledged and resolved on record, and never lost: a process
killed with SIGKILL between the write and the send leaves the alarm to be delivered after restart."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from bot.errors import ApiError
from bot.notify import alarms as delivery
from bot.wechat.api import RetryPolicy, WeChatClient
from scheduling import alarms, visits
from scheduling import transitions as t
from tests.booking_factories import CLINIC
from tests.home_visit_support import DESK, HOME, NURSE, OTHER_NURSE, confirmed_visit

ROOT = Path(__file__).resolve().parent.parent
ESCALATION = timedelta(minutes=3)
DUTY, OFF_DUTY, SECURITY = "oDuty0000000001", "oOffDuty0000001", "oSecurity000001"


@pytest.fixture
async def wechat(db, settings, fake_wechat) -> AsyncIterator[WeChatClient]:
    configured = dataclasses.replace(settings, wechat_api_base=fake_wechat.base_url,
                                     wechat_app_id=fake_wechat.app_id, wechat_app_secret=fake_wechat.secret)
    async with aiohttp.ClientSession() as http:
        yield WeChatClient(http, db, configured, retry=RetryPolicy(attempts=1), timeout=2.0)


async def roster(db, fake) -> None:
    await alarms.set_roster_entry(db, CLINIC, "desk", openid=DUTY, on_duty=True, level=0, name="值班护士长")
    await alarms.set_roster_entry(db, CLINIC, "night", openid=OFF_DUTY, on_duty=False, level=0)
    await alarms.set_roster_entry(db, CLINIC, "security-desk", openid=SECURITY, on_duty=True, level=1,
                                  name="医院保卫科")
    for openid in (DUTY, OFF_DUTY, SECURITY):
        fake.open_window(openid, quota=20)


async def test_the_alarm_reaches_the_duty_staff_at_once(db, fake_wechat, wechat):
    await roster(db, fake_wechat)
    visit = await confirmed_visit(db, status=t.IN_SERVICE)
    await visits.ping(db, NURSE, visit.id, HOME, retention=timedelta(days=1))
    alarm = await delivery.raise_alarm(db, wechat, NURSE, visit.id, location=None, note="患者家属情绪激动",
                                       escalation=ESCALATION)
    # no job has run: the message went out within the request that raised the alarm
    [message] = fake_wechat.sent
    assert message["openid"] == DUTY and message["kind"] == "custom"
    assert "【一键报警】" in message["text"] and "八一北街 100 号" in message["text"]
    assert alarm["_id"] in message["text"] and "29.07900,119.64700" in message["text"]
    [sent] = await alarms.deliveries(db, alarm["_id"])
    assert sent["status"] == "sent" and sent["contact"] == "desk"
    stored = await alarms.get_alarm(db, alarm["_id"])
    assert stored["status"] == "open" and stored["location"]["latitude"] == HOME["latitude"]


async def test_only_the_assigned_nurse_raises_it(db, fake_wechat, wechat):
    await roster(db, fake_wechat)
    visit = await confirmed_visit(db, status=t.IN_SERVICE)
    with pytest.raises(ApiError) as caught:
        await delivery.raise_alarm(db, wechat, OTHER_NURSE, visit.id, location=HOME, note=None,
                                   escalation=ESCALATION)
    assert caught.value.code == "not_assigned_nurse"
    assert await db.alarms.count_documents({}) == 0 and fake_wechat.sent == []


async def test_unacknowledged_it_escalates_to_the_next_contact(db, fake_wechat, wechat):
    await roster(db, fake_wechat)
    visit = await confirmed_visit(db, status=t.IN_SERVICE)
    alarm = await delivery.raise_alarm(db, wechat, NURSE, visit.id, location=HOME, note=None, escalation=ESCALATION)
    raised = alarm["raised_at"]
    assert await alarms.escalate_due(db, ESCALATION, now=raised + timedelta(minutes=2)) == 0
    assert await alarms.escalate_due(db, ESCALATION, now=raised + timedelta(minutes=3, seconds=1)) == 1
    assert await delivery.deliver(db, wechat, now=raised + timedelta(minutes=3, seconds=2)) == 1
    assert [s["openid"] for s in fake_wechat.sent] == [DUTY, SECURITY]
    assert "【第 1 级上报】" in fake_wechat.sent[1]["text"]
    stored = await alarms.get_alarm(db, alarm["_id"])
    assert stored["level"] == 1 and stored["escalations"][0]["level"] == 1
    # no level beyond the security desk: the last level is told again, nobody is left unwarned
    assert await alarms.escalate_due(db, ESCALATION, now=raised + timedelta(minutes=6, seconds=2)) == 1
    assert await delivery.deliver(db, wechat, now=raised + timedelta(minutes=6, seconds=3)) == 1
    assert [s["openid"] for s in fake_wechat.sent] == [DUTY, SECURITY, SECURITY]


async def test_acknowledgement_stops_escalation_and_resolution_is_recorded(db, fake_wechat, wechat):
    await roster(db, fake_wechat)
    visit = await confirmed_visit(db, status=t.IN_SERVICE)
    alarm = await delivery.raise_alarm(db, wechat, NURSE, visit.id, location=HOME, note=None, escalation=ESCALATION)
    with pytest.raises(ApiError):
        await alarms.acknowledge(db, NURSE, alarm["_id"])  # a nurse is not a responder
    acked = await alarms.acknowledge(db, DESK, alarm["_id"], note="已电话联系护士")
    assert acked["status"] == "acknowledged" and acked["acknowledged"]["by"] == "desk"
    assert await alarms.escalate_due(db, ESCALATION, now=datetime.now(UTC) + timedelta(hours=1)) == 0
    resolved = await alarms.resolve(db, DESK, alarm["_id"], resolution="护士安全离开，已报社区民警备案")
    assert resolved["status"] == "resolved" and resolved["resolved"]["resolution"].startswith("护士安全离开")
    actions = [r["action"] for r in await db.audit_log.find({"entity": "alarm"}).sort("at", 1).to_list(None)]
    assert actions == ["raise", "acknowledge", "resolve"]


async def test_a_transient_wechat_failure_is_retried_by_the_job(db, fake_wechat, wechat):
    await roster(db, fake_wechat)
    visit = await confirmed_visit(db, status=t.IN_SERVICE)
    fake_wechat.fail_next("cgi-bin/message/custom/send", [-1])
    alarm = await delivery.raise_alarm(db, wechat, NURSE, visit.id, location=HOME, note=None, escalation=ESCALATION)
    [pending] = await alarms.deliveries(db, alarm["_id"])
    assert pending["status"] == "pending" and pending["attempts"] == 1
    await db.alarm_deliveries.update_one({"_id": pending["_id"]}, {"$set": {"due_at": datetime.now(UTC)}})
    assert await delivery.deliver(db, wechat) == 1
    assert [s["openid"] for s in fake_wechat.sent] == [DUTY]


async def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_sigkill_between_write_and_send_loses_no_alarm(db, fake_wechat, mongo_uri, db_name, tmp_path):
    await roster(db, fake_wechat)
    visit = await confirmed_visit(db, status=t.IN_SERVICE)
    env = {**os.environ, "MONGODB_URI": mongo_uri, "MONGODB_DB": db_name, "DATA_DIR": str(tmp_path),
           "WECHAT_APP_ID": fake_wechat.app_id, "WECHAT_APP_SECRET": fake_wechat.secret,
           "WECHAT_API_BASE": fake_wechat.base_url, "IDENTITY_HASH_KEY": "alarm-crash-identity-key-0123456789",
           "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "tests" / "alarm_crash_child.py"), mongo_uri, db_name, visit.id, cwd=ROOT,
        env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 60)
        assert line.strip() == b"written", (line, await child.stderr.read())
        os.kill(child.pid, signal.SIGKILL)
        await child.wait()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert child.returncode == -signal.SIGKILL
    [alarm] = await db.alarms.find().to_list(None)
    assert fake_wechat.sent == []
    assert [d["status"] for d in await alarms.deliveries(db, alarm["_id"])] == ["pending"]

    log_path = tmp_path / "worker.log"
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "worker", cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=log, stderr=log)
    finally:
        os.close(log)
    try:
        async def delivered() -> bool:
            assert worker.returncode is None, log_path.read_text()
            return any(alarm["_id"] in s.get("text", "") for s in fake_wechat.sent)

        await wait_for(delivered, 90, "the restarted worker to deliver the alarm")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(worker.wait(), 15)
        except TimeoutError:
            worker.kill()
            await worker.wait()
    assert [s["openid"] for s in fake_wechat.sent] == [DUTY]
    assert [d["status"] for d in await alarms.deliveries(db, alarm["_id"])] == ["sent"]
