"""Booking round 2 over HTTP: check-in by code, the QR image, nurse accounts (login, /staff/me),
reassigning, staff booking on a resident's behalf, suspensions, whole-request idempotency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.booking_factories import CENTRE_SERVICE, NURSING_SERVICE, make_nurse, make_patient, visitor, world
from tests.conftest import login
from tests.test_booking_staff_api import (
    PASSWORD,
    StaffLogins,
    centre_booking,
    code,
    nursing_request,
    time_comes,
)


@pytest.fixture
async def api(client, db):
    client.world = await world(db)
    client.db = db
    client.staff = StaffLogins(client, db)
    return client


async def test_check_in_by_code_and_the_qr_image(api):
    booking = await centre_booking(api, "fam-c")
    family = await login(api, "fam-c")
    image = await api.get(booking["qr_url"], headers=family)
    assert image.status == 200 and image.content_type == "image/png"
    assert (await image.read()).startswith(b"\x89PNG")
    assert (await api.get(booking["qr_url"], headers=await login(api, "stranger"))).status == 404
    desk = await api.staff("desk")
    early = await api.post("/api/v1/staff/bookings/check-in", json={"code": booking["code"]}, headers=desk)
    assert await code(early) == (409, "check_in_too_early")
    await time_comes(api, booking)
    clinic = await api.staff("clinic")
    refused = await api.post("/api/v1/staff/bookings/check-in", json={"code": booking["code"]}, headers=clinic)
    assert refused.status == 403
    done = await api.post("/api/v1/staff/bookings/check-in", json={"code": booking["code"].lower()}, headers=desk)
    assert done.status == 200 and (await done.json())["status"] == "checked_in"
    again = await api.post("/api/v1/staff/bookings/check-in", json={"code": booking["code"]}, headers=desk)
    assert await code(again) == (409, "code_used")
    assert await code(await api.post("/api/v1/staff/bookings/check-in", json={"code": "ACDEFG"},
                                     headers=desk)) == (404, "code_not_found")


async def test_repeated_key_with_a_different_note_is_a_422(api):
    headers = {**await login(api, "fam-a"), "Idempotency-Key": "same"}
    body = {"slot_id": await api.world.centre_slot(), "service_id": CENTRE_SERVICE, "visitor": visitor("a"),
            "note": "带身份证"}
    assert (await api.post("/api/v1/bookings", json=body, headers=headers)).status == 201
    assert (await api.post("/api/v1/bookings", json=body, headers=headers)).status == 200
    changed = await api.post("/api/v1/bookings", json={**body, "note": "带户口本"}, headers=headers)
    assert await code(changed) == (422, "idempotency_key_reused")
    other_key = await api.post("/api/v1/bookings", json=body, headers={**headers, "Idempotency-Key": "other"})
    assert await code(other_key) == (409, "already_booked")


async def test_nurse_accounts_say_which_nurse_and_see_the_visits_confirmed_with_her(api):
    nurse_headers = await api.staff("nurse-lv")
    me = await (await api.get("/api/v1/staff/me", headers=nurse_headers)).json()
    assert me["role"] == "nurse" and me["nurse"]["id"] == "nurse-lvli" and me["nurse"]["name"] == "吕丽"
    login_body = await (await api.post("/api/v1/staff/login", json={"username": "nurse-lv",
                                                                    "password": PASSWORD})).json()
    assert login_body["nurse"]["id"] == "nurse-lvli"
    clinic_me = await (await api.get("/api/v1/staff/me", headers=await api.staff("clinic"))).json()
    assert clinic_me["nurse"] is None
    visit = await nursing_request(api)
    assert (await (await api.get("/api/v1/staff/bookings", headers=nurse_headers)).json())["bookings"] == []
    await api.post(f"/api/v1/staff/bookings/{visit['id']}/confirm", json={"nurse_id": "nurse-lvli"},
                   headers=await api.staff("clinic"))
    listed = (await (await api.get("/api/v1/staff/bookings", headers=nurse_headers)).json())["bookings"]
    assert [b["id"] for b in listed] == [visit["id"]]


async def test_reassign_over_http(api):
    visit = await nursing_request(api)
    clinic = await api.staff("clinic")
    await api.post(f"/api/v1/staff/bookings/{visit['id']}/confirm", json={"nurse_id": "nurse-lvli"}, headers=clinic)
    nurse = await api.staff("nurse-lv")
    assert (await api.post(f"/api/v1/staff/bookings/{visit['id']}/reassign", json={"nurse_id": "nurse-chen"},
                           headers=nurse)).status == 403
    moved = await api.post(f"/api/v1/staff/bookings/{visit['id']}/reassign",
                           json={"nurse_id": "nurse-chen", "reason": "调班"}, headers=clinic)
    assert moved.status == 200 and (await moved.json())["nurse"]["name"] == "陈静"
    assert (await (await api.get("/api/v1/staff/bookings", headers=nurse)).json())["bookings"] == []
    assert [b["id"] for b in (await (await api.get("/api/v1/staff/bookings", headers=await api.staff("nurse-ch")))
                              .json())["bookings"]] == [visit["id"]]


async def test_staff_book_on_behalf_and_the_family_sees_it(api):
    patient = await make_patient(api.db, "fam-p")
    clinic = await api.staff("clinic")
    body = {"slot_id": await api.world.nursing_slot(), "service_id": NURSING_SERVICE, "patient_id": patient["_id"],
            "assessment": {"consciousness": "清醒", "mobility": "完全卧床", "allergies": "无",
                           "current_conditions": "术后", "done_before": False}, "channel": "phone"}
    assert await code(await api.post("/api/v1/staff/bookings", json=body, headers=clinic)) == (
        400, "idempotency_key_required")
    made = await api.post("/api/v1/staff/bookings", json=body, headers={**clinic, "Idempotency-Key": "p1"})
    assert made.status == 201, await made.text()
    booking = await made.json()
    assert booking["channel"] == "phone" and booking["booked_by"]["username"] == "clinic"
    family = await (await api.get("/api/v1/bookings", headers=await login(api, "fam-p"))).json()
    assert [b["id"] for b in family["bookings"]] == [booking["id"]]
    assert family["bookings"][0]["channel_label"] == "电话预约"
    walk_in = await api.post("/api/v1/staff/bookings", headers={**await api.staff("desk"), "Idempotency-Key": "w"},
                             json={"slot_id": await api.world.centre_slot(), "service_id": CENTRE_SERVICE,
                                   "visitor": {"name": "李大爷", "phone": "0818-2679575"}, "channel": "walk_in"})
    assert walk_in.status == 201 and (await walk_in.json())["code"]
    resident = await login(api, "fam-p")
    assert (await api.post("/api/v1/staff/bookings", json=body, headers={**resident, "Idempotency-Key": "r"})
            ).status == 401


async def test_suspensions_are_shown_to_the_family_and_lifted_by_staff(api):
    await api.db.booking_suspensions.insert_one({
        "_id": "fam-s|test-centre", "openid": "fam-s", "institution_id": "test-centre",
        "institution_name": "测试政务服务中心", "reason": "90 天内 3 次预约未到场", "no_shows": 3,
        "since": datetime.now(UTC), "until": datetime.now(UTC) + timedelta(days=30), "lifted_at": None})
    family = await login(api, "fam-s")
    shown = (await (await api.get("/api/v1/me/booking-suspensions", headers=family)).json())["suspensions"]
    assert shown[0]["reason"] == "90 天内 3 次预约未到场" and "暂停至" in shown[0]["message"]
    refused = await api.post("/api/v1/bookings", headers={**family, "Idempotency-Key": "k"}, json={
        "slot_id": await api.world.centre_slot(), "service_id": CENTRE_SERVICE, "visitor": visitor("s")})
    assert await code(refused) == (403, "booking_suspended")
    desk = await api.staff("desk")
    listed = (await (await api.get("/api/v1/staff/booking-suspensions", headers=desk)).json())["suspensions"]
    assert [s["openid"] for s in listed] == ["fam-s"]
    lifted = await api.post("/api/v1/staff/booking-suspensions/fam-s|test-centre/lift", json={"reason": "已核实"},
                            headers=desk)
    assert lifted.status == 200
    assert (await (await api.get("/api/v1/me/booking-suspensions", headers=family)).json())["suspensions"] == []


async def test_openapi_documents_the_new_endpoints(api):
    document = await (await api.get("/api/v1/openapi.json")).json()
    for path, method in [("/api/v1/staff/bookings/check-in", "post"), ("/api/v1/staff/bookings", "post"),
                         ("/api/v1/staff/bookings/{booking_id}/reassign", "post"), ("/api/v1/staff/me", "get"),
                         ("/api/v1/bookings/{booking_id}/qr.png", "get"), ("/api/v1/me/booking-suspensions", "get"),
                         ("/api/v1/staff/booking-suspensions/{suspension_id}/lift", "post")]:
        assert method in document["paths"][path], (path, method)
    create = document["paths"]["/api/v1/bookings"]["post"]["responses"]
    assert "already_booked" in create["409"]["description"] and "422" in create
    assert "visitor" in document["components"]["schemas"]["BookingIn"]["properties"]


async def test_a_demo_like_nurse_without_record_shows_none(api):
    await make_nurse(api.db, "nurse-gone", "test-clinic")
    await api.db.nurses.delete_one({"_id": "nurse-gone"})
    from bot.accounts import staff

    await staff.create_or_update(api.db, "ghost", PASSWORD, staff.NURSE, "test-clinic", nurse_id="nurse-gone")
    response = await api.post("/api/v1/staff/login", json={"username": "ghost", "password": PASSWORD})
    assert (await response.json())["nurse"] is None
