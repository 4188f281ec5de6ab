"""``python -m bot worker``: the periodic jobs (outbox dispatch, expiries, slot generation …)
without the web server, so a deployment can split the roles (``serve --no-scheduler`` for the web
instances, ``worker`` for the jobs). It opens the app's resources — the database (the embedded one
when MONGODB_URI is unset), the WeChat client, the start-up steps — except the FAQ index and the chat,
which only requests use, and then only ticks.
Every job is safe to run in several workers and web instances at once (claims or leases)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from aiohttp import web
from prometheus_client import start_http_server

from bot.config import Settings
from bot.keys import READINESS

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 600.0


async def run_worker(settings: Settings, *, metrics_port: int | None = None) -> int:
    from bot.app import create_app

    app = create_app(settings, scheduler=True, serve_requests=False)
    runner = web.AppRunner(app, handle_signals=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await runner.setup()  # opens the cleanup contexts: database, WeChat client, scheduler; no socket
    try:
        waiting = asyncio.create_task(app[READINESS].wait(STARTUP_TIMEOUT))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            waiting.cancel()
            return 0
        stopping.cancel()
        if waiting.exception() is not None:
            log.error("worker start-up failed", extra={"failed": app[READINESS].failed})
            return 1
        if metrics_port:
            start_http_server(metrics_port, addr=settings.host)
        log.info("worker running", extra={"metrics_port": metrics_port})
        await stop.wait()
        log.info("worker stopping")
        return 0
    finally:
        await runner.cleanup()


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(run_worker(settings, metrics_port=args.metrics_port))


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("worker", help="只运行定时任务（发送通知、过期处理、生成时段），不提供 Web 服务")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="在此端口提供 Prometheus /metrics（监听 HOST）")
    parser.set_defaults(func=_worker)
