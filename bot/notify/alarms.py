"""Delivery of one-key alarms (``scheduling.alarms``) to the duty staff's WeChat.

``raise_alarm`` writes the alarm (and its delivery items) first, then sends at once in the same
request — not on the next job tick. The ``alarms`` job (every few seconds) is the safety net: it
sends any delivery still pending (the process died between the write and the send, or WeChat
failed) and escalates unacknowledged alarms to the next level of the duty roster.

Channel: the customer-service text message (``cgi-bin/message/custom/send``). Duty staff follow the
official account and keep the 48-hour window open by checking in (a message to the account at the
start of the duty); a permanent WeChat error (window closed …) ends that delivery ``failed`` with
the reason, which the console shows next to the alarm banner so the desk telephones instead.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from prometheus_client import Counter
from pymongo.asynchronous.database import AsyncDatabase

from bot.accounts.staff import StaffMember
from bot.jobs import Job
from bot.keys import DB, SETTINGS
from bot.leases import INSTANCE_ID
from bot.wechat.api import NO_RETRY, WECHAT, WeChatClient, WeChatError
from scheduling import alarms

log = logging.getLogger(__name__)

ALARM_DELIVERIES = Counter("alarm_deliveries_total", "Alarm messages to duty staff by result", ["result"])
JOB_EVERY = timedelta(seconds=5)


async def deliver(db: AsyncDatabase, wechat: WeChatClient, *, alarm_id: str | None = None,
                  now: datetime | None = None) -> int:
    """Send the due deliveries (of one alarm, or all); returns how many were sent."""
    sent = 0
    for delivery in await alarms.claim_deliveries(db, INSTANCE_ID, alarm_id=alarm_id, now=now):
        alarm = await alarms.get_alarm(db, delivery["alarm_id"])
        if alarm is None:
            await alarms.finish_delivery(db, delivery, error="alarm missing", retry=False)
            continue
        try:
            await wechat.send_custom_text(delivery["openid"], alarms.alarm_text({**alarm, "level": delivery["level"]}),
                                          retry=NO_RETRY)
        except WeChatError as exc:
            ALARM_DELIVERIES.labels("transient" if exc.transient else "failed").inc()
            log.warning("alarm delivery failed", extra={"alarm_id": alarm["_id"], "errcode": exc.errcode,
                                                        "transient": exc.transient})
            await alarms.finish_delivery(db, delivery, error=f"{exc.errcode} {exc.errmsg}", retry=exc.transient)
            continue
        await alarms.finish_delivery(db, delivery, error=None, retry=False)
        ALARM_DELIVERIES.labels("sent").inc()
        sent += 1
    return sent


async def raise_alarm(db: AsyncDatabase, wechat: WeChatClient, member: StaffMember, booking_id: str, *,
                      location: Any, note: Any, escalation: timedelta) -> dict[str, Any]:
    """Written before it is sent; then sent to the on-duty staff at once."""
    alarm = await alarms.record_alarm(db, member, booking_id, location=location, note=note, escalation=escalation)
    log.warning("alarm raised", extra={"alarm_id": alarm["_id"], "booking_id": booking_id})
    try:
        await deliver(db, wechat, alarm_id=alarm["_id"])
    except Exception:  # the job sends it; the nurse's request must still say the alarm is recorded
        log.exception("immediate alarm delivery failed", extra={"alarm_id": alarm["_id"]})
    return alarm


async def alarm_job(app: web.Application) -> None:
    escalation = timedelta(minutes=app[SETTINGS].alarm_escalation_minutes)
    escalated = await alarms.escalate_due(app[DB], escalation)
    if escalated:
        log.warning("alarms escalated", extra={"count": escalated})
    await deliver(app[DB], app[WECHAT])


def alarm_jobs() -> list[Job]:
    """Not exclusive: deliveries are claimed with a lease, escalation is a conditional update."""
    return [Job("alarms", JOB_EVERY, alarm_job)]
