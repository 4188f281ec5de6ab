"""Building the engine at start-up and rebuilding it when the corpus changes (hot reload).

Two things change the corpus: its files (polled by size and modification time every few seconds) and
the version counter in MongoDB (``faq_meta``, ``_id: "corpus"``, ``version``) that staff edits bump
with ``bump_version``. When either differs from what the engine in use was built from, a new engine is
built in a worker thread and installed by replacing one reference; requests keep using the old one
until then. A corpus that fails to load (a file saved half-way, a duplicate id) is logged once and the
old engine stays in service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from prometheus_client import Counter, Gauge
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

import knowledge
from bot.keys import DB, READINESS
from knowledge.corpus import DATA_DIR, CorpusError, fingerprint
from knowledge.engine import Engine

log = logging.getLogger(__name__)

META_COLLECTION = "faq_meta"
CORPUS_META_ID = "corpus"
POLL_SECONDS = 3.0

RELOADS = Counter("faq_index_reloads_total", "FAQ index rebuilds by result", ["result"])
ENTRIES = Gauge("faq_entries", "FAQ entries in the index in use")


async def read_version(db: AsyncDatabase) -> int:
    document = await db[META_COLLECTION].find_one({"_id": CORPUS_META_ID})
    return int(document.get("version", 0)) if document else 0


async def bump_version(db: AsyncDatabase) -> int:
    """Mark the corpus changed (staff edits call this); every instance rebuilds on its next poll."""
    document = await db[META_COLLECTION].find_one_and_update(
        {"_id": CORPUS_META_ID}, {"$inc": {"version": 1}}, upsert=True, return_document=ReturnDocument.AFTER)
    return int(document["version"])


class Reloader:
    """Watches one corpus directory and the version counter; ``check`` rebuilds when they change."""

    def __init__(self, db: AsyncDatabase | None, data_dir: Path = DATA_DIR) -> None:
        self.db = db
        self.data_dir = data_dir
        self._failed: tuple[str, int] | None = None

    async def _version(self) -> int:
        return await read_version(self.db) if self.db is not None else 0

    async def check(self) -> bool:
        """Build and install an engine unless the one in use was built from the corpus as it is now;
        True if a new one is in use. Without an engine in use a failed build raises CorpusError;
        with one, the failure is logged and the old engine stays."""
        current = knowledge.installed_engine()
        stamp = (fingerprint(self.data_dir), await self._version())
        if current is not None and (stamp in ((current.fingerprint, current.db_version), self._failed)):
            return False
        try:
            engine = await asyncio.to_thread(Engine.build, self.data_dir, db_version=stamp[1])
        except CorpusError as exc:
            RELOADS.labels("failed").inc()
            if current is None:
                raise
            self._failed = stamp
            log.error("FAQ corpus not reloaded, the previous index stays in use", extra={"error": str(exc)})
            return False
        knowledge.install(engine)
        self._failed = None
        ENTRIES.set(len(engine.corpus.entries))
        RELOADS.labels("ok").inc()
        log.info("FAQ index built", extra={"entries": len(engine.corpus.entries), "version": engine.db_version,
                                           "fingerprint": engine.fingerprint})
        return True

    async def run(self, interval: float = POLL_SECONDS) -> None:
        while True:
            await asyncio.sleep(interval)
            if knowledge.installed_engine() is None:
                continue  # the start-up step is building the first engine; a second build would only compete
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("FAQ reload check failed")


PREBUILD: web.AppKey[asyncio.Task[Engine]] = web.AppKey("faq_prebuild")


def start_prebuild(app: web.Application, data_dir: Path = DATA_DIR) -> None:
    """Start building the engine in a worker thread at once, before the database answers (the
    build needs it only for the version counter, which is 0 until staff edit the corpus): the
    start-up step then installs this engine if the counter agrees, instead of building one."""
    if knowledge.installed_engine() is None:
        app[PREBUILD] = asyncio.create_task(asyncio.to_thread(Engine.build, data_dir, db_version=0))


async def startup_step(app: web.Application) -> None:
    """Start-up: have the index built before /readyz says ready (an engine already built from the same
    corpus in this process is kept). The build, in a worker thread, also loads jieba's dictionary."""
    prebuilt = app.get(PREBUILD)
    if prebuilt is not None:
        try:
            engine = await prebuilt
        except CorpusError:
            engine = None  # the check below builds again and reports the error
        if (engine is not None and knowledge.installed_engine() is None
                and (engine.fingerprint, engine.db_version) == (fingerprint(), await read_version(app[DB]))):
            knowledge.install(engine)
            ENTRIES.set(len(engine.corpus.entries))
            RELOADS.labels("ok").inc()
            log.info("FAQ index built", extra={"entries": len(engine.corpus.entries), "version": engine.db_version,
                                               "fingerprint": engine.fingerprint})
    await Reloader(app[DB]).check()
    engine = knowledge.current_engine()
    app[READINESS].detail["faq"] = {"entries": len(engine.corpus.entries), "documents": engine.index.n_docs,
                                    "version": engine.db_version}


async def reload_context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the hot-reload watcher runs for the life of the app."""
    task = asyncio.create_task(Reloader(app[DB]).run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
