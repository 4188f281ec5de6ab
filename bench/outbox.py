"""Outbox dispatch benchmark: drain rate and event-to-send delay against the fake WeChat API.

Starts its own embedded database and the fake WeChat API in a separate process, where every send
takes 20 ms (``delay``). Half of the residents hold subscribe grants, half wrote to the account
(customer-service window), so both WeChat channels are exercised. Two measurements:

1. drain: BACKLOG notifications are waiting; one dispatcher (OUTBOX_CONCURRENCY sends at once)
   sends them all. Prints messages/s and when, after the drain started, the sends happened; three
   times, and the median.
2. steady: events arrive at STEADY_RATE per second for STEADY_SECONDS while the dispatcher runs as
   the periodic job does (a run every 2 s that keeps polling for 1.5 s); prints the p50/p99 delay
   from event to send.

Usage: .venv/bin/python bench/outbox.py   (about 40 s; target: drain >= 500 messages/s)
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import quantile  # noqa: E402
from bot import db as database  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.embedded import EmbeddedMongo  # noqa: E402
from bot.notify import grants, outbox  # noqa: E402
from bot.notify.dispatcher import DISPATCH_EVERY, DISPATCH_LINGER, Dispatcher, DispatchPolicy  # noqa: E402
from bot.notify.templates import SAMPLE_PAYLOADS, TemplateBook  # noqa: E402
from bot.wechat import users  # noqa: E402
from bot.wechat.api import WeChatClient  # noqa: E402

BACKLOG = 3000
DRAIN_RUNS = 3
RESIDENTS = 1500  # 2 notifications each
LATENCY = 0.020
CONCURRENCY = Settings.from_env().outbox_concurrency  # OUTBOX_CONCURRENCY, default 64
STEADY_RATE = 200
STEADY_SECONDS = 8
TEMPLATE = "TPL-BENCH"


def start_fake() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "tests.fakes.wechat_api", "--port", "0"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline().strip()
    if not line.startswith("ready "):
        raise RuntimeError(f"fake WeChat API did not start: {line!r}")
    return process, line.split(" ", 1)[1]


async def control(http: aiohttp.ClientSession, base: str, **action: object) -> None:
    async with http.post(f"{base}/_fake/control", json=action) as response:
        response.raise_for_status()


async def in_chunks(calls: list, size: int = 50) -> None:
    for start in range(0, len(calls), size):
        await asyncio.gather(*(call() for call in calls[start:start + size]))


async def prepare_residents(db, http: aiohttp.ClientSession, base: str) -> list[str]:
    openids = [f"bench-{n:05d}" for n in range(RESIDENTS)]

    def setup(n: int, openid: str):
        async def run() -> None:
            if n % 2:
                await grants.add_grant(db, openid, TEMPLATE, 10)
                await control(http, base, action="grant", openid=openid, template_id=TEMPLATE, n=10)
            else:
                await users.record_interaction(db, openid, opens_window=True)
                await control(http, base, action="open_window", openid=openid, quota=50)
        return run

    await in_chunks([setup(n, openid) for n, openid in enumerate(openids)])
    for path in ("cgi-bin/message/subscribe/send", "cgi-bin/message/custom/send"):
        await control(http, base, action="delay", path=path, seconds=LATENCY)
    return openids


async def enqueue(db, openid: str, number: int) -> None:
    payload = {**SAMPLE_PAYLOADS["settlement_status"], "settlement_id": f"B{number:06d}"}
    await outbox.enqueue(db, kind="settlement_status", openid=openid, payload=payload)


async def delays(db, since: datetime) -> list[float]:
    documents = await db.notifications.find({"created_at": {"$gte": since}, "status": "sent"},
                                            {"created_at": 1, "sent_at": 1}).to_list()
    return [(d["sent_at"] - d["created_at"]).total_seconds() for d in documents]


async def drain(db, dispatcher: Dispatcher, openids: list[str], run: int) -> float:
    started_at = datetime.now(UTC)
    first = run * BACKLOG
    await in_chunks([lambda n=n: enqueue(db, openids[n % len(openids)], n) for n in range(first, first + BACKLOG)])
    began, drain_start = time.perf_counter(), datetime.now(UTC)
    stats = await dispatcher.run()
    elapsed = time.perf_counter() - began
    documents = await db.notifications.find({"created_at": {"$gte": started_at}, "status": "sent"},
                                            {"sent_at": 1}).to_list()
    waited = [(d["sent_at"] - drain_start).total_seconds() for d in documents]
    assert stats.claimed == BACKLOG and len(waited) == BACKLOG, (stats, len(waited))
    print(f"drain {run + 1}: {BACKLOG} notifications in {elapsed:.1f} s = {BACKLOG / elapsed:.0f} messages/s "
          f"(concurrency {CONCURRENCY}, {LATENCY * 1000:.0f} ms per WeChat call; channels {stats.sent}); "
          f"start of the drain to the send: p50 {statistics.median(waited):.2f} s, "
          f"p99 {quantile(waited, 0.99):.2f} s")
    return BACKLOG / elapsed


async def steady(db, dispatcher: Dispatcher, openids: list[str]) -> None:
    started_at = datetime.now(UTC)
    stop = asyncio.Event()

    async def job_ticks() -> None:  # what the APScheduler job does: a lingering run every 2 s
        while not stop.is_set():
            tick = time.monotonic()
            await dispatcher.run()
            await asyncio.sleep(max(0.0, DISPATCH_EVERY.total_seconds() - (time.monotonic() - tick)))

    ticking = asyncio.create_task(job_ticks())
    total = STEADY_RATE * STEADY_SECONDS
    began = time.perf_counter()
    for number in range(total):
        await enqueue(db, openids[(number * 7) % len(openids)], BACKLOG * DRAIN_RUNS + number)
        await asyncio.sleep(max(0.0, began + (number + 1) / STEADY_RATE - time.perf_counter()))
    while await db.notifications.count_documents({"created_at": {"$gte": started_at}, "status": "sent"}) < total:
        await asyncio.sleep(0.2)
    stop.set()
    await ticking
    waited = await delays(db, started_at)
    print(f"steady: {total} events at {STEADY_RATE}/s: event-to-send delay p50 {statistics.median(waited):.3f} s, "
          f"p99 {quantile(waited, 0.99):.3f} s, max {max(waited):.3f} s")


async def main() -> None:
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(the embedded database is the bottleneck: every message costs ~3.5 document writes)")
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedMongo(Path(tmp) / "mongo")
        server.start()
        fake, base = start_fake()
        try:
            await server.wait_ready()
            client = database.connect(server.uri)
            db = client["bench_outbox"]
            await database.ensure_indexes(db)
            settings = Settings.from_env({}, wechat_app_id="wxfakeappid000001", wechat_app_secret="fake-app-secret",
                                         wechat_api_base=base, data_dir=Path(tmp))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY + 8)) as http:
                openids = await prepare_residents(db, http, base)
                wechat = WeChatClient(http, db, settings)
                book = TemplateBook.load(template_ids=f"settlement_status={TEMPLATE}")
                policy = DispatchPolicy(concurrency=CONCURRENCY, lease=timedelta(seconds=120),
                                        time_budget=timedelta(minutes=5))
                rates = [await drain(db, Dispatcher(db, wechat, book, policy), openids, run)
                         for run in range(DRAIN_RUNS)]
                print(f"drain: median {statistics.median(rates):.0f} messages/s over {DRAIN_RUNS} drains "
                      "(this 2-core machine varies by about 15 % from one minute to the next)")
                lingering = dataclasses.replace(policy, linger=DISPATCH_LINGER)
                await steady(db, Dispatcher(db, wechat, book, lingering), openids)
                async with http.get(f"{base}/_fake/sent") as response:
                    received = len(json.loads(await response.text())["sent"])
                print(f"fake WeChat API received {received} messages "
                      f"({BACKLOG * DRAIN_RUNS + STEADY_RATE * STEADY_SECONDS} notifications)")
            await client.close()
        finally:
            fake.terminate()
            fake.wait()
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
