"""A local journal of the messages WeChat accepted, written before the database hears of them.

Recording "sent" in the database takes a round trip, and under load several; a dispatcher that
dies in that time leaves notifications whose messages were delivered but look unsent, and the
instance that reclaims them sends them again. The journal closes most of that window for the
usual crash — a process killed and started again on the same machine and ``DATA_DIR`` (OOM kill,
deploy, crash loop): right after the API call returns, one ``write()`` appends the notification id
and channel to this process's file. The data is then in the kernel, so it survives the death of the
process (not of the machine), and it takes microseconds.

Each dispatcher process has its own file, ``DATA_DIR/outbox-journal/<host>-<pid>.log``, and holds
an exclusive ``flock`` on it while it lives. Before claiming, a dispatcher replays every file whose
lock it can take — its writer is dead — by marking those notifications sent (if they are not yet),
then deletes the file. A process empties its own file after a run in which every acceptance reached
the database. What the journal cannot cover: a crash between WeChat accepting and the ``write()``
(the answer in flight, microseconds to a few milliseconds), and a machine that never comes back
(another instance reclaims the notifications after their lease and sends them again).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

log = logging.getLogger(__name__)

DIRECTORY = "outbox-journal"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class AcceptanceJournal:
    def __init__(self, data_dir: Path, holder: str) -> None:
        self.directory = Path(data_dir) / DIRECTORY
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{_SAFE.sub('-', holder)}.log"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # live writer; released by the kernel on death
        self.unconfirmed = False  # an acceptance whose database write failed is only in the file

    def accepted(self, notification_id: Any, channel: str) -> None:
        os.write(self.fd, f"{notification_id} {channel}\n".encode())

    def confirm_all(self) -> None:
        """Every acceptance written so far reached the database: start the file afresh."""
        if not self.unconfirmed:
            os.ftruncate(self.fd, 0)

    async def replay(self, collection: Any) -> int:
        """Mark sent what the files of dead dispatchers (and our own unconfirmed entries) hold."""
        recovered = 0
        for path in sorted(self.directory.glob("*.log")):
            if path == self.path:
                if self.unconfirmed:
                    recovered += await _apply(path, collection)
                    self.unconfirmed = False
                    os.ftruncate(self.fd, 0)
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # another dispatcher replayed it just now
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its writer is alive
                recovered += await _apply(path, collection)
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        if recovered:
            log.warning("recovered acceptances of a dispatcher that died", extra={"count": recovered})
        return recovered

    def close(self) -> None:
        if not self.unconfirmed:
            self.path.unlink(missing_ok=True)
        os.close(self.fd)


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


async def _apply(path: Path, collection: Any) -> int:
    from bot.notify.outbox import PENDING, SENDING, SENT

    recovered = 0
    now = datetime.now(UTC)
    for line in _lines(path):
        parts = line.split()
        if len(parts) != 2:
            continue  # a line cut short by the crash: its write() never finished
        try:
            notification_id = ObjectId(parts[0])
        except InvalidId:
            continue
        result = await collection.update_one(
            {"_id": notification_id, "status": {"$in": [SENDING, PENDING]}},
            {"$set": {"status": SENT, "channel": parts[1], "sent_at": now, "updated_at": now,
                      "last_error": "recorded from the acceptance journal after a crash"},
             "$unset": {"lease_until": ""}})
        recovered += result.modified_count
    return recovered
