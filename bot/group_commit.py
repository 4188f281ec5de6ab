"""Group commit for hot single-document writes: concurrent writes to one collection go to the
database together in one unordered ``bulk_write``.

An idle collection sends a write at once (no added delay); writes that arrive while a bulk write
to that collection is in flight wait for it and then go out together in the next one, and while
writes keep coming (the previous batch ended less than ``busy_window`` ago) a batch lingers for
``linger`` seconds to gather more. Under load this turns thousands of single writes per second
into a few hundred bulk commands, which is what lets the WeChat callback keep its latency at
hundreds of messages per second on a small machine (see bench/callback.py).

Each caller still gets its own outcome: ``DuplicateKeyError`` for its own duplicate insert, the
error of the batch otherwise. The writes are independent (unordered, no transaction): use this
only for writes that need neither a transaction nor a per-write match count.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo import DeleteOne, InsertOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

WriteOp = InsertOne | UpdateOne | DeleteOne
DUPLICATE_KEY = 11000


def _error_for(write_error: dict[str, Any]) -> Exception:
    code = write_error.get("code")
    if code == DUPLICATE_KEY:
        return DuplicateKeyError(write_error.get("errmsg", "duplicate key"), code, write_error)
    return OperationFailure(write_error.get("errmsg", "write failed"), code, write_error)


class _Caller:
    """One caller's ops in the queue and the future that gets their errors (None for success)."""

    __slots__ = ("future", "ops")

    def __init__(self, ops: list[WriteOp], future: asyncio.Future[list[Exception | None]]) -> None:
        self.ops = ops
        self.future = future


class _Collection:
    def __init__(self, db: AsyncDatabase, name: str, max_batch: int, linger: float, busy_window: float) -> None:
        self.collection = db[name]
        self.max_batch = max_batch
        self.linger = linger
        self.busy_window = busy_window
        self.pending: list[_Caller] = []
        self.flusher: asyncio.Task[None] | None = None
        self.last_flush_end = float("-inf")

    async def write(self, op: WriteOp) -> None:
        (error,) = await self.write_all([op])
        if error is not None:
            raise error

    async def write_all(self, ops: list[WriteOp]) -> list[Exception | None]:
        """Queue ``ops`` together (never split across bulk writes) and return each one's error or None."""
        future: asyncio.Future[list[Exception | None]] = asyncio.get_running_loop().create_future()
        self.pending.append(_Caller(ops, future))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush())
        return await asyncio.shield(future)  # a cancelled caller does not take the batch down with it

    def _next_batch(self) -> list[_Caller]:
        size = 0
        for count, caller in enumerate(self.pending):
            size += len(caller.ops)
            if size > self.max_batch and count:
                batch, self.pending = self.pending[:count], self.pending[count:]
                return batch
        batch, self.pending = self.pending, []
        return batch

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        busy = loop.time() - self.last_flush_end < self.busy_window
        # let writes issued in the same loop iteration (or, when busy, the next few ms) join this batch
        await asyncio.sleep(self.linger if busy else 0)
        while self.pending:
            batch = self._next_batch()
            ops = [op for caller in batch for op in caller.ops]
            errors: dict[int, Exception] = {}
            failure: Exception | None = None
            try:
                await self.collection.bulk_write(ops, ordered=False)
            except BulkWriteError as exc:
                errors = {e["index"]: _error_for(e) for e in exc.details.get("writeErrors", [])}
                if exc.details.get("writeConcernErrors"):
                    failure = exc
            except Exception as exc:  # the whole batch failed (network, server): every caller learns it
                failure = exc
            index = 0
            for caller in batch:
                count = len(caller.ops)
                if not caller.future.done():
                    caller.future.set_result([failure or errors.get(i) for i in range(index, index + count)])
                index += count
            self.last_flush_end = loop.time()


class GroupCommit:
    """Group-committed writes to the collections of one database (one per event loop)."""

    def __init__(self, db: AsyncDatabase, *, max_batch: int = 500, linger: float = 0.003,
                 busy_window: float = 0.02) -> None:
        self.db = db
        self.max_batch = max_batch
        self.linger = linger
        self.busy_window = busy_window
        self._collections: dict[str, _Collection] = {}

    async def write(self, collection: str, op: WriteOp) -> None:
        target = self._collections.get(collection)
        if target is None:
            target = self._collections[collection] = _Collection(
                self.db, collection, self.max_batch, self.linger, self.busy_window)
        await target.write(op)

    async def write_all(self, collection: str, ops: list[WriteOp]) -> list[Exception | None]:
        target = self._collections.get(collection)
        if target is None:
            target = self._collections[collection] = _Collection(
                self.db, collection, self.max_batch, self.linger, self.busy_window)
        return await target.write_all(ops)


async def write_all(db: AsyncDatabase, collection: str, ops: list[WriteOp],
                    group: GroupCommit | None = None) -> list[Exception | None]:
    """``ops`` in one unordered bulk write (through ``group`` when given, with other callers'
    writes): each op's error (DuplicateKeyError for a duplicate insert) or None."""
    if group is not None:
        return await group.write_all(collection, ops)
    try:
        await db[collection].bulk_write(ops, ordered=False)
    except BulkWriteError as exc:
        if exc.details.get("writeConcernErrors"):
            return [exc] * len(ops)
        errors = {e["index"]: _error_for(e) for e in exc.details.get("writeErrors", [])}
        return [errors.get(index) for index in range(len(ops))]
    return [None] * len(ops)


async def write(db: AsyncDatabase, collection: str, op: WriteOp, group: GroupCommit | None = None) -> None:
    """``op`` through ``group`` when given, else alone; a duplicate insert raises DuplicateKeyError."""
    if group is not None:
        await group.write(collection, op)
        return
    try:
        await db[collection].bulk_write([op], ordered=False)
    except BulkWriteError as exc:
        write_errors = exc.details.get("writeErrors", [])
        if write_errors:
            raise _error_for(write_errors[0]) from None
        raise
