"""Home visits and ratings over HTTP (issue 16): the family's consent and booking, the nurse's
steps from the phone, the alarm through the app's own WeChat client (fake API), the record and
its photos, the rating and the follow-up — the JSON endpoints the mini-program and console use."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.accounts import staff
from scheduling import alarms
from scheduling import transitions as t
from tests.booking_factories import ASSESSMENT, CLINIC, NURSING_SERVICE, make_patient, world
from tests.conftest import login
from tests.home_visit_support import HOME, confirmed_visit

PASSWORD = "staff-password-for-tests"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
TEXT = {"scope": f"service:{NURSING_SERVICE}", "risks": ["可能出血、感染"], "nurse_will": ["更换导尿管"],
        "nurse_will_not": ["不提供输液"]}


async def staff_headers(client, db, username: str, role: str, nurse_id: str | None = None) -> dict[str, str]:
    await staff.create_or_update(db, username, PASSWORD, role, CLINIC, nurse_id=nurse_id)
    response = await client.post("/api/v1/staff/login", json={"username": username, "password": PASSWORD})
    return {"Authorization": f"Bearer {(await response.json())['token']}"}


async def test_consent_is_shown_with_fees_and_required_when_booking(client, db):
    w = await world(db)
    desk = await staff_headers(client, db, "desk", staff.CLINIC_STAFF)
    published = await client.post("/api/v1/staff/consent", json=TEXT, headers=desk)
    assert published.status == 201, await published.text()
    shown = await client.get(f"/api/v1/consent?institution_id={CLINIC}&service_id={NURSING_SERVICE}")
    body = await shown.json()
    assert body["version"] == 1 and body["fees"]["total"] == "170.00"
    family = await login(client, "family-api")
    patient = await make_patient(db, "family-api")
    slot_id = await w.nursing_slot(days=3)
    request = {"slot_id": slot_id, "service_id": NURSING_SERVICE, "patient_id": patient["_id"],
               "assessment": ASSESSMENT}
    refused = await client.post("/api/v1/bookings", json=request, headers={**family, "Idempotency-Key": "a1"})
    assert refused.status == 409 and (await refused.json())["error"]["code"] == "consent_required"
    created = await client.post("/api/v1/bookings", json={**request, "consent_version": 1},
                                headers={**family, "Idempotency-Key": "a2"})
    assert created.status == 201, await created.text()
    booking_id = (await created.json())["id"]
    accepted = await (await client.get(f"/api/v1/bookings/{booking_id}/consent", headers=family)).json()
    assert accepted["consent"]["version"] == 1 and accepted["text"]["risks"] == ["可能出血、感染"]


async def test_the_nurse_phone_flow_and_the_family_view(client, db):
    visit = await confirmed_visit(db, status=t.CONFIRMED)
    nurse = await staff_headers(client, db, "lvli", staff.NURSE, "nurse-lvli")
    other = await staff_headers(client, db, "chen", staff.NURSE, "nurse-chen")
    base = f"/api/v1/nurse/visits/{visit.id}"
    far = {"location": {"latitude": HOME["latitude"] + 0.01, "longitude": HOME["longitude"]}}
    left = await client.post(f"{base}/start-trip", json=far, headers=nurse)
    assert left.status == 200 and (await left.json())["departure"]["by"] == "lvli", await left.text()
    response = await client.post(f"{base}/arrive", json=far, headers=other)
    assert response.status == 403
    response = await client.post(f"{base}/arrive", json=far, headers=nurse)
    error = (await response.json())["error"]
    assert response.status == 409 and error["code"] == "arrival_outside_radius" and "米" in error["message"]
    response = await client.post(f"{base}/arrive", json={**far, "reason": "门牌定位偏差"}, headers=nurse)
    assert response.status == 200 and (await response.json())["arrival"]["within_radius"] is False
    response = await client.post(f"{base}/identity", json={"method": "name_age", "name": "王秀英", "age": 82},
                                 headers=nurse)
    assert (await response.json())["identity"]["matched"] is True
    # start the service (the booking API), then ping, photo, record
    start = await client.post(f"/api/v1/staff/bookings/{visit.id}/start-service", headers=nurse)
    assert start.status == 200, await start.text()
    assert (await client.post(f"{base}/pings", json={"location": HOME}, headers=nurse)).status == 201
    photo = await client.post(f"{base}/photos", data=PNG, headers={**nurse, "Content-Type": "image/png"})
    assert photo.status == 201, await photo.text()
    photo_id = (await photo.json())["id"]
    bad = await client.post(f"{base}/photos", data=b"GIF89a", headers={**nurse, "Content-Type": "image/gif"})
    assert bad.status == 415 and (await bad.json())["error"]["message"]
    record = {"items": ["更换导尿管"], "vitals": {"temperature": 36.6, "pulse": 76}, "photo_ids": [photo_id],
              "advice": "多饮水"}
    implausible = await client.post(f"{base}/record", json={**record, "vitals": {"temperature": 60}}, headers=nurse)
    assert implausible.status == 400 and (await implausible.json())["error"]["code"] == "implausible_vitals"
    assert (await client.post(f"{base}/record", json=record, headers=nurse)).status == 201
    again = await client.post(f"{base}/record", json=record, headers=nurse)
    assert again.status == 409 and (await again.json())["error"]["code"] == "record_exists"

    family = await login(client, "family-hv")
    seen = await (await client.get(f"/api/v1/bookings/{visit.id}/visit", headers=family)).json()
    assert seen["record"]["items"] == ["更换导尿管"] and "location" not in seen["visit"]["arrival"]
    image = await client.get(f"/api/v1/bookings/{visit.id}/visit/photos/{photo_id}", headers=family)
    assert image.status == 200 and await image.read() == PNG and image.headers["Content-Type"] == "image/png"
    stranger = await login(client, "someone-else")
    assert (await client.get(f"/api/v1/bookings/{visit.id}/visit/photos/{photo_id}", headers=stranger)).status == 404
    confirmed = await client.post(f"/api/v1/bookings/{visit.id}/visit/confirm", json={"confirmed": True},
                                  headers=family)
    assert (await confirmed.json())["family_response"]["confirmed"] is True

    desk = await staff_headers(client, db, "desk", staff.CLINIC_STAFF)
    page = await (await client.get(f"/api/v1/staff/visits/{visit.id}", headers=desk)).json()
    assert [r["action"] for r in page["trail"]] == ["start_trip", "arrive", "identity_check"]
    assert len(page["pings"]) == 1

    rated = await client.put(f"/api/v1/bookings/{visit.id}/rating", json={"level": "不满意", "comment": "迟到"},
                             headers=family)
    assert rated.status == 200, await rated.text()
    cases = await (await client.get("/api/v1/staff/follow-ups", headers=desk)).json()
    [case] = cases["cases"]
    assert case["status"] == "open" and cases["overdue"] == 0
    await client.post(f"/api/v1/staff/follow-ups/{case['id']}/contacts", json={"note": "已电话致歉"}, headers=desk)
    done = await client.post(f"/api/v1/staff/follow-ups/{case['id']}/resolve",
                             json={"fix": "调整排班", "result": "已调整排班，感谢反馈"}, headers=desk)
    assert (await done.json())["status"] == "resolved"
    summary = await (await client.get("/api/v1/staff/ratings/summary?by=nurse", headers=desk)).json()
    assert summary["groups"][0]["key"] == "nurse-lvli"


async def test_an_alarm_raised_from_the_phone_reaches_the_duty_staff(make_client, db, fake_wechat):
    client = await make_client(wechat_app_id=fake_wechat.app_id, wechat_app_secret=fake_wechat.secret,
                               wechat_api_base=fake_wechat.base_url)
    visit = await confirmed_visit(db, status=t.IN_SERVICE)
    desk = await staff_headers(client, db, "desk", staff.CLINIC_STAFF)
    put = await client.put("/api/v1/staff/duty-roster/desk", json={"openid": "oDutyDesk000001", "on_duty": True},
                           headers=desk)
    assert put.status == 200, await put.text()
    fake_wechat.open_window("oDutyDesk000001")
    nurse = await staff_headers(client, db, "lvli", staff.NURSE, "nurse-lvli")
    raised = await client.post(f"/api/v1/nurse/visits/{visit.id}/alarm", json={"note": "有人闹事"}, headers=nurse)
    assert raised.status == 201, await raised.text()
    alarm = await raised.json()
    assert [d["status"] for d in alarm["deliveries"]] == ["sent"]
    assert [s["openid"] for s in fake_wechat.sent] == ["oDutyDesk000001"] and "有人闹事" in fake_wechat.sent[0]["text"]
    banner = await (await client.get("/api/v1/staff/alarms?status=open", headers=desk)).json()
    assert banner["open"] == 1 and banner["alarms"][0]["id"] == alarm["id"]
    ack = await client.post(f"/api/v1/staff/alarms/{alarm['id']}/acknowledge", headers=desk)
    assert (await ack.json())["status"] == "acknowledged"
    resolved = await client.post(f"/api/v1/staff/alarms/{alarm['id']}/resolve", json={"resolution": "已处置"},
                                 headers=desk)
    assert (await resolved.json())["status"] == "resolved"
    assert (await alarms.get_alarm(db, alarm["id"]))["resolved"]["by"] == "desk"


async def test_credentials_over_http_and_alerts(client, db):
    await world(db)
    desk = await staff_headers(client, db, "desk", staff.CLINIC_STAFF)
    today = datetime.now(UTC).date().isoformat()
    body = {"licence_number": "2026330001", "licence_valid_until": "2020-01-01", "title": "主管护师",
            "years_of_practice": 9, "insurance": {"insurer": "人保", "policy_number": "P1", "valid_until": today}}
    stored = await client.put("/api/v1/staff/nurses/nurse-lvli/credentials", json=body, headers=desk)
    assert stored.status == 200, await stored.text()
    assert (await stored.json())["problems"][0].startswith("该护士的护士执业证书已于 2020-01-01 到期")


async def test_the_address_keeps_the_map_point_chosen_in_the_mini_program(client, db):
    family = await login(client, "family-map")
    patient = {"name": "李大爷", "gender": "男", "age": 66, "phone": "13912345678",
               "address": {"district": "婺城区", "street": "城东街道", "detail": "八一北街 1 号",
                           "location": {"latitude": 29, "longitude": 119.647}}}
    created = await client.post("/api/v1/patients", json=patient, headers=family)
    assert created.status == 201, await created.text()
    assert (await created.json())["address"]["location"] == {"latitude": 29.0, "longitude": 119.647}
    bad = {**patient, "address": {**patient["address"], "location": {"latitude": 91, "longitude": 0}}}
    refused = await client.post("/api/v1/patients", json=bad, headers=family)
    assert refused.status == 400 and (await refused.json())["error"]["message"]
