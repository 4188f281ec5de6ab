"""The embedded development database: SecantusDB's ``secantusd-py`` as a child process.

SecantusDB is GPL-2.0, so it is never imported: it runs as a separate process speaking the
MongoDB wire protocol. The child
- lives in its own process group, so a terminal's Ctrl-C reaches only us and we stop it in order;
- gets PR_SET_PDEATHSIG with SIGKILL, so the kernel kills it if we die without cleaning up. Not
  SIGTERM: a server whose clients vanished mid-request was seen to hang in its SIGTERM shutdown,
  an orphan spinning forever; WiredTiger's journal makes a kill safe for the data;
- stores its data in ``storage_dir``, guarded by an exclusive lock file held by this process, so a
  second instance on the same directory fails at once with a clear message;
- runs ``--standalone``: without the replica-set advertisement the server keeps no oplog, which
  only change streams read and nothing here uses. Every document write then skips an oplog entry
  and its change description — a third of the server's CPU per outbox message (``bench/outbox.py``:
  drain ~360 → ~540 messages/s). SecantusDB runs multi-document transactions in this mode too, so
  the code and the tests are the same as against production's MongoDB replica set. One difference:
  PyMongo does not retry writes on a standalone server; correctness never rests on those retries
  (writes are conditional, keyed or idempotent, as they must be for several instances anyway).
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pymongo import MongoClient

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class EmbeddedDatabaseError(RuntimeError):
    """The embedded database could not be started (message in Chinese and English)."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.umask(0o077)  # every file the server creates is the owner's only (0600, directories 0700)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux: the process group teardown still applies


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _server_executable() -> str:
    beside_python = Path(sys.executable).with_name("secantusd-py")
    found = str(beside_python) if beside_python.exists() else shutil.which("secantusd-py")
    if not found:
        raise EmbeddedDatabaseError(
            "找不到嵌入式数据库 secantusd-py，请先安装依赖（make serve）/ secantusd-py not found; "
            "install the requirements first"
        )
    return found


def _owner_only(path: Path) -> None:
    """Tighten a directory to 0700 or a file to 0600 (and, for a directory from an older version, every
    file in it): database files hold residents' personal data."""
    if path.is_dir():
        for child in path.rglob("*"):
            child.chmod(0o700 if child.is_dir() else 0o600)
        path.chmod(0o700)
    elif path.exists():
        path.chmod(0o600)


class EmbeddedMongo:
    def __init__(self, storage_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.storage_dir = Path(storage_dir)
        self.host = host
        self.port = port
        self.process: subprocess.Popen | None = None
        self._lock_file = None

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    def start(self) -> None:
        """Lock the storage directory and launch the server; call ``wait_ready`` next.

        Must run on the main thread: PDEATHSIG fires when the *thread* that forked exits.
        """
        self.storage_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _owner_only(self.storage_dir)
        self._lock_storage()
        self.port = self.port or free_port(self.host)
        log_path = self.storage_dir.parent / "secantusd.log"
        with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as server_log:
            _owner_only(log_path)
            self.process = subprocess.Popen(
                [
                    _server_executable(), "--host", self.host, "--port", str(self.port),
                    "--storage-path", str(self.storage_dir), "--log-level", "WARNING", "--standalone",
                ],
                stdin=subprocess.DEVNULL, stdout=server_log, stderr=server_log,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        log.info("embedded database starting", extra={"pid": self.process.pid, "port": self.port})

    def _lock_storage(self) -> None:
        lock_path = self.storage_dir.parent / (self.storage_dir.name + ".lock")
        self._lock_file = os.fdopen(os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600), "a+")
        _owner_only(lock_path)
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise EmbeddedDatabaseError(
                f"数据目录 {self.storage_dir} 正被另一个实例使用，请先停止它或设置其他 DATA_DIR / "
                f"storage directory {self.storage_dir} is in use by another instance"
            ) from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(str(os.getpid()))
        self._lock_file.flush()

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise EmbeddedDatabaseError(
                f"嵌入式数据库启动失败（退出码 {self.process.returncode}），详见 "
                f"{self.storage_dir.parent / 'secantusd.log'} / embedded database exited early"
            )

    def _ping(self, client: MongoClient) -> bool:
        try:
            client.admin.command("ping")
            return True
        except Exception:
            return False

    def wait_ready_sync(self, timeout: float = 30.0) -> None:
        client = MongoClient(self.uri, serverSelectionTimeoutMS=250, connectTimeoutMS=250)
        try:
            deadline = time.monotonic() + timeout
            while not self._ping(client):
                self._check_alive()
                if time.monotonic() > deadline:
                    raise EmbeddedDatabaseError("嵌入式数据库启动超时 / embedded database start timed out")
                time.sleep(0.05)
        finally:
            client.close()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        await asyncio.to_thread(self.wait_ready_sync, timeout)

    def stop(self, timeout: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded database did not stop in time; killing it")
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
            log.info("embedded database stopped", extra={"returncode": process.returncode})
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
