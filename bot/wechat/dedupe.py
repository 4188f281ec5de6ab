"""Deduplication of WeChat callback deliveries, shared by every instance through MongoDB.

WeChat retries a message it got no answer for within 5 s (3 tries in all), and the retries may
reach different instances. The first delivery *claims* the message (insert into
``wechat_dedupe`` with a unique ``_id``); the others wait for the outcome it stores and answer the
same.

Key: ``msg:<MsgId>`` for messages, ``event:<FromUserName>:<CreateTime>:<Event>:<EventKey>`` for
events (which carry no MsgId; two menu clicks in the same second differ by their EventKey).

Replays. In plain mode the signature covers only token, timestamp and nonce, not the body, so a
captured URL could be POSTed again within the 5-minute clock window with another body. The claim
therefore also records the request's (timestamp, nonce) with a digest of its body
(``nonce:<timestamp>:<nonce>``, in the same bulk write): a second use of the pair with the same body
is a WeChat retry and answers like one; with another body it is refused (``ReplayedError``). Safe
mode needs no record: ``msg_signature`` covers the encrypted body.

Outcome (``wechat_replies``, same ``_id``): ``{status: "done", reply}`` once the handler answered,
or ``{status: "late"}`` when it missed the passive-reply deadline — the caller answered ``success``
and the reply goes out later as a customer-service message (recorded on the same document as
``late_reply``/``late_delivery``); deliveries of a late message answer ``success`` too, so the user
does not get the reply twice. Only the delivery that claimed a key writes its outcome, once, and it
decides between done and late in memory: claims and outcomes are plain inserts, which the database
handles several times faster than updates and which can be group-committed (``bot.group_commit``).
Both collections expire after ``TTL``.

The winner of a crashed instance is not taken over: WeChat stops retrying after about 15 s, long
before anyone could tell a crash from a slow handler.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import DeleteOne, IndexModel, InsertOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.db import declare_indexes
from bot.group_commit import GroupCommit, write, write_all

COLLECTION = "wechat_dedupe"
REPLIES = "wechat_replies"
TTL = timedelta(hours=1)
DONE, LATE = "done", "late"

# The stored reply: {"type": "text", "content": str} | {"type": "transfer"} | {"type": "empty"}
EMPTY: dict[str, Any] = {"type": "empty"}

for _collection in (COLLECTION, REPLIES):
    declare_indexes(_collection, IndexModel("expires_at", expireAfterSeconds=0, name="expires_ttl"))


class ReplayedError(Exception):
    """A (timestamp, nonce) pair used again with a different body: refuse the request."""


def key_for(fields: dict[str, Any]) -> str:
    """The dedupe key of a parsed callback message (see ``bot.wechat.callback.parse_xml``)."""
    sender, created = fields["FromUserName"], fields["CreateTime"].strip()
    if fields["MsgType"].strip().lower() == "event":
        event = str(fields.get("Event", "")).strip().lower()
        event_key = fields.get("EventKey")
        return f"event:{sender}:{created}:{event}:{event_key.strip() if isinstance(event_key, str) else ''}"
    msg_id = str(fields.get("MsgId", "")).strip()
    return f"msg:{msg_id}" if msg_id else f"msg:{sender}:{created}:{fields['MsgType'].strip().lower()}"


def _stamps() -> dict[str, datetime]:
    now = datetime.now(UTC)
    return {"at": now, "expires_at": now + TTL}


def body_digest(body: bytes | str) -> str:
    return hashlib.blake2b(body.encode() if isinstance(body, str) else body, digest_size=16).hexdigest()


async def claim(db: AsyncDatabase, key: str, group: GroupCommit | None = None,
                nonce: tuple[str, str, str] | None = None) -> bool:
    """True for exactly one caller per key (within ``TTL``). ``nonce``: the plain-mode request's
    (timestamp, nonce, ``body_digest``), recorded in the same write; raises ``ReplayedError``
    when the pair was used before with another body."""
    stamps = _stamps()
    ops = [InsertOne({"_id": key, **stamps})]
    if nonce is not None:
        timestamp, once, digest = nonce
        nonce_id = f"nonce:{timestamp}:{once}"
        ops.append(InsertOne({"_id": nonce_id, "digest": digest, **stamps}))
    errors = await write_all(db, COLLECTION, ops, group)
    for error in errors:
        if error is not None and not isinstance(error, DuplicateKeyError):
            raise error
    claimed = errors[0] is None
    if nonce is not None and errors[1] is not None:
        stored = await db[COLLECTION].find_one({"_id": nonce_id}, {"digest": 1})
        if stored is None or stored.get("digest") != nonce[2]:
            if claimed:  # another body under a used nonce: the claim must not block the real message
                await write(db, COLLECTION, DeleteOne({"_id": key}))
            raise ReplayedError(nonce_id)
    return claimed


async def finish(db: AsyncDatabase, key: str, reply: dict[str, Any], group: GroupCommit | None = None) -> None:
    """Store the reply that every delivery of ``key`` answers."""
    await write(db, REPLIES, InsertOne({"_id": key, "status": DONE, "reply": reply, **_stamps()}), group)


async def mark_late(db: AsyncDatabase, key: str, group: GroupCommit | None = None) -> None:
    """The deadline passed: deliveries of ``key`` answer ``success`` from now on."""
    await write(db, REPLIES, InsertOne({"_id": key, "status": LATE, **_stamps()}), group)


async def note_late_delivery(db: AsyncDatabase, key: str, reply: dict[str, Any], outcome: str) -> None:
    """What became of a late reply: ``sent``, ``failed <errcode>`` or ``nothing to send``."""
    await db[REPLIES].update_one(
        {"_id": key}, {"$set": {"late_reply": reply, "late_delivery": outcome, "finished_at": datetime.now(UTC)}}
    )


async def wait_for_reply(db: AsyncDatabase, key: str, timeout: float) -> dict[str, Any] | None:
    """The reply stored by the delivery that claimed ``key``: ``EMPTY`` if it was late, None if it
    is still working when ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        document = await db[REPLIES].find_one({"_id": key}, {"status": 1, "reply": 1})
        if document is not None:
            return document["reply"] if document["status"] == DONE else EMPTY
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.2)
