"""Our WeChat callback against WeRoBot, the best-known Python WeChat framework, in one run.

- ours: `python -m bot serve --no-scheduler` on the embedded database (its own SecantusDB child):
  every message is checked (signature, clock, sender, replay record), deduplicated, answered from
  the FAQ and recorded for its user — everything a real message costs;
- WeRoBot 1.13 under gunicorn with one sync worker, answering every text with a constant text
  (signature check only: no deduplication, no database).

Both get the same closed-loop generator (this process): CONCURRENCY requests in flight, signed
plain-mode text messages with distinct MsgIds and nonces, the sender's openid in the URL, FAQ
questions as texts. The rounds alternate (ours, WeRoBot, ours, …) so a change in the machine's load
hits both; the figures are pooled over the rounds. Prints each one's rate and p50/p99 and the ratio
ours/WeRoBot (target >= 1.0).

Needs `pip install -r requirements-bench.txt` (WeRoBot and gunicorn are never product
requirements). Usage: .venv/bin/python bench/vs_werobot.py   (about a minute; loopback only)
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from bench.callback import HOST, Load, questions, start, stop, wait_until  # noqa: E402
from bench.figures import quantile  # noqa: E402
from bot.embedded import free_port  # noqa: E402
from bot.wechat.callback import DEV_TOKEN  # noqa: E402

CONCURRENCY = 32
ROUNDS = 3
ROUND_SECONDS = 5.0
WARMUP_REQUESTS = 300
HARD_LIMIT_SECONDS = 240
CONSTANT_REPLY = "您好，已收到您的消息。"


def werobot_app():  # gunicorn's factory: `bench.vs_werobot:werobot_app()`
    import werobot

    robot = werobot.WeRoBot(token=DEV_TOKEN)

    @robot.text
    def constant(message, session=None) -> str:
        return CONSTANT_REPLY

    robot.config["SESSION_STORAGE"] = False
    return robot.wsgi


async def measure_round(load: Load, concurrency: int, seconds: float) -> tuple[float, list[float]]:
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        rate = await load.closed_loop(http, concurrency, seconds, latencies)
    return rate, latencies


async def warm(load: Load) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        await asyncio.gather(*(load.post(http, f"warm-{i % 20}") for i in range(WARMUP_REQUESTS)))
    load.answered = load.empty = load.errors = 0


async def run() -> None:
    texts = questions()
    with tempfile.TemporaryDirectory(prefix="bench-werobot-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "MONGODB_"))}
        ours_port, werobot_port = free_port(), free_port()
        ours_env = {**env, "HOST": HOST, "PORT": str(ours_port), "DATA_DIR": tmp, "LOG_LEVEL": "WARNING"}
        processes: list[subprocess.Popen] = []
        try:
            ours = start([sys.executable, "-m", "bot", "serve", "--no-scheduler"], ours_env)
            processes.append(ours)
            werobot = start([sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "sync",
                             "--bind", f"{HOST}:{werobot_port}", "--log-level", "warning",
                             "bench.vs_werobot:werobot_app()"], {**env, "PYTHONPATH": str(ROOT)})
            processes.append(werobot)
            await wait_until(f"http://{HOST}:{ours_port}/readyz", ours)
            await wait_until(f"http://{HOST}:{werobot_port}/", werobot, statuses=(403,))  # unsigned GET
            servers = {"ours": Load(f"http://{HOST}:{ours_port}", texts),
                       "WeRoBot": Load(f"http://{HOST}:{werobot_port}", texts)}
            for load in servers.values():
                await warm(load)
            print(f"callback vs WeRoBot: {CONCURRENCY} in flight, {ROUNDS} alternating rounds of {ROUND_SECONDS:.0f} s"
                  f" each, {os.cpu_count()} CPUs, load average before the run {os.getloadavg()[0]:.1f}")
            rates: dict[str, list[float]] = {name: [] for name in servers}
            latencies: dict[str, list[float]] = {name: [] for name in servers}
            for round_number in range(ROUNDS):
                for name, load in servers.items():
                    rate, timings = await measure_round(load, CONCURRENCY, ROUND_SECONDS)
                    rates[name].append(rate)
                    latencies[name] += timings
                print(f"  round {round_number + 1}: " + "   ".join(f"{name} {rates[name][-1]:6.0f} req/s"
                                                             for name in servers))
        finally:
            for process in processes:
                stop(process)
    totals = {}
    for name, load in servers.items():
        rate = sum(rates[name]) / len(rates[name])
        totals[name] = rate
        lat = latencies[name]
        print(f"{name:>9}: {rate:6.0f} req/s   p50 {quantile(lat, 0.5) * 1000:6.1f} ms   "
              f"p99 {quantile(lat, 0.99) * 1000:6.1f} ms   replies: {load.answered} text, {load.empty} success, "
              f"{load.errors} errors")
    ratio = totals["ours"] / totals["WeRoBot"]
    print(f"    ratio: ours / WeRoBot = {ratio:.2f} (target >= 1.0: {'met' if ratio >= 1.0 else 'NOT met'})")


def main() -> None:
    asyncio.run(asyncio.wait_for(run(), HARD_LIMIT_SECONDS))


if __name__ == "__main__":
    main()
