"""Periodic booking work (each exclusive, so one instance runs it at a time): nursing requests
nobody reviewed before their deadline expire, and the waitlist moves on (lapsed offers pass to the
next family; seats freed without a release, such as a capacity increase, are offered)."""

from __future__ import annotations

import logging
from datetime import timedelta

from aiohttp import web

from bot.jobs import Job
from bot.keys import DB, SETTINGS
from scheduling import bookings, waitlist
from scheduling.booking_base import Policy

log = logging.getLogger(__name__)

EVERY = timedelta(minutes=1)


async def expire_requests(app: web.Application) -> None:
    expired = await bookings.expire_unreviewed(app[DB], Policy.from_settings(app[SETTINGS]))
    if expired:
        log.info("unreviewed nursing requests expired", extra={"count": expired})


async def move_waitlist(app: web.Application) -> None:
    policy = Policy.from_settings(app[SETTINGS])
    lapsed = await waitlist.expire_offers(app[DB], policy)
    offered = await waitlist.offer_free_seats(app[DB], policy)
    if lapsed or offered:
        log.info("waitlist moved", extra={"lapsed": lapsed, "offered": offered})


def booking_jobs() -> list[Job]:
    return [Job("booking-expire-requests", EVERY, expire_requests, exclusive=True),
            Job("booking-waitlist", EVERY, move_waitlist, exclusive=True)]
