"""Staff console page latency on the embedded database.

Prints p50/p99 of the two pages staff keep open all day, over HTTP on the real app (session
cookie, templates, the same queries), with a busy day's data:
- the clinic workbench (``/console/workbench``) with 200 nursing requests awaiting review (one
  page of 20 shown, each with its nurse picker) and the day's visits;
- the centre's day list (``/console/day``) with 1,000 bookings on the day (first page of 200).
The demo data (seed-demo) provides the institutions, nurses and catalogue; the bookings are one
real booking of each kind made through the domain, then copied.
Usage: .venv/bin/python bench/console.py   (about a minute)
"""

from __future__ import annotations

import asyncio
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from bson import ObjectId  # noqa: E402

from bench.figures import quantile  # noqa: E402
from bot import db as database  # noqa: E402
from bot.app import create_app  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.embedded import EmbeddedMongo  # noqa: E402
from bot.keys import READINESS  # noqa: E402
from scheduling import bookings, catalogue, patients  # noqa: E402
from scheduling.booking_base import BOOKINGS, Policy  # noqa: E402
from scheduling.seed import CENTRE_ID, HOSPITAL_ID, seed_booking_demo  # noqa: E402

PASSWORD = "bench-only-password"
DAY_BOOKINGS = 1000
PENDING = 200
ROUNDS = 100
ASSESSMENT = {"consciousness": "清醒", "mobility": "完全卧床", "allergies": "无",
              "current_conditions": "长期留置导尿管", "done_before": True}


async def _first_slot(db, institution_id: str, after: datetime) -> dict:
    return await db.slots.find_one({"institution_id": institution_id, "start": {"$gt": after}, "status": "open",
                                    "capacity": {"$gt": 0}}, sort=[("start", 1)])


async def seed_load(db) -> str:
    now = datetime.now(UTC)
    policy = Policy(max_active_bookings=5)
    centre_slot = await _first_slot(db, CENTRE_ID, now + timedelta(hours=1))
    centre_service = (await catalogue.services_of(db, CENTRE_ID))[0]
    template, _ = await bookings.create_booking(db, "bench-visitor", bookings.BookingRequest(
        slot_id=centre_slot["_id"], service_id=centre_service["_id"], idempotency_key="t"), policy)
    day_slots = await db.slots.find({"institution_id": CENTRE_ID, "date": centre_slot["date"]}).to_list(None)
    copies = []
    for n in range(DAY_BOOKINGS - 1):
        slot = day_slots[n % len(day_slots)]
        copies.append({**template, "_id": str(ObjectId()), "openid": f"visitor-{n}", "idempotency_key": f"k{n}",
                       "slot_id": slot["_id"], "start": slot["start"], "end": slot["end"]})
    await db[BOOKINGS].insert_many(copies)

    institution = await db.institutions.find_one({"_id": HOSPITAL_ID})
    area = (institution.get("service_area") or [{"district": "婺城区", "streets": ["城东街道"]}])[0]
    address = {"district": area["district"], "street": (area.get("streets") or ["城东街道"])[0], "detail": "1 号"}
    patient = await patients.create(db, "bench-family", {
        "name": "王秀英", "gender": "女", "age": 82, "conditions": ["脑梗后遗症"], "phone": "13912345678",
        "address": address})
    nursing_slot = await _first_slot(db, HOSPITAL_ID, now + timedelta(hours=6))
    nursing_service = next(s for s in await catalogue.services_of(db, HOSPITAL_ID) if s.get("kind") == "nursing")
    request, _ = await bookings.create_booking(db, "bench-family", bookings.BookingRequest(
        slot_id=nursing_slot["_id"], service_id=nursing_service["_id"], idempotency_key="n",
        patient_id=patient["_id"], assessment=ASSESSMENT), policy)
    await db[BOOKINGS].insert_many([{**request, "_id": str(ObjectId()), "openid": f"family-{n}",
                                     "idempotency_key": f"n{n}",
                                     "review_deadline": request["review_deadline"] + timedelta(seconds=n)}
                                    for n in range(PENDING - 1)])
    return centre_slot["date"]


async def _login(client: TestClient, username: str) -> None:
    page = await client.get("/console/login")
    token = re.search(r'name="_csrf" value="([^"]+)"', await page.text()).group(1)
    response = await client.post("/console/login", data={"_csrf": token, "username": username,
                                                         "password": PASSWORD}, allow_redirects=False)
    assert response.status == 303, await response.text()


async def timed(client: TestClient, path: str, expect: str) -> list[float]:
    body = await (await client.get(path)).text()
    assert expect in body, body[:800]
    timings = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        response = await client.get(path)
        await response.read()
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status == 200
    return timings


def report(name: str, timings: list[float], note: str) -> None:
    print(f"{name:<22}: p50 {statistics.median(timings):.1f} ms, p99 {quantile(timings, 0.99):.1f} ms ({note})")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedMongo(Path(tmp) / "mongo")
        server.start()
        try:
            await server.wait_ready()
            settings = Settings.from_env({}, mongodb_uri=server.uri, mongodb_db="bench", data_dir=Path(tmp),
                                         demo_staff_password=PASSWORD, log_level="WARNING")
            mongo = database.connect(server.uri)
            try:
                db = mongo[settings.mongodb_db]
                await database.ensure_indexes(db)
                await seed_booking_demo(mongo, db, settings)
                day = await seed_load(db)
            finally:
                await mongo.close()
            app = create_app(settings, scheduler=False)
            print(f"embedded database, {DAY_BOOKINGS} centre bookings on {day}, {PENDING} nursing requests pending; "
                  f"{ROUNDS} sequential requests per page over HTTP")
            async with TestClient(TestServer(app)) as clinic:
                await app[READINESS].wait()
                await _login(clinic, "demo-clinic")
                report("GET /console/workbench", await timed(clinic, "/console/workbench", f"{PENDING} 条"),
                       "20 requests of 200 with nurse pickers, today's visits")
                desk = TestClient(TestServer(app))
                await desk.start_server()
                try:
                    await _login(desk, "demo-centre")
                    report("GET /console/day", await timed(desk, f"/console/day?date={day}", f"共 {DAY_BOOKINGS} 条"),
                           f"first 200 of {DAY_BOOKINGS} bookings, by slot")
                finally:
                    await desk.close()
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
