"""MongoDB access through PyMongo's async API.

Indexes are declared next to the code that needs them with ``declare_indexes`` (at import time)
and created idempotently at start by ``ensure_indexes``. ``in_transaction`` runs a function in a
multi-document transaction and retries it on transient errors (write conflicts under contention).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from bot.config import Settings
from bot.embedded import EmbeddedMongo

T = TypeVar("T")

_DECLARED: dict[str, list[IndexModel]] = {}


def declare_indexes(collection: str, *indexes: IndexModel) -> None:
    existing = _DECLARED.setdefault(collection, [])
    names = {index.document["name"] for index in existing}
    existing.extend(index for index in indexes if index.document["name"] not in names)



async def ensure_indexes(db: AsyncDatabase) -> None:
    for collection, indexes in _DECLARED.items():
        if indexes:
            await db[collection].create_indexes(indexes)


def connect(uri: str) -> AsyncMongoClient:
    return AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000, appname="yibao-bot")


async def ping(db: AsyncDatabase) -> bool:
    try:
        await db.command("ping")
        return True
    except PyMongoError:
        return False


async def in_transaction(
    client: AsyncMongoClient, work: Callable[[AsyncClientSession], Awaitable[T]]
) -> T:
    """Run ``work(session)`` atomically; every operation in it must pass ``session=session``.

    PyMongo's ``with_transaction`` retries the whole function on transient errors (write
    conflicts under contention) and retries an unknown commit result, so ``work`` must have no
    side effects outside the database.
    """
    async with client.start_session() as session:
        return await session.with_transaction(work)



@asynccontextmanager
async def standalone_database(settings: Settings) -> AsyncIterator[tuple[AsyncMongoClient, AsyncDatabase]]:
    """The database for a command-line tool: the embedded server when no URI is set, indexes ensured."""
    embedded = EmbeddedMongo(settings.data_dir / "mongo") if settings.embedded_database else None
    if embedded:
        embedded.start()
    try:
        if embedded:
            await embedded.wait_ready()
        client = connect(embedded.uri if embedded else settings.mongodb_uri)
        try:
            db = client[settings.mongodb_db]
            await ensure_indexes(db)
            yield client, db
        finally:
            await client.close()
    finally:
        if embedded:
            embedded.stop()
