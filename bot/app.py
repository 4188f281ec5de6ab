"""The application factory.

``create_app(settings)`` wires middlewares, routes and resources. Resources open and close in
``cleanup_ctx``; the database comes first. Start-up work that needs the database (indexes, the
FAQ index, slot generation …) runs in the background after the server listens, each step marked
in ``Readiness`` so ``/readyz`` answers 503 with a reason until all of it is done.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from bot import db as database
from bot import middlewares
from bot.config import Settings
from bot.embedded import EmbeddedMongo
from bot.jobs import JOBS, Job
from bot.keys import DB, MONGO, READINESS, SETTINGS
from bot.middlewares import MIDDLEWARES
from bot.readiness import Readiness

log = logging.getLogger(__name__)

StartupStep = Callable[[web.Application], Awaitable[None]]
CleanupContext = Callable[[web.Application], AsyncIterator[None]]



async def _ensure_indexes(app: web.Application) -> None:
    await database.ensure_indexes(app[DB])


DEMO_MARKER = {"_id": "demo_seeded"}  # in ``meta``: seed-demo ran on this database


async def seed_demo_once(app: web.Application) -> None:
    """``serve --seed-demo`` (``make serve``): seed the demo data in this process when the database
    has none yet, instead of a separate ``seed-demo`` run that starts the database once more."""
    from bot.demo import seed_demo

    db = app[DB]
    if await db.meta.find_one(DEMO_MARKER) is not None:
        return
    for line in await seed_demo(app[MONGO], db, app[SETTINGS]):
        print(line, flush=True)  # what was created, one-time passwords: for the developer's terminal
    await db.meta.update_one(DEMO_MARKER, {"$set": {"at": datetime.now(UTC)}}, upsert=True)


def startup_steps(*, serve_requests: bool = True, seed_demo: bool = False) -> list[tuple[str, StartupStep]]:
    """Work that needs the database, run in this order after it answers. Each capability adds its own.
    A process that serves no requests (the worker) needs no FAQ index (whose build starts before the
    database answers, see ``knowledge.reload.start_prebuild``)."""
    from bot.heap import freeze_startup_heap
    from bot.settlements.migration import startup_step as identity_verification_migration
    from knowledge.reload import startup_step as build_faq_index
    from scheduling.slot_jobs import refresh_slots

    steps: list[tuple[str, StartupStep]] = [("indexes", _ensure_indexes)]
    if seed_demo:
        steps.append(("demo", seed_demo_once))
    steps += [("slots", refresh_slots), ("identity_verification_migration", identity_verification_migration)]
    if serve_requests:
        steps.append(("faq_index", build_faq_index))
    steps.append(("heap", freeze_startup_heap))  # keep last: freezes what start-up built
    return steps


def capability_contexts(settings: Settings, *, scheduler: bool, serve_requests: bool = True) -> list[CleanupContext]:
    """Long-lived resources of the capabilities (HTTP clients, scheduler …), opened after the database."""
    from bot.chat.dispatch import chat_context
    from bot.jobs import scheduler_context
    from bot.notify.templates import templates_context
    from bot.settlements.identity_key import identity_key_context
    from bot.wechat.api import wechat_context
    from knowledge.reload import reload_context as faq_reload_context

    contexts: list[CleanupContext] = [wechat_context, templates_context, identity_key_context]
    if serve_requests:
        contexts += [chat_context, faq_reload_context]
    if scheduler:
        from bot.notify.dispatcher import dispatch_context

        contexts.append(scheduler_context)
        contexts.append(dispatch_context)  # after the scheduler: unwinds first, so dispatch ends gracefully
    return contexts


async def database_context(app: web.Application, steps: list[tuple[str, StartupStep]],
                           started: EmbeddedMongo | None = None) -> AsyncIterator[None]:
    """``started``: the embedded database, already launched by the caller (``serve`` launches it
    before importing the application, so the two start side by side)."""
    settings = app[SETTINGS]
    if any(name == "faq_index" for name, _ in steps):
        from knowledge.reload import start_prebuild

        start_prebuild(app)  # in a worker thread, while the database starts
    embedded: EmbeddedMongo | None = started
    if settings.embedded_database and embedded is None:
        embedded = EmbeddedMongo(settings.data_dir / "mongo")
        embedded.start()  # on the main thread, see EmbeddedMongo.start
    uri = embedded.uri if embedded else settings.mongodb_uri
    assert uri is not None
    client = database.connect(uri)
    app[MONGO] = client
    app[DB] = client[settings.mongodb_db]
    startup = asyncio.create_task(_run_startup(app, embedded, steps))
    try:
        yield
    finally:
        startup.cancel()
        await asyncio.gather(startup, return_exceptions=True)
        await client.close()
        if embedded:
            embedded.stop()


async def _run_startup(
    app: web.Application, embedded: EmbeddedMongo | None, startup: list[tuple[str, StartupStep]]
) -> None:
    readiness = app[READINESS]
    steps: list[tuple[str, StartupStep | None]] = [("database", None), *startup]
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


def jobs() -> list[Job]:
    """Every capability's periodic jobs."""
    from bot.notify import alarms, dispatcher
    from scheduling import booking_jobs, home_visit_jobs, slot_jobs

    return [Job("calendar-slots", slot_jobs.REFRESH_EVERY, slot_jobs.refresh_slots, exclusive=True),
            *booking_jobs.booking_jobs(), *dispatcher.dispatch_jobs(),
            *alarms.alarm_jobs(), *home_visit_jobs.jobs()]  # issue 16: alarms, credentials, ratings


def create_app(settings: Settings, *, scheduler: bool = True, serve_requests: bool = True,
               seed_demo: bool = False, embedded: EmbeddedMongo | None = None) -> web.Application:
    """``serve_requests=False`` (``python -m bot worker``): jobs only, without the FAQ index and chat;
    ``seed_demo``: seed the demo data at start when the database has none (``serve --seed-demo``);
    ``embedded``: the embedded database, already started (stopped with the app)."""
    from handlers import setup_routes  # handlers import bot modules; keep the import one-way
    from handlers.console import setup as setup_console

    app = web.Application(middlewares=MIDDLEWARES, client_max_size=settings.max_body_bytes)
    middlewares.install(app)  # security headers; the JSON envelope for aiohttp's own parser errors
    app[SETTINGS] = settings
    app[READINESS] = Readiness()
    app[JOBS] = jobs() if scheduler else []
    steps = startup_steps(serve_requests=serve_requests, seed_demo=seed_demo)
    app.cleanup_ctx.append(functools.partial(database_context, steps=steps, started=embedded))
    app.cleanup_ctx.extend(capability_contexts(settings, scheduler=scheduler, serve_requests=serve_requests))
    setup_routes(app)
    setup_console(app)  # Jinja2 templates of the staff console
    return app
