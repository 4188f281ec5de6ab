"""Resident booking API over HTTP: idempotent create, reads, cancel, reschedule, waitlist, patients."""

from __future__ import annotations

import asyncio

import pytest

from tests.booking_factories import ADDRESS, ASSESSMENT, CENTRE_SERVICE, NURSING_SERVICE, VISITOR, visitor, world
from tests.conftest import login


@pytest.fixture
async def api(client, db):
    client.world = await world(db)
    client.db = db
    return client


async def error_of(response) -> tuple[int, str, str]:
    body = await response.json()
    return response.status, body["error"]["code"], body["error"]["message"]


def centre_body(slot_id: str) -> dict:
    return {"slot_id": slot_id, "service_id": CENTRE_SERVICE, "visitor": VISITOR}


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def test_create_needs_login_and_an_idempotency_key(api):
    slot_id = await api.world.centre_slot()
    body = {"slot_id": slot_id, "service_id": CENTRE_SERVICE, "visitor": VISITOR}
    assert (await api.post("/api/v1/bookings", json=body, headers={"Idempotency-Key": "k"})).status == 401
    headers = await login(api, "fam-a")
    status, code, message = await error_of(await api.post("/api/v1/bookings", json=body, headers=headers))
    assert (status, code) == (400, "idempotency_key_required") and "Idempotency-Key" in message
    status, code, _ = await error_of(await api.post("/api/v1/bookings", json=body, headers=keyed(headers, "a b")))
    assert (status, code) == (400, "invalid_idempotency_key")
    assert await api.db.bookings.count_documents({}) == 0


async def test_centre_booking_round_trip(api):
    slot_id = await api.world.centre_slot()
    headers = await login(api, "fam-a")
    body = {"slot_id": slot_id, "service_id": CENTRE_SERVICE, "visitor": VISITOR}
    first = await api.post("/api/v1/bookings", json=body, headers=keyed(headers, "uuid-1"))
    assert first.status == 201, await first.text()
    booking = await first.json()
    assert booking["status"] == "booked" and booking["status_label"] == "已预约"
    assert booking["start"].endswith("+08:00") and "T09:00:00" in booking["start"]
    assert booking["service_name"] == "异地就医备案" and booking["can_cancel"] is True
    replay = await api.post("/api/v1/bookings", json=body, headers=keyed(headers, "uuid-1"))
    assert replay.status == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert (await replay.json())["id"] == booking["id"]
    listed = await (await api.get("/api/v1/bookings", headers=headers)).json()
    assert [b["id"] for b in listed["bookings"]] == [booking["id"]]
    upcoming = await (await api.get("/api/v1/bookings?upcoming=true", headers=headers)).json()
    assert len(upcoming["bookings"]) == 1
    detail = await (await api.get(f"/api/v1/bookings/{booking['id']}", headers=headers)).json()
    assert [(h["from"], h["to"]) for h in detail["history"]] == [(None, "booked")]
    assert detail["history"][0]["actor"] == {"kind": "resident"}
    cancelled = await api.post(f"/api/v1/bookings/{booking['id']}/cancel", headers=headers)
    assert cancelled.status == 200 and (await cancelled.json())["status"] == "cancelled"
    assert (await api.db.slots.find_one({"_id": slot_id}))["booked"] == 0
    again = await api.post(f"/api/v1/bookings/{booking['id']}/cancel", headers=headers)
    assert again.status == 200 and (await again.json())["status"] == "cancelled"  # cancel twice: unchanged


async def test_full_slot_and_unknown_slot(api):
    slot_id = await api.world.centre_slot(capacity=1, booked=1)
    headers = await login(api, "fam-a")
    response = await api.post("/api/v1/bookings", json=centre_body(slot_id),
                              headers=keyed(headers, "k"))
    assert await error_of(response) == (409, "slot_full", "该时段已约满")
    response = await api.post("/api/v1/bookings", json={"slot_id": "nope", "service_id": CENTRE_SERVICE},
                              headers=keyed(headers, "k2"))
    assert (await error_of(response))[:2] == (404, "slot_not_found")
    response = await api.post("/api/v1/bookings", json={"slot_id": slot_id}, headers=keyed(headers, "k3"))
    assert (await error_of(response))[:2] == (400, "invalid_field")


async def test_concurrent_identical_http_requests_make_one_booking(api):
    slot_id = await api.world.centre_slot(capacity=5)
    headers = keyed(await login(api, "fam-a"), "double-tap")
    body = {"slot_id": slot_id, "service_id": CENTRE_SERVICE, "visitor": VISITOR}
    responses = await asyncio.gather(*(api.post("/api/v1/bookings", json=body, headers=headers) for _ in range(10)))
    assert sorted(r.status for r in responses) == [200] * 9 + [201]
    assert len({(await r.json())["id"] for r in responses}) == 1
    assert (await api.db.slots.find_one({"_id": slot_id}))["booked"] == 1


async def test_another_family_can_neither_see_nor_change_a_booking(api):
    slot_id, other_slot = await api.world.centre_slot(), await api.world.centre_slot(hour=10)
    a, b = await login(api, "fam-a"), await login(api, "fam-b")
    created = await api.post("/api/v1/bookings", json=centre_body(slot_id),
                             headers=keyed(a, "k"))
    booking_id = (await created.json())["id"]
    for response in (
        await api.get(f"/api/v1/bookings/{booking_id}", headers=b),
        await api.post(f"/api/v1/bookings/{booking_id}/cancel", headers=b),
        await api.post(f"/api/v1/bookings/{booking_id}/reschedule", json={"slot_id": other_slot}, headers=b),
    ):
        assert (await error_of(response))[:2] == (404, "booking_not_found")
    # the same answer as for a booking that does not exist: existence is not revealed
    assert (await error_of(await api.get("/api/v1/bookings/000000000000000000000000", headers=b)))[:2] == (
        404, "booking_not_found")
    assert (await (await api.get("/api/v1/bookings", headers=b)).json())["bookings"] == []
    stored = await api.db.bookings.find_one({"_id": booking_id})
    assert stored["status"] == "booked" and stored["slot_id"] == slot_id


async def test_reschedule_over_http(api):
    slot_id, later = await api.world.centre_slot(), await api.world.centre_slot(days=4, hour=15)
    headers = await login(api, "fam-a")
    created = await (await api.post("/api/v1/bookings", json=centre_body(slot_id),
                                    headers=keyed(headers, "k"))).json()
    moved = await api.post(f"/api/v1/bookings/{created['id']}/reschedule", json={"slot_id": later}, headers=headers)
    assert moved.status == 200
    body = await moved.json()
    assert body["id"] == created["id"] and body["slot_id"] == later and "T15:00:00" in body["start"]
    same = await api.post(f"/api/v1/bookings/{created['id']}/reschedule", json={"slot_id": later}, headers=headers)
    assert (await error_of(same))[:2] == (400, "same_slot")


async def test_patients_and_a_nursing_request_over_http(api):
    headers = await login(api, "fam-a")
    bad = await api.post("/api/v1/patients", json={"name": "", "gender": "未知", "age": 200, "phone": "123",
                                                   "address": {"district": "婺城区"}}, headers=headers)
    status, code, message = await error_of(bad)
    assert (status, code) == (400, "invalid_patient") and "姓名" in message and "联系电话" in message
    created = await api.post("/api/v1/patients", json={
        "name": "王秀英", "gender": "女", "age": 82, "conditions": "高血压、糖尿病", "phone": "13912345678",
        "id_number": "11010519491231002X", "address": ADDRESS}, headers=headers)
    assert created.status == 201, await created.text()
    patient = await created.json()
    assert patient["phone"] == "13912345678" and patient["conditions"] == ["高血压", "糖尿病"]
    updated = await api.patch(f"/api/v1/patients/{patient['id']}", json={"age": 83}, headers=headers)
    assert (await updated.json())["age"] == 83
    other = await login(api, "fam-b")
    assert (await api.get(f"/api/v1/patients/{patient['id']}", headers=other)).status == 404
    assert (await api.delete(f"/api/v1/patients/{patient['id']}", headers=other)).status == 404

    slot_id = await api.world.nursing_slot()
    request = {"slot_id": slot_id, "service_id": NURSING_SERVICE, "patient_id": patient["id"],
               "assessment": ASSESSMENT}
    elsewhere = {"district": "兰溪市", "street": "x", "detail": "1 号"}
    outside = await api.post("/api/v1/bookings", json={**request, "address": elsewhere}, headers=keyed(headers, "n0"))
    assert (await error_of(outside))[:2] == (400, "outside_service_area")
    made = await api.post("/api/v1/bookings", json=request, headers=keyed(headers, "n1"))
    assert made.status == 201, await made.text()
    booking = await made.json()
    assert booking["status"] == "requested" and booking["patient"]["phone"] == "13912345678"
    assert booking["review_deadline"] and booking["cancel_deadline"]
    # deleting the patient leaves the booking's snapshot alone
    assert (await api.delete(f"/api/v1/patients/{patient['id']}", headers=headers)).status == 200
    detail = await (await api.get(f"/api/v1/bookings/{booking['id']}", headers=headers)).json()
    assert detail["patient"]["name"] == "王秀英"
    assert (await (await api.get("/api/v1/patients", headers=headers)).json())["patients"] == []
    documented = (await (await api.get("/api/v1/openapi.json")).json())["components"]["schemas"]["BookingPatient"]
    assert detail["patient"]["patient_id"] == patient["id"] and set(detail["patient"]) <= set(documented["properties"])


async def test_waitlist_over_http(api):
    slot_id = await api.world.centre_slot(capacity=1)
    holder, waiter = await login(api, "holder"), await login(api, "waiter")
    body = {"slot_id": slot_id, "service_id": CENTRE_SERVICE, "visitor": VISITOR}
    join = {"slot_id": slot_id, "service_id": CENTRE_SERVICE}
    early = await api.post("/api/v1/waitlist", json=join, headers=waiter)
    assert (await error_of(early))[:2] == (409, "slot_available")
    booking = await (await api.post("/api/v1/bookings", json=body, headers=keyed(holder, "h"))).json()
    joined = await api.post("/api/v1/waitlist", json=join, headers=waiter)
    assert joined.status == 201
    entry = await joined.json()
    assert entry["status"] == "waiting" and entry["position"] == 1
    await api.post(f"/api/v1/bookings/{booking['id']}/cancel", headers=holder)
    listed = await (await api.get("/api/v1/waitlist", headers=waiter)).json()
    [offer] = listed["entries"]
    assert offer["status"] == "offered" and offer["offer_expires_at"].endswith("+08:00")
    taken = await api.post("/api/v1/bookings", json=body, headers=keyed(await login(api, "third"), "t"))
    assert (await error_of(taken))[:2] == (409, "slot_full")
    assert (await api.post(f"/api/v1/waitlist/{entry['id']}/accept", headers=holder)).status == 404
    accepted = await api.post(f"/api/v1/waitlist/{entry['id']}/accept", json={"visitor": visitor("w")},
                              headers=waiter)
    assert accepted.status == 201, await accepted.text()
    again = await api.post(f"/api/v1/waitlist/{entry['id']}/accept", headers=waiter)
    assert again.status == 200 and (await again.json())["id"] == (await accepted.json())["id"]
    assert (await api.db.slots.find_one({"_id": slot_id}))["booked"] == 1


async def test_openapi_documents_every_booking_endpoint(api):
    document = await (await api.get("/api/v1/openapi.json")).json()
    for path, method in [
        ("/api/v1/bookings", "post"), ("/api/v1/bookings", "get"), ("/api/v1/bookings/{booking_id}", "get"),
        ("/api/v1/bookings/{booking_id}/cancel", "post"), ("/api/v1/bookings/{booking_id}/reschedule", "post"),
        ("/api/v1/waitlist", "post"), ("/api/v1/waitlist", "get"), ("/api/v1/waitlist/{entry_id}/accept", "post"),
        ("/api/v1/waitlist/{entry_id}/cancel", "post"), ("/api/v1/patients", "post"), ("/api/v1/patients", "get"),
        ("/api/v1/patients/{patient_id}", "patch"), ("/api/v1/patients/{patient_id}", "delete"),
        ("/api/v1/staff/bookings", "get"), ("/api/v1/staff/bookings/{booking_id}/confirm", "post"),
        ("/api/v1/staff/bookings/{booking_id}/reject", "post"), ("/api/v1/staff/bookings/{booking_id}/check-in",
                                                                 "post"),
        ("/api/v1/staff/bookings/{booking_id}/complete", "post"), ("/api/v1/staff/bookings/{booking_id}/no-show",
                                                                   "post"),
    ]:
        assert method in document["paths"][path], (path, method)
    for name in ("Booking", "WaitlistEntry", "Patient", "Address"):
        assert name in document["components"]["schemas"]
    routes = {(r.method.lower(), r.resource.canonical) for r in api.app.router.routes() if r.resource is not None}
    booking_routes = {(m, p) for m, p in routes if p.startswith(("/api/v1/bookings", "/api/v1/waitlist",
                                                                  "/api/v1/patients", "/api/v1/staff/bookings"))}
    for method, path in booking_routes:
        if method != "head":
            assert method in document["paths"].get(path, {}), (method, path)
