"""WeChat callback latency and throughput, against a bare aiohttp handler for comparison.

The app runs as `python -m bot serve --no-scheduler` on the embedded database (its own SecantusDB
child), in its own process; the bare server (one route answering "success") too. The load generator
(this process) posts signed plain-mode text messages with distinct MsgIds over loopback, questions
taken from the FAQ corpus, so every message is deduplicated, recorded and answered from the FAQ.

For each server it prints
- latency p50/p99 under an open-loop load of RATE/2 requests/s for DURATION/2 seconds, then of RATE
  requests/s for DURATION seconds (latency measured from each request's scheduled start, so a
  stalled server is not hidden by the generator waiting);
- throughput: completed requests/s with CONCURRENCY requests in flight for THROUGHPUT_SECONDS;
and the ratios callback/bare. Target: p99 under 100 ms at 500 requests/s.
Usage: .venv/bin/python bench/callback.py   (about a minute; loopback only, bounded count and time)
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bench.figures import quantile  # noqa: E402
from bot.embedded import free_port  # noqa: E402
from bot.wechat.callback import DEV_TOKEN, sign  # noqa: E402
from bot.wechat.simulator import text_xml  # noqa: E402

RATE = 500
DURATION = 10.0
WARMUP_REQUESTS = 300
CONCURRENCY = 32
USERS = 2000  # distinct openids: each sends a message every few seconds, like a lively conversation
THROUGHPUT_SECONDS = 5.0
HARD_LIMIT_SECONDS = 360  # bounded, with room for a loaded machine (the 500 req/s phase is 5,000 requests)
HOST = "127.0.0.1"


def questions() -> list[str]:
    from knowledge.corpus import load_corpus

    corpus = load_corpus()
    picked = [entry.question for entry in corpus.entries]
    picked += [p for entry in corpus.entries for p in entry.paraphrases[:1]]
    return picked


# --- servers -------------------------------------------------------------------------------------

def serve_bare(port: int) -> None:
    async def success(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="success")

    app = web.Application()
    app.router.add_post("/wechat/callback", success)
    web.run_app(app, host=HOST, port=port, print=None, access_log=None)


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


async def wait_until(url: str, process: subprocess.Popen, timeout: float = 90,
                     statuses: tuple[int, ...] = (200, 405)) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {process.stderr.read().decode()[-2000:]}")
            try:
                async with http.get(url) as response:
                    if response.status in statuses:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready in {timeout}s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- load ----------------------------------------------------------------------------------------

class Load:
    def __init__(self, base: str, texts: list[str]) -> None:
        self.url = f"{base}/wechat/callback"
        self.texts = itertools.cycle(texts)
        self.msg_ids = itertools.count(int(time.time() * 1000) * 1000)
        self.nonces = itertools.count()
        self.answered = 0
        self.empty = 0
        self.errors = 0

    def _query(self, openid: str) -> dict[str, str]:
        # like WeChat: a fresh nonce per request, the sender's openid in the URL
        timestamp, nonce = str(int(time.time())), f"b{next(self.nonces)}"
        return {"signature": sign(DEV_TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
                "openid": openid}

    async def post(self, http: aiohttp.ClientSession, openid: str) -> None:
        body = text_xml(openid, next(self.texts), msg_id=next(self.msg_ids)).encode()
        try:
            async with http.post(self.url, params=self._query(openid), data=body,
                                 headers={"Content-Type": "text/xml"}) as response:
                text = await response.text()
                if response.status != 200:
                    self.errors += 1
                elif "<Content>" in text:
                    self.answered += 1
                else:
                    self.empty += 1
        except (aiohttp.ClientError, TimeoutError):
            self.errors += 1

    async def open_loop(self, http: aiohttp.ClientSession, rate: float, seconds: float) -> list[float]:
        loop = asyncio.get_running_loop()
        count = int(rate * seconds)
        begin = loop.time() + 0.2
        latencies: list[float] = []

        async def one(i: int) -> None:
            scheduled = begin + i / rate
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            await self.post(http, f"bench-user-{i % USERS}")
            latencies.append(loop.time() - scheduled)

        await asyncio.gather(*(one(i) for i in range(count)))
        return latencies

    async def closed_loop(self, http: aiohttp.ClientSession, concurrency: int, seconds: float,
                          latencies: list[float] | None = None) -> float:
        """Completed requests/s with ``concurrency`` requests in flight (each request's latency
        appended to ``latencies``)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        done = 0

        async def worker(n: int) -> None:
            nonlocal done
            while loop.time() < end:
                began = loop.time()
                await self.post(http, f"bench-user-{(n * 7919 + done) % USERS}")
                done += 1
                if latencies is not None:
                    latencies.append(loop.time() - began)

        began = loop.time()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        return done / (loop.time() - began)


async def measure(name: str, base: str, texts: list[str]) -> dict[str, float]:
    load = Load(base, texts)
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        await asyncio.gather(*(load.post(http, f"warm-{i % 20}") for i in range(WARMUP_REQUESTS)))
        load.answered = load.empty = load.errors = 0
        half = await load.open_loop(http, RATE / 2, DURATION / 2)
        latencies = await load.open_loop(http, RATE, DURATION)
        throughput = await load.closed_loop(http, CONCURRENCY, THROUGHPUT_SECONDS)
    print(f"{name:>9}: p50 {quantile(half, 0.5) * 1000:6.1f} ms  p99 {quantile(half, 0.99) * 1000:6.1f} ms"
          f"  max {max(half) * 1000:6.1f} ms  at {RATE / 2:.0f} req/s x {DURATION / 2:.0f} s")
    result = {"p50": quantile(latencies, 0.50) * 1000, "p99": quantile(latencies, 0.99) * 1000,
              "max": max(latencies) * 1000, "throughput": throughput}
    total = load.answered + load.empty + load.errors
    print(f"{name:>9}: p50 {result['p50']:6.1f} ms  p99 {result['p99']:6.1f} ms  max {result['max']:6.1f} ms"
          f"  at {RATE} req/s x {DURATION:.0f} s   throughput {throughput:7.0f} req/s ({CONCURRENCY} in flight)"
          f"   replies: {load.answered} text, {load.empty} success, {load.errors} errors of {total}")
    return result


async def faq_cache(metrics_url: str) -> tuple[float, float]:
    async with aiohttp.ClientSession() as http, http.get(metrics_url) as response:
        text = await response.text()
    found = {"hit": 0.0, "miss": 0.0}
    for line in text.splitlines():
        if line.startswith("wechat_faq_cache_total{"):
            label, value = line.split("}")
            found[label.split('"')[1]] = float(value)
    return found["hit"], found["miss"]


async def run() -> None:
    texts = questions()
    with tempfile.TemporaryDirectory(prefix="bench-callback-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "MONGODB_"))}
        env["APP_ENV"] = "development"  # the dev callback token exists only in development mode
        app_port, bare_port = free_port(), free_port()
        app_env = {**env, "HOST": HOST, "PORT": str(app_port), "DATA_DIR": tmp, "LOG_LEVEL": "WARNING"}
        processes: list[subprocess.Popen] = []
        try:
            app = start([sys.executable, "-m", "bot", "serve", "--no-scheduler"], app_env)
            processes.append(app)
            bare = start([sys.executable, __file__, "--bare", str(bare_port)], env)
            processes.append(bare)
            await wait_until(f"http://{HOST}:{app_port}/readyz", app)
            await wait_until(f"http://{HOST}:{bare_port}/wechat/callback", bare)
            print(f"callback benchmark: {len(texts)} FAQ questions, distinct MsgIds, {USERS} users, plain mode, "
                  f"embedded database, {os.cpu_count()} CPUs, load average before the run "
                  f"{os.getloadavg()[0]:.1f} (other work on the machine skews the figures)")
            bare_result = await measure("bare", f"http://{HOST}:{bare_port}", texts)
            app_result = await measure("callback", f"http://{HOST}:{app_port}", texts)
            hits, misses = await faq_cache(f"http://{HOST}:{app_port}/metrics")
            print(f"           FAQ answer cache: {hits:.0f} hits, {misses:.0f} computed "
                  f"({hits / max(1.0, hits + misses):.0%} hits; {len(texts)} distinct questions in rotation)")
        finally:
            for process in processes:
                stop(process)
    ratios = {name: app_result[name] / bare_result[name] for name in ("p50", "p99", "throughput")}
    print(f"    ratio: p50 x{ratios['p50']:.1f}  p99 x{ratios['p99']:.1f}  throughput x{ratios['throughput']:.2f}"
          " (callback / bare)")
    verdict = "met" if app_result["p99"] < 100 else "NOT met"
    print(f"   target: p99 < 100 ms at {RATE} req/s — {verdict} ({app_result['p99']:.1f} ms)")


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "--bare":
        serve_bare(int(argv[1]))
        return
    runner: Callable[[], object] = lambda: asyncio.wait_for(run(), HARD_LIMIT_SECONDS)  # noqa: E731
    asyncio.run(runner())


if __name__ == "__main__":
    main(sys.argv[1:])
