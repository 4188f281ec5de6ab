"""How the outbox capability is wired: worker and --no-scheduler roles, readiness, job metrics."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from prometheus_client import REGISTRY

from bot.app import create_app, jobs
from bot.cli import build_parser
from bot.jobs import Job, run_job, run_scheduler, scheduler_context
from bot.keys import READINESS
from bot.notify.dispatcher import dispatch_context
from bot.worker import _worker


def test_roles_on_the_command_line(settings):
    assert build_parser().parse_args(["worker"]).func is _worker
    assert build_parser().parse_args(["serve", "--no-scheduler"]).no_scheduler is True
    web_only = create_app(settings, scheduler=False)
    assert scheduler_context not in web_only.cleanup_ctx and dispatch_context not in web_only.cleanup_ctx
    full = list(create_app(settings, scheduler=True).cleanup_ctx)
    assert full.index(dispatch_context) > full.index(scheduler_context)  # unwinds first: graceful stop
    names = {job.name: job for job in jobs()}
    assert not names["outbox-dispatch"].exclusive and names["outbox-dispatch"].every == timedelta(seconds=2)
    assert "outbox-stats" in names


async def test_invalid_template_ids_fail_readiness_with_the_reason(aiohttp_client, settings, db):
    app = create_app(settings.__class__(**{**settings.__dict__, "wechat_template_ids": "nope=abc"}), scheduler=False)
    client = await aiohttp_client(app)
    for _ in range(200):
        if app[READINESS].failed:
            break
        await asyncio.sleep(0.05)
    response = await client.get("/readyz")
    assert response.status == 503
    assert "WECHAT_TEMPLATE_IDS" in (await response.json())["failed"]["notification_templates"]


async def test_job_runs_and_failures_are_counted(client):
    async def fine(app):
        return None

    async def broken(app):
        raise RuntimeError("boom")

    def value(job: str, result: str) -> float:
        return REGISTRY.get_sample_value("job_runs_total", {"job": job, "result": result}) or 0.0

    before_ok, before_failed = value("test-fine", "ok"), value("test-broken", "failed")
    await run_job(client.app, Job("test-fine", timedelta(seconds=1), fine))
    await run_job(client.app, Job("test-broken", timedelta(seconds=1), broken))
    assert value("test-fine", "ok") == before_ok + 1
    assert value("test-broken", "failed") == before_failed + 1


async def test_a_tick_during_a_long_run_is_counted_not_logged(client, monkeypatch, caplog):
    async def slow(app):
        await asyncio.sleep(0.4)


    def counted() -> float:
        return REGISTRY.get_sample_value("job_runs_total", {"job": "test-slow", "result": "overlapped"}) or 0

    before = counted()
    ticking = run_scheduler(client.app, [Job("test-slow", timedelta(seconds=0.05), slow)])
    with caplog.at_level(logging.WARNING):
        await anext(ticking)
        await asyncio.sleep(0.5)
        await ticking.aclose()
    assert counted() > before
    assert not [r for r in caplog.records if "maximum number of running instances" in r.getMessage()]


def test_the_worker_builds_no_faq_index_and_no_chat(settings):
    from bot.app import capability_contexts, startup_steps
    from bot.chat.dispatch import chat_context

    assert "faq_index" in dict(startup_steps())
    assert "faq_index" not in dict(startup_steps(serve_requests=False))
    assert chat_context in capability_contexts(settings, scheduler=True)
    worker = capability_contexts(settings, scheduler=True, serve_requests=False)
    assert chat_context not in worker and scheduler_context in worker
