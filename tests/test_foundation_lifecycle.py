"""The embedded database's life as `python -m bot serve` lives it: start, stop, restart, crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pymongo import MongoClient

from bot.embedded import EmbeddedMongo, free_port

ROOT = Path(__file__).resolve().parents[1]


def _server_pids(storage: Path) -> list[int]:
    """Live secantusd-py processes that use ``storage`` (zombies excluded)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split(") ")[1][0]
        except OSError:
            continue
        if "secantusd-py" in cmdline and str(storage) in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def _wait_until(predicate, timeout: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _post_json(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status


class Serve:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        env = {**os.environ, "PORT": str(self.port), "DATA_DIR": str(data_dir), "MONGODB_URI": ""}
        self.log = data_dir / f"serve-{self.port}.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve", "--no-scheduler"], cwd=ROOT, env=env,
                stdout=log, stderr=log,
            )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self) -> None:
        assert _wait_until(lambda: _get(self.url("/readyz")) == 200), self.log.read_text()


@pytest.fixture
def data_dir(tmp_path: Path):
    yield tmp_path
    for pid in _server_pids(tmp_path):  # never leave a server behind, even when a test fails
        os.kill(pid, signal.SIGKILL)


def test_clean_stop_and_data_survives_restart(data_dir):
    first = Serve(data_dir)
    first.wait_ready()
    assert len(_server_pids(data_dir)) == 1
    assert _post_json(first.url("/api/v1/auth/dev-login"), b'{"openid": "survivor"}') == 200
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(30) == 0
    assert _server_pids(data_dir) == []

    second = Serve(data_dir)
    second.wait_ready()
    second.process.send_signal(signal.SIGINT)  # Ctrl-C
    assert second.process.wait(30) == 0
    assert _server_pids(data_dir) == []

    storage = EmbeddedMongo(data_dir / "mongo")
    storage.start()
    try:
        storage.wait_ready_sync()
        with MongoClient(storage.uri) as client:
            assert client["yibao"]["users"].find_one({"_id": "survivor"}) is not None
    finally:
        storage.stop()


def test_killed_app_leaves_no_orphan(data_dir):
    serve = Serve(data_dir)
    serve.wait_ready()
    assert len(_server_pids(data_dir)) == 1
    serve.process.kill()  # SIGKILL: no cleanup code runs in the app
    serve.process.wait(10)
    assert _wait_until(lambda: _server_pids(data_dir) == [], timeout=15)


def test_second_instance_on_the_same_storage_is_refused(data_dir):
    first = Serve(data_dir)
    first.wait_ready()
    try:
        second = Serve(data_dir)
        assert second.process.wait(30) == 3
        assert "正被另一个实例使用" in second.log.read_text()
        assert _get(first.url("/readyz")) == 200
    finally:
        first.process.send_signal(signal.SIGTERM)
        first.process.wait(30)
