"""Staff booking API over HTTP: the permission matrix (role, institution, a nurse's own visits),
the nursing review flow and contact masking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.accounts import staff
from tests.booking_factories import (
    ASSESSMENT,
    CENTRE,
    CENTRE_SERVICE,
    CLINIC,
    NURSING_SERVICE,
    OTHER_CLINIC,
    make_patient,
    visitor,
    world,
)
from tests.conftest import login

PASSWORD = "staff-password-for-tests"
ACCOUNTS = {
    "admin-all": (staff.ADMIN, None, None),
    "desk": (staff.CENTRE_STAFF, CENTRE, None),
    "clinic": (staff.CLINIC_STAFF, CLINIC, None),
    "clinic-y": (staff.CLINIC_STAFF, OTHER_CLINIC, None),
    "nurse-lv": (staff.NURSE, CLINIC, "nurse-lvli"),
    "nurse-ch": (staff.NURSE, CLINIC, "nurse-chen"),
}


class StaffLogins:
    """Bearer headers of the test accounts, each created and signed in when first used (Argon2 is slow)."""

    def __init__(self, client, db) -> None:
        self.client, self.db, self.headers = client, db, {}

    async def __call__(self, username: str) -> dict[str, str]:
        if username not in self.headers:
            role, institution_id, nurse_id = ACCOUNTS[username]
            await staff.create_or_update(self.db, username, PASSWORD, role, institution_id, nurse_id=nurse_id)
            response = await self.client.post("/api/v1/staff/login",
                                              json={"username": username, "password": PASSWORD})
            self.headers[username] = {"Authorization": f"Bearer {(await response.json())['token']}"}
        return self.headers[username]


@pytest.fixture
async def api(client, db):
    client.world = await world(db)
    client.db = db
    client.staff = StaffLogins(client, db)
    return client


async def nursing_request(api, openid: str = "fam-a", hour: int = 9) -> dict:
    patient = await make_patient(api.db, openid)
    headers = {**await login(api, openid), "Idempotency-Key": f"{openid}-{hour}"}
    response = await api.post("/api/v1/bookings", headers=headers, json={
        "slot_id": await api.world.nursing_slot(hour=hour), "service_id": NURSING_SERVICE,
        "patient_id": patient["_id"], "assessment": ASSESSMENT})
    assert response.status == 201, await response.text()
    return await response.json()


async def centre_booking(api, openid: str = "fam-c") -> dict:
    headers = {**await login(api, openid), "Idempotency-Key": "c"}
    response = await api.post("/api/v1/bookings", headers=headers,
                              json={"slot_id": await api.world.centre_slot(), "service_id": CENTRE_SERVICE,
                                    "visitor": visitor(openid)})
    return await response.json()


async def time_comes(api, booking: dict, minutes_ago: int = 5) -> None:
    """Let the booking's time come: move its slot time to just now (staff actions respect time)."""
    start = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    await api.db.bookings.update_one({"_id": booking["id"]},
                                     {"$set": {"start": start, "end": start + timedelta(minutes=30)}})


async def code(response) -> tuple[int, str]:
    return response.status, (await response.json())["error"]["code"]


async def test_staff_endpoints_need_a_staff_login(api):
    booking = await centre_booking(api)
    resident = await login(api, "fam-c")
    for path in ("/api/v1/staff/bookings", f"/api/v1/staff/bookings/{booking['id']}"):
        assert (await api.get(path)).status == 401
        assert (await api.get(path, headers=resident)).status == 401
    assert (await api.post(f"/api/v1/staff/bookings/{booking['id']}/check-in", headers=resident)).status == 401


async def test_clinic_x_cannot_see_or_act_on_clinic_y(api):
    booking = await nursing_request(api)
    other = await api.staff("clinic-y")
    assert await code(await api.get(f"/api/v1/staff/bookings/{booking['id']}", headers=other)) == (403, "forbidden")
    for action, body in (("confirm", {"nurse_id": "nurse-other"}), ("reject", {"reason": "x"}),
                         ("cancel", {"reason": "x"})):
        response = await api.post(f"/api/v1/staff/bookings/{booking['id']}/{action}", json=body, headers=other)
        assert await code(response) == (403, "forbidden"), action
    listed = await (await api.get("/api/v1/staff/bookings", headers=other)).json()
    assert listed["bookings"] == []
    response = await api.get(f"/api/v1/staff/bookings?institution_id={CLINIC}", headers=other)
    assert response.status == 403
    assert (await api.db.bookings.find_one({"_id": booking["id"]}))["status"] == "requested"


async def test_roles_are_checked_per_action(api):
    nursing = await nursing_request(api)
    centre = await centre_booking(api)
    desk, clinic = await api.staff("desk"), await api.staff("clinic")
    # the centre desk cannot confirm a nursing request, a clinic cannot check in at the centre
    assert (await api.post(f"/api/v1/staff/bookings/{nursing['id']}/confirm", json={"nurse_id": "nurse-lvli"},
                           headers=desk)).status == 403
    assert (await api.post(f"/api/v1/staff/bookings/{centre['id']}/check-in", headers=clinic)).status == 403
    # a nurse cannot confirm or reject
    nurse = await api.staff("nurse-lv")
    for action, body in (("confirm", {"nurse_id": "nurse-lvli"}), ("reject", {"reason": "x"})):
        response = await api.post(f"/api/v1/staff/bookings/{nursing['id']}/{action}", json=body, headers=nurse)
        assert response.status == 403
    early = await api.post(f"/api/v1/staff/bookings/{centre['id']}/check-in", headers=desk)
    assert await code(early) == (409, "check_in_too_early")
    await time_comes(api, centre)
    checked = await api.post(f"/api/v1/staff/bookings/{centre['id']}/check-in", headers=desk)
    assert checked.status == 200 and (await checked.json())["status"] == "checked_in"
    done = await api.post(f"/api/v1/staff/bookings/{centre['id']}/complete", headers=desk)
    assert (await done.json())["status"] == "completed"


async def test_review_flow_and_nurse_sees_only_her_own_visits(api):
    first = await nursing_request(api, "fam-a", hour=9)
    second = await nursing_request(api, "fam-b", hour=14)
    clinic = await api.staff("clinic")
    listed = await (await api.get("/api/v1/staff/bookings?status=requested", headers=clinic)).json()
    assert {b["id"] for b in listed["bookings"]} == {first["id"], second["id"]}
    # staff of the handling institution see the contact details whole
    assert listed["bookings"][0]["patient"]["phone"] == "13912345678"
    # the global admin may act everywhere but sees them masked
    admin = await api.staff("admin-all")
    admin_view = await (await api.get(f"/api/v1/staff/bookings/{first['id']}", headers=admin)).json()
    assert admin_view["patient"]["phone"] == "139****5678"
    assert admin_view["patient"]["id_number"] == "110105********002X"

    missing = await api.post(f"/api/v1/staff/bookings/{first['id']}/confirm", json={}, headers=clinic)
    assert await code(missing) == (400, "invalid_field")
    unqualified = await api.post(f"/api/v1/staff/bookings/{first['id']}/confirm", json={"nurse_id": "nurse-other"},
                                 headers=clinic)
    assert await code(unqualified) == (400, "nurse_not_found")
    confirmed = await api.post(f"/api/v1/staff/bookings/{first['id']}/confirm", json={"nurse_id": "nurse-lvli"},
                               headers=clinic)
    assert confirmed.status == 200, await confirmed.text()
    assert (await confirmed.json())["nurse"]["name"] == "吕丽"
    no_reason = await api.post(f"/api/v1/staff/bookings/{second['id']}/reject", json={}, headers=clinic)
    assert await code(no_reason) == (400, "reason_required")
    rejected = await api.post(f"/api/v1/staff/bookings/{second['id']}/reject", json={"reason": "超出服务时间"},
                              headers=clinic)
    assert (await rejected.json())["status_reason"] == "超出服务时间"

    mine, theirs = await api.staff("nurse-lv"), await api.staff("nurse-ch")
    assert [b["id"] for b in (await (await api.get("/api/v1/staff/bookings", headers=mine)).json())["bookings"]] \
        == [first["id"]]
    assert (await (await api.get("/api/v1/staff/bookings", headers=theirs)).json())["bookings"] == []
    assert (await api.get(f"/api/v1/staff/bookings/{first['id']}", headers=theirs)).status == 403
    assert (await api.post(f"/api/v1/staff/bookings/{first['id']}/start-trip", headers=theirs)).status == 403
    too_early = await api.post(f"/api/v1/staff/bookings/{first['id']}/start-trip", headers=mine)
    assert await code(too_early) == (409, "trip_too_early")
    await time_comes(api, first)
    for action, status in (("start-trip", "on_the_way"), ("start-service", "in_service"), ("complete", "completed")):
        response = await api.post(f"/api/v1/staff/bookings/{first['id']}/{action}", headers=mine)
        assert response.status == 200 and (await response.json())["status"] == status
    detail = await (await api.get(f"/api/v1/staff/bookings/{first['id']}", headers=clinic)).json()
    assert [h["to"] for h in detail["history"]] == ["requested", "confirmed", "on_the_way", "in_service",
                                                     "completed"]
    assert detail["history"][1]["actor"]["id"] == "clinic"
    family = await (await api.get(f"/api/v1/bookings/{first['id']}", headers=await login(api, "fam-a"))).json()
    assert family["status"] == "completed" and "id" not in family["history"][1]["actor"]


async def test_staff_cancel_after_the_family_deadline(api):
    booking = await nursing_request(api)
    clinic = await api.staff("clinic")
    no_reason = await api.post(f"/api/v1/staff/bookings/{booking['id']}/cancel", headers=clinic)
    assert await code(no_reason) == (400, "reason_required")
    response = await api.post(f"/api/v1/staff/bookings/{booking['id']}/cancel", json={"reason": "患者已住院"},
                              headers=clinic)
    assert response.status == 200 and (await response.json())["status"] == "cancelled"
    assert (await api.db.slots.find_one({"_id": booking["slot_id"]}))["booked"] == 0


async def test_list_filters_are_validated(api):
    clinic = await api.staff("clinic")
    for query in ("status=weird", "date=12/01"):
        response = await api.get(f"/api/v1/staff/bookings?{query}", headers=clinic)
        assert await code(response) == (400, "invalid_parameter")
    booking = await nursing_request(api)
    listed = await (await api.get(f"/api/v1/staff/bookings?date={booking['date']}", headers=clinic)).json()
    assert [b["id"] for b in listed["bookings"]] == [booking["id"]]
    none = await (await api.get("/api/v1/staff/bookings?date=2000-01-01", headers=clinic)).json()
    assert none["bookings"] == []
