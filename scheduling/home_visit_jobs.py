"""Periodic work of home visits and ratings (issue 16): credential expiry alerts (hourly; each
alert is created once, so in effect daily), rating invitations for completed visits, and the
overdue follow-up metric. Each is exclusive: one instance runs it at a time; durable state
(alerts, invitations) is keyed so it is created once."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from bot.jobs import Job
from bot.keys import DB


async def credential_alerts(app: web.Application) -> None:
    from scheduling import credentials

    await credentials.alert_expiring(app[DB])


async def rating_invitations(app: web.Application) -> None:
    from scheduling import ratings

    await ratings.invite_completed(app[DB])
    await ratings.update_overdue_metric(app[DB])


def jobs() -> list[Job]:
    return [Job("credential-alerts", timedelta(hours=1), credential_alerts, exclusive=True),
            Job("rating-invitations", timedelta(minutes=1), rating_invitations, exclusive=True)]
