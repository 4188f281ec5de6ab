"""Booking throughput and availability latency on the embedded database.

Prints
- bookings per second through the booking domain (one transaction per booking: booking insert, slot
  take, family quota, audit record, two reminders) on one contended slot (every client books the
  same slot; with and without the per-slot queue of the instance), on a full contended slot
  (attempts refused), and on uncontended slots (every booking its own slot);
- p50/p99 of the availability query for a 14-day horizon with 20 services: the domain call that
  ``GET /api/v1/slots`` makes, and the endpoint itself over HTTP;
- the embedded database's own ceiling for the same writes: one minimal transaction per booking
  (booking insert, seat update, audit insert, outbox inserts, quota update; documents shaped like
  the ones the domain wrote, no application code), contended (one slot, transactions queued per
  slot like the domain's queue) and uncontended (a slot per booking), with the same number of
  concurrent clients; and bookings/s divided by that ceiling (target >= 0.7).
The demo data (seed-demo) provides the institutions, the catalogue and 14 days of slots.
Usage: .venv/bin/python bench/booking.py   (about a minute)
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from pymongo.errors import PyMongoError  # noqa: E402

from bench.figures import quantile  # noqa: E402
from bot import db as database  # noqa: E402
from bot.app import create_app  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.embedded import EmbeddedMongo  # noqa: E402
from bot.errors import ApiError  # noqa: E402
from bot.keys import READINESS  # noqa: E402
from scheduling import bookings, catalogue, slots  # noqa: E402
from scheduling.booking_base import Policy  # noqa: E402
from scheduling.seed import CENTRE_ID, HOSPITAL_ID, seed_booking_demo  # noqa: E402

POLICY = Policy(max_active_bookings=5)
CONCURRENCY = 50
HORIZON_DAYS = 14
BOOKINGS = 400  # per measurement (contended, uncontended, ceilings); the unqueued and full runs use fewer


async def run_clients(jobs: list, concurrency: int) -> tuple[float, int, int]:
    """Run the coroutine factories ``jobs`` with ``concurrency`` workers; (seconds, ok, refused).
    A transaction that gave up (write conflicts past PyMongo's retry time on a loaded machine)
    counts as refused and is reported."""
    queue = list(reversed(jobs))
    ok = refused = 0

    async def worker() -> None:
        nonlocal ok, refused
        while queue:
            job = queue.pop()
            try:
                await job()
                ok += 1
            except ApiError:
                refused += 1
            except PyMongoError as exc:
                refused += 1
                print(f"  (a transaction gave up: {type(exc).__name__})")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, ok, refused


def booker(db, openid: str, slot_id: str, service_id: str, policy: Policy = POLICY):
    # one visitor per family (the phone derived from the openid): one person, one booking of a slot
    phone = f"139{int(hashlib.sha256(openid.encode()).hexdigest(), 16) % 10**8:08d}"
    request = bookings.BookingRequest(slot_id=slot_id, service_id=service_id, idempotency_key="bench",
                                      visitor={"name": "测试来访人", "phone": phone})
    return lambda: bookings.create_booking(db, openid, request, policy)


async def bench_bookings(db) -> dict[str, float]:
    centre_slots = await db.slots.find({"institution_id": CENTRE_ID, "start": {"$gt": datetime.now(UTC)}}) \
        .sort("start", 1).to_list(None)
    service_id = (await catalogue.services_of(db, CENTRE_ID))[0]["_id"]

    contended = centre_slots[0]["_id"]
    await db.slots.update_one({"_id": contended}, {"$set": {"capacity": 100_000}})
    n = BOOKINGS
    seconds, ok, _ = await run_clients([booker(db, f"contended-{i}", contended, service_id) for i in range(n)],
                                       CONCURRENCY)
    booked = (await db.slots.find_one({"_id": contended}))["booked"]
    rates = {"contended": ok / seconds}
    print(f"contended slot   : {ok / seconds:7.0f} bookings/s  ({ok} bookings of one slot by {CONCURRENCY} "
          f"concurrent clients in {seconds:.2f} s; slot booked = {booked})")

    unqueued = Policy(max_active_bookings=5, queue_per_slot=False)
    seconds, ok, _ = await run_clients([booker(db, f"unqueued-{i}", contended, service_id, unqueued)
                                        for i in range(BOOKINGS // 4)], CONCURRENCY)
    print(f"  without queue  : {ok / seconds:7.0f} bookings/s  ({ok} bookings; this instance's transactions "
          f"collide on the slot and retry after back-off, as separate instances would)")

    full = centre_slots[1]["_id"]
    await db.slots.update_one({"_id": full}, {"$set": {"capacity": 10}})
    attempts = BOOKINGS
    seconds, ok, refused = await run_clients(
        [booker(db, f"full-{i}", full, service_id) for i in range(attempts)], CONCURRENCY * 2)
    booked = (await db.slots.find_one({"_id": full}))["booked"]
    print(f"contended, full  : {attempts / seconds:7.0f} attempts/s  ({ok} booked, {refused} refused slot_full; "
          f"capacity 10, booked = {booked})")

    # uncontended: one seat per slot, every booking on its own slot (synthetic slots of the centre)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=30)
    documents = [{"_id": f"bench|{i}", "institution_id": CENTRE_ID, "kind": "centre", "date": "2099-01-01",
                  "start": start + timedelta(minutes=30 * i), "end": start + timedelta(minutes=30 * (i + 1)),
                  "capacity": 1, "booked": 0, "appointment_only": False, "status": "open"} for i in range(n)]
    await db.slots.insert_many(documents)
    seconds, ok, _ = await run_clients([booker(db, f"spread-{i}", d["_id"], service_id)
                                        for i, d in enumerate(documents)], CONCURRENCY)
    rates["uncontended"] = ok / seconds
    print(f"uncontended      : {ok / seconds:7.0f} bookings/s  ({ok} bookings on {n} slots by {CONCURRENCY} "
          f"concurrent clients in {seconds:.2f} s)")
    return rates


def _fresh(template: dict, **changes) -> dict:
    document = {k: v for k, v in template.items() if k != "_id"}
    document.update(changes)
    return document


async def bench_ceiling(client, db, rates: dict[str, float]) -> None:
    """The same writes as a booking, as one bare transaction each: what the database can do at most."""
    booking = await db.bookings.find_one({"openid": "spread-0"})
    audit_entry = await db.audit_log.find_one({"entity_id": booking["_id"]})
    reminders = await db.notifications.find({"openid": "spread-0"}).to_list(None)
    assert booking and audit_entry and reminders, "the uncontended run leaves a booking to copy"
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=60)
    counter = iter(range(10**9))

    def transaction(slot_id: str):
        i = next(counter)
        booking_id, openid = f"ceiling-{i}", f"ceiling-user-{i}"

        async def work(session) -> None:
            await db.bookings.insert_one(_fresh(booking, _id=booking_id, openid=openid, slot_id=slot_id,
                                                idempotency_key=f"ceiling-{i}"), session=session)
            await db.booking_quotas.update_one({"_id": openid, "active": {"$lt": POLICY.max_active_bookings}},
                                               {"$inc": {"active": 1}}, upsert=True, session=session)
            for reminder in reminders:
                await db.notifications.insert_one(_fresh(reminder, openid=openid, key=f"{reminder['key']}-{i}"),
                                                  session=session)
            await db.audit_log.insert_one(_fresh(audit_entry, entity_id=booking_id), session=session)
            taken = await db.slots.update_one({"_id": slot_id, "booked": {"$lt": 100_000}}, {"$inc": {"booked": 1}},
                                              session=session)
            assert taken.modified_count == 1

        async def run() -> None:
            async with client.start_session() as session:
                await session.with_transaction(work)
        return run

    contended = "ceiling|contended"
    await db.slots.insert_one({"_id": contended, "institution_id": CENTRE_ID, "kind": "centre", "date": "2099-02-01",
                               "start": start, "end": start + timedelta(minutes=30), "capacity": 100_000,
                               "booked": 0, "appointment_only": False, "status": "open"})
    queue = asyncio.Lock()  # one slot's transactions one after another, like the domain's per-slot queue

    def queued(job):
        async def run() -> None:
            async with queue:
                await job()
        return run

    n = BOOKINGS
    seconds, ok, _ = await run_clients([queued(transaction(contended)) for _ in range(n)], CONCURRENCY)
    ceiling = {"contended": ok / seconds}
    documents = [{"_id": f"ceiling|{i}", "institution_id": CENTRE_ID, "kind": "centre", "date": "2099-03-01",
                  "start": start + timedelta(days=1, minutes=30 * i),
                  "end": start + timedelta(days=1, minutes=30 * (i + 1)),
                  "capacity": 1, "booked": 0, "appointment_only": False, "status": "open"} for i in range(n)]
    await db.slots.insert_many(documents)
    seconds, ok, _ = await run_clients([transaction(d["_id"]) for d in documents], CONCURRENCY)
    ceiling["uncontended"] = ok / seconds
    for kind in ("contended", "uncontended"):
        ratio = rates[kind] / ceiling[kind]
        print(f"ceiling, {kind:<11}: {ceiling[kind]:7.0f} transactions/s (the same writes, bare); bookings/s ÷ "
              f"ceiling = {ratio:.2f} (target >= 0.7: {'met' if ratio >= 0.7 else 'NOT met'})")


async def availability(db, institution_id: str, service: dict) -> int:
    """What GET /api/v1/slots does for a service: check the service, find 14 days of slots, render."""
    found_service = await catalogue.get_service(db, service["_id"])
    assert found_service is not None and catalogue.offered_by(found_service, institution_id)
    today = slots.today_local()
    found = await slots.find_slots(db, institution_id, today, today + timedelta(days=HORIZON_DAYS - 1),
                                   min_minutes=found_service["duration_minutes"])
    return len([slots.slot_view(s) for s in found])


async def bench_availability(db, settings: Settings) -> None:
    services = (await catalogue.services_of(db, HOSPITAL_ID))[:20]
    centre_services = await catalogue.services_of(db, CENTRE_ID)
    pairs = [(HOSPITAL_ID, s) for s in services] + [(CENTRE_ID, s) for s in centre_services[:20 - len(services)]]
    assert len(pairs) == 20, "the demo catalogue should have 20 services"
    slot_count = sum([await availability(db, i, s) for i, s in pairs[:1]])
    centre_count = await availability(db, CENTRE_ID, centre_services[0])
    timings = []
    for _ in range(50):
        for institution_id, service in pairs:
            started = time.perf_counter()
            await availability(db, institution_id, service)
            timings.append((time.perf_counter() - started) * 1000)
    print(f"availability     : p50 {statistics.median(timings):.2f} ms, p99 {quantile(timings, 0.99):.2f} ms "
          f"(domain call, {len(timings)} queries over 20 services, {HORIZON_DAYS}-day horizon; "
          f"{slot_count} nursing / {centre_count} centre slots per answer)")

    app = create_app(settings, scheduler=False)
    async with TestClient(TestServer(app)) as client:
        await app[READINESS].wait()
        login = await client.post("/api/v1/auth/dev-login", json={"openid": "bench-resident"})
        headers = {"Authorization": f"Bearer {(await login.json())['token']}"}
        timings = []
        for _ in range(15):
            for institution_id, service in pairs:
                started = time.perf_counter()
                response = await client.get("/api/v1/slots", headers=headers,
                                            params={"institution_id": institution_id, "service_id": service["_id"]})
                await response.read()
                assert response.status == 200, await response.text()
                timings.append((time.perf_counter() - started) * 1000)
    print(f"GET /api/v1/slots: p50 {statistics.median(timings):.2f} ms, p99 {quantile(timings, 0.99):.2f} ms "
          f"(HTTP on the app, {len(timings)} requests)")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedMongo(Path(tmp) / "mongo")
        server.start()
        try:
            await server.wait_ready()
            settings = Settings.from_env({"APP_ENV": "development"}, mongodb_uri=server.uri, mongodb_db="bench",
                                         data_dir=Path(tmp), demo_staff_password="bench-only-password",
                                         log_level="WARNING")
            client = database.connect(server.uri)
            try:
                db = client[settings.mongodb_db]
                await database.ensure_indexes(db)
                await seed_booking_demo(client, db, settings)
                print(f"embedded database, {CONCURRENCY} concurrent clients, demo data of seed-demo")
                await bench_availability(db, settings)
                rates = await bench_bookings(db)
                await bench_ceiling(client, db, rates)
            finally:
                await client.close()
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
