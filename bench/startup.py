"""Start-up cost of `python -m bot serve` on the embedded database, and of `make serve`.

Prints the time from process start to the first /readyz 200 and the resident memory of the app
(and of the embedded server) after start: three runs on one data directory, the first of which
also creates the storage (target: <= 3 s). Then `make serve` (which seeds the demo data in the
serving process when the database has none) from the command to the first /readyz 200 on an
already seeded database: one run to seed, three timed (target: <= 5 s). `make serve STAMP=` skips
make's re-install check of the virtual environment. Usage: .venv/bin/python bench/startup.py
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.embedded import free_port  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(data_dir: str) -> tuple[float, float, float, float]:
    port = free_port()
    env = {**os.environ, "APP_ENV": "development", "PORT": str(port), "DATA_DIR": data_dir, "MONGODB_URI": "",
           "LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--no-scheduler"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not ready(f"http://127.0.0.1:{port}/readyz"):
            if process.poll() is not None or time.perf_counter() - started > 60:
                raise SystemExit("the service did not become ready")
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        # CPU time spent until ready, app and database: on a loaded machine the wall time above
        # mostly measures the wait for a core, this what the start costs
        cpu = cpu_seconds(process.pid) + sum(cpu_seconds(child) for child in children(process.pid))
        time.sleep(0.5)
        app_rss = rss_mib(process.pid)
        db_rss = sum(rss_mib(child) for child in children(process.pid))
        return elapsed, app_rss, db_rss, cpu
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def make_serve(data_dir: str) -> float:
    """Seconds from `make serve` to the first /readyz 200."""
    port = free_port()
    env = {**os.environ, "PORT": str(port), "DATA_DIR": data_dir, "MONGODB_URI": "", "LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    process = subprocess.Popen(["make", "-s", "serve", "STAMP="], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while not ready(f"http://127.0.0.1:{port}/readyz"):
            if process.poll() is not None or time.perf_counter() - started > 120:
                raise SystemExit("make serve did not become ready")
            time.sleep(0.02)
        return time.perf_counter() - started
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def main() -> None:
    runs = []
    with tempfile.TemporaryDirectory() as data_dir:
        for _ in range(3):
            runs.append(one_run(data_dir))
    times = [r[0] for r in runs]
    print(f"startup (python -m bot serve, embedded database), 3 runs on one data dir; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  time to first /readyz 200: first {times[0]:.2f} s, median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s (target <= 3 s)")
    print(f"  CPU time until ready (app + database): median {statistics.median(r[3] for r in runs):.2f} s")
    print(f"  resident memory after start: app {runs[-1][1]:.0f} MiB, embedded database {runs[-1][2]:.0f} MiB")
    with tempfile.TemporaryDirectory() as data_dir:
        seeding = make_serve(data_dir)
        seeded = [make_serve(data_dir) for _ in range(3)]
    print(f"  make serve to first /readyz 200: {seeding:.2f} s seeding a new database, then on the seeded one "
          f"median {statistics.median(seeded):.2f} s, max {max(seeded):.2f} s (target <= 5 s)")


if __name__ == "__main__":
    main()
