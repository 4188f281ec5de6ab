"""Periodic jobs. APScheduler (in-memory job store) only provides the ticks in every instance;
durable state lives in our collections, and a job that must not run twice at once takes a lease.

The app shell lists the capabilities' jobs (``bot.app.jobs``) in ``app[JOBS]``; ``scheduler_context``
runs them inside the web app, ``python -m bot worker`` runs them alone. This module knows no domain,
so the domains can declare their ``Job``s without importing the layers above them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import Counter, Histogram

from bot import leases
from bot.keys import DB, READINESS
from bot.leases import INSTANCE_ID

log = logging.getLogger(__name__)

JOB_RUNS = Counter("job_runs_total", "Periodic job runs by result (ok, failed, skipped, cancelled by shutdown; "
                   "overlapped: a tick that found the previous run still going)", ["job", "result"])
JOB_DURATION = Histogram("job_duration_seconds", "Duration of the periodic job runs that ran", ["job"],
                         buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120))


@dataclass(frozen=True)
class Job:
    name: str
    every: timedelta
    run: Callable[[web.Application], Awaitable[None]]
    exclusive: bool = False  # take a lease so only one instance runs it at a time


JOBS: web.AppKey[list[Job]] = web.AppKey("jobs")


async def run_job(app: web.Application, job: Job) -> None:
    if not app[READINESS].ready:
        JOB_RUNS.labels(job.name, "skipped").inc()
        return  # start-up has not finished; the next tick will run it
    db = app[DB]
    lease_name = f"job:{job.name}"
    if job.exclusive and not await leases.acquire(db, lease_name, INSTANCE_ID, job.every * 3 + timedelta(seconds=30)):
        JOB_RUNS.labels(job.name, "skipped").inc()
        return
    try:
        with JOB_DURATION.labels(job.name).time():
            await job.run(app)
        JOB_RUNS.labels(job.name, "ok").inc()
    except asyncio.CancelledError:
        # Only the scheduler's shutdown cancels a run: not an error (APScheduler would log it as one).
        # The durable state is claimed or leased, so another run picks the work up.
        JOB_RUNS.labels(job.name, "cancelled").inc()
        log.info("job stopped by shutdown", extra={"job": job.name})
    except Exception:
        JOB_RUNS.labels(job.name, "failed").inc()
        log.exception("job failed", extra={"job": job.name})
    finally:
        if job.exclusive:
            await leases.release(db, lease_name, INSTANCE_ID)


class OverlapIsExpected(logging.Filter):
    """Each job runs once at a time per instance (``max_instances=1``) by design, so a run that
    outlasts its tick — the dispatcher draining a backlog — makes the next tick skip. APScheduler logs
    every such skip as a warning; they are counted in ``job_runs_total{result="overlapped"}`` instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in str(record.msg)


def count_overlap(event: JobSubmissionEvent) -> None:
    JOB_RUNS.labels(event.job_id, "overlapped").inc()


logging.getLogger("apscheduler.scheduler").addFilter(OverlapIsExpected())


async def scheduler_context(app: web.Application) -> AsyncIterator[None]:
    async for _ in run_scheduler(app, app[JOBS]):
        yield


async def run_scheduler(app: web.Application, jobs: list[Job]) -> AsyncIterator[None]:
    scheduler = AsyncIOScheduler(timezone="Asia/Shanghai")
    scheduler.add_listener(count_overlap, EVENT_JOB_MAX_INSTANCES)
    running: set[asyncio.Task] = set()

    async def tick(job: Job) -> None:
        task = asyncio.current_task()
        assert task is not None
        running.add(task)
        try:
            await run_job(app, job)
        finally:
            running.discard(task)

    for job in jobs:
        scheduler.add_job(tick, "interval", args=[job], id=job.name,
                          seconds=job.every.total_seconds(), max_instances=1, coalesce=True)
    scheduler.start()
    try:
        yield
    finally:
        scheduler.shutdown(wait=False)
        # Runs still going end now, before the database they use is closed (which would make each
        # fail with an error that is only the shutdown).
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
