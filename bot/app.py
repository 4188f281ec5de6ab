"""The application factory.

``create_app(settings)`` wires middlewares, routes and resources. Resources open and close in
``cleanup_ctx``; the database comes first. Start-up work that needs the database (indexes, the
FAQ index, slot generation …) runs in the background after the server listens, each step marked
in ``Readiness`` so ``/readyz`` answers 503 with a reason until all of it is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from bot import db as database
from bot.config import Settings
from bot.embedded import EmbeddedMongo
from bot.keys import DB, MONGO, READINESS, SETTINGS
from bot.middlewares import MIDDLEWARES
from bot.readiness import Readiness

log = logging.getLogger(__name__)

StartupStep = Callable[[web.Application], Awaitable[None]]
CleanupContext = Callable[[web.Application], AsyncIterator[None]]



async def _ensure_indexes(app: web.Application) -> None:
    await database.ensure_indexes(app[DB])


def startup_steps() -> list[tuple[str, StartupStep]]:
    """Work that needs the database, run in this order after it answers. Each capability adds its own."""
    from bot.heap import freeze_startup_heap
    from knowledge.reload import startup_step as build_faq_index
    from scheduling.slot_jobs import refresh_slots

    return [("indexes", _ensure_indexes), ("slots", refresh_slots), ("faq_index", build_faq_index),
            ("heap", freeze_startup_heap)]  # keep last: freezes what start-up built


def capability_contexts(settings: Settings, *, scheduler: bool) -> list[CleanupContext]:
    """Long-lived resources of the capabilities (HTTP clients, scheduler …), opened after the database."""
    from bot.identity_key import identity_key_context
    from bot.templates import templates_context
    from bot.wechat_api import wechat_context
    from handlers.wechat_dispatch import chat_context
    from knowledge.reload import reload_context as faq_reload_context
    from scheduling.jobs import scheduler_context

    contexts: list[CleanupContext] = [wechat_context, chat_context, faq_reload_context, templates_context,
                                      identity_key_context]
    if scheduler:
        from scheduling.dispatch import dispatch_context

        contexts.append(scheduler_context)
        contexts.append(dispatch_context)  # after the scheduler: unwinds first, so dispatch ends gracefully
    return contexts


async def database_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    embedded: EmbeddedMongo | None = None
    if settings.embedded_database:
        embedded = EmbeddedMongo(settings.data_dir / "mongo")
        embedded.start()  # on the main thread, see EmbeddedMongo.start
    uri = embedded.uri if embedded else settings.mongodb_uri
    assert uri is not None
    client = database.connect(uri)
    app[MONGO] = client
    app[DB] = client[settings.mongodb_db]
    startup = asyncio.create_task(_run_startup(app, embedded))
    try:
        yield
    finally:
        startup.cancel()
        await asyncio.gather(startup, return_exceptions=True)
        await client.close()
        if embedded:
            embedded.stop()


async def _run_startup(app: web.Application, embedded: EmbeddedMongo | None) -> None:
    readiness = app[READINESS]
    steps = [("database", None), *startup_steps()]
    for name, _ in steps:
        readiness.expect(name)
    for name, step in steps:
        try:
            if step is None:
                await _wait_for_database(app, embedded)
            else:
                await step(app)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("start-up step failed", extra={"step": name})
            readiness.fail(name, f"{type(exc).__name__}: {exc}")
            return
        readiness.done(name)
        log.info("start-up step done", extra={"step": name})


async def _wait_for_database(app: web.Application, embedded: EmbeddedMongo | None) -> None:
    if embedded:
        await embedded.wait_ready()
    while not await database.ping(app[DB]):
        await asyncio.sleep(1)


def create_app(settings: Settings, *, scheduler: bool = True) -> web.Application:
    from handlers import setup_routes  # handlers import bot modules; keep the import one-way

    app = web.Application(middlewares=MIDDLEWARES, client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[READINESS] = Readiness()
    app.cleanup_ctx.append(database_context)
    app.cleanup_ctx.extend(capability_contexts(settings, scheduler=scheduler))
    setup_routes(app)
    return app
