"""Resident catalogue/slot API, staff override and nurse endpoints (permission matrix), demo seeding."""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest

from bot.accounts import staff
from scheduling import slots
from scheduling.seed import CENTRE_ID, DEMO_STAFF, HOSPITAL_ID, seed_booking_data, seed_booking_demo
from tests.conftest import login

PASSWORD = "correct horse battery staple"
OTHER_CLINIC = "other-clinic"


@functools.cache
def password_hash() -> str:
    return staff.hash_password(PASSWORD)  # once: Argon2id is deliberately slow


async def add_staff(db, username: str, role: str, institution_id: str | None, nurse_id: str | None = None) -> None:
    await db.staff.insert_one({"_id": username, "password_hash": password_hash(), "role": role,
                               "institution_id": institution_id, "name": username, "nurse_id": nurse_id,
                               "active": True})


@pytest.fixture
async def api(client, db, settings):
    await seed_booking_data(db, settings.booking_horizon_days)
    for username, (role, institution_id, _, nurse_id) in DEMO_STAFF.items():
        await add_staff(db, username, role, institution_id, nurse_id)
    await db.institutions.insert_one({"_id": OTHER_CLINIC, "kind": "nursing", "name": "另一家社区卫生服务中心",
                                      "calendar": {"weekday": {"open": "08:00", "close": "12:00"},
                                                   "slot_minutes": 120, "capacity_per_slot": 1}})
    await db.nurses.insert_one({"_id": "nurse-other", "institution_id": OTHER_CLINIC, "name": "孙丽",
                                "phone": "13900000009", "title": "护师", "years_of_practice": 8,
                                "qualified": True, "skills": [], "active": True})
    await add_staff(db, "other-clinic-staff", staff.CLINIC_STAFF, OTHER_CLINIC)
    return client


async def staff_headers(client, username: str) -> dict[str, str]:
    response = await client.post("/api/v1/staff/login", json={"username": username, "password": PASSWORD})
    assert response.status == 200, await response.text()
    return {"Authorization": f"Bearer {(await response.json())['token']}"}


async def error_code(response) -> str:
    return (await response.json())["error"]["code"]


# --- resident reads -------------------------------------------------------------------------------

async def test_reads_need_a_resident_login(api):
    for path in ("/api/v1/institutions", f"/api/v1/institutions/{CENTRE_ID}/services",
                 f"/api/v1/slots?institution_id={CENTRE_ID}"):
        response = await api.get(path)
        assert response.status == 401 and await error_code(response) == "unauthorized"
    staff_token = await staff_headers(api, "demo-admin")  # a staff token is not a resident login
    assert (await api.get("/api/v1/institutions", headers=staff_token)).status == 401


async def test_institutions_and_kind_filter(api):
    headers = await login(api)
    body = await (await api.get("/api/v1/institutions", headers=headers)).json()
    assert {i["id"] for i in body["institutions"]} == {CENTRE_ID, HOSPITAL_ID, OTHER_CLINIC}
    body = await (await api.get("/api/v1/institutions?kind=centre", headers=headers)).json()
    [centre] = body["institutions"]
    assert centre["name"] == "达州高新区政务服务中心" and centre["windows"] == 4
    assert "以当地政务服务中心公布为准" in centre["description"]
    assert any("延时服务" in line for line in centre["hours"])
    assert "calendar" not in centre
    body = await (await api.get("/api/v1/institutions?kind=nursing", headers=headers)).json()
    hospital = next(i for i in body["institutions"] if i["id"] == HOSPITAL_ID)
    assert hospital["service_area"][0]["district"] == "婺城区" and hospital["cancel_deadline_hours"] == 4
    response = await api.get("/api/v1/institutions?kind=hospital", headers=headers)
    assert response.status == 400 and await error_code(response) == "invalid_parameter"
    assert "机构类型" in (await response.json())["error"]["message"]
    response = await api.get("/api/v1/institutions?kind=", headers=headers)
    assert response.status == 200 and len((await response.json())["institutions"]) == 3


async def test_services_of_each_institution(api):
    headers = await login(api)
    body = await (await api.get(f"/api/v1/institutions/{HOSPITAL_ID}/services", headers=headers)).json()
    services = body["services"]
    assert len(services) >= 20
    assert {s["category"] for s in services} == {"老年护理", "母婴护理", "慢病管理", "康复护理", "长期照护"}
    catheter = next(s for s in services if s["name"] == "更换导尿管")
    assert catheter["service_fee"] == "120.00" and catheter["visit_fee"] == "50.00"
    assert catheter["total_fee"] == "170.00"
    assert catheter["eligibility"] and catheter["preparation"] and catheter["contraindications"]
    assert "价格主管部门" in catheter["price_note"]
    for name in ("压疮护理", "新生儿黄疸监测", "造口护理", "PICC维护", "静脉采血", "伤口换药", "鼻饲管更换",
                 "康复训练指导"):
        assert any(s["name"] == name for s in services), name
    body = await (await api.get(f"/api/v1/institutions/{CENTRE_ID}/services", headers=headers)).json()
    names = {s["name"] for s in body["services"]}
    assert {"企业开办", "异地就医备案", "生育津贴申领", "门诊慢特病认定", "参保登记"} <= names
    assert all(s["kind"] == "centre" and s["materials"] for s in body["services"])
    response = await api.get("/api/v1/institutions/nowhere/services", headers=headers)
    assert response.status == 404 and await error_code(response) == "institution_not_found"


async def test_slots_of_the_coming_days(api):
    headers = await login(api)
    tomorrow = slots.today_local() + timedelta(days=1)
    last = tomorrow + timedelta(days=6)
    response = await api.get(f"/api/v1/slots?institution_id={CENTRE_ID}&service_id=centre-cross-region-filing"
                             f"&date_from={tomorrow}&date_to={last}", headers=headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["date_from"] == tomorrow.isoformat() and body["date_to"] == last.isoformat()
    assert body["slots"], "a week always has working days or Saturday mornings unless it lacks holiday data"
    for slot in body["slots"]:
        assert set(slot) >= {"id", "start", "end", "capacity", "remaining", "date", "appointment_only",
                             "provisional"}
        assert slot["provisional"] is (int(slot["date"][:4]) > 2026)  # chinesecalendar ends with 2026
        assert slot["start"].endswith("+08:00") and slot["remaining"] == slot["capacity"] == 4
        assert tomorrow.isoformat() <= slot["date"] <= last.isoformat()
    starts = [s["start"] for s in body["slots"]]
    assert starts == sorted(starts)

    response = await api.get(f"/api/v1/slots?institution_id={HOSPITAL_ID}&service_id=nursing-stoma"
                             f"&date_from={tomorrow}&date_to={tomorrow}", headers=headers)
    nursing = (await response.json())["slots"]
    assert [s["start"][11:16] for s in nursing] == ["08:00", "10:00", "12:00", "14:00", "16:00"]
    assert {s["capacity"] for s in nursing} == {3}


async def test_full_slot_shows_zero_remaining(api, db):
    headers = await login(api)
    tomorrow = slots.today_local() + timedelta(days=1)
    slot_id = f"{HOSPITAL_ID}|{tomorrow}|10:00"
    await db.slots.update_one({"_id": slot_id}, {"$inc": {"booked": 3}})
    body = await (await api.get(f"/api/v1/slots?institution_id={HOSPITAL_ID}&date_from={tomorrow}"
                                f"&date_to={tomorrow}", headers=headers)).json()
    assert next(s for s in body["slots"] if s["id"] == slot_id)["remaining"] == 0


def slot_query_errors() -> list[tuple[str, str, str | None]]:
    """(query, error code, field) of refused slot queries; dates relative to today."""
    today = slots.today_local()
    return [
        ("", "invalid_parameter", "institution_id"),
        (f"institution_id={CENTRE_ID}&service_id=nursing-stoma", "service_not_offered", None),
        (f"institution_id={HOSPITAL_ID}&service_id=no-such-service", "service_not_offered", None),
        (f"institution_id={CENTRE_ID}&date_from=2026/12/01", "invalid_parameter", "date_from"),
        (f"institution_id={CENTRE_ID}&date_from=20261201", "invalid_parameter", "date_from"),
        (f"institution_id={CENTRE_ID}&date_from=2026-02-30", "invalid_parameter", "date_from"),
        (f"institution_id={CENTRE_ID}&date_from=９９９９-12-31", "invalid_parameter", "date_from"),
        # dates that exist but no slot query can mean: outside a year around today (no 500 on date overflow)
        (f"institution_id={CENTRE_ID}&date_from=9999-12-31", "invalid_parameter", "date_from"),
        (f"institution_id={CENTRE_ID}&date_to=9999-12-31", "invalid_parameter", "date_to"),
        (f"institution_id={CENTRE_ID}&date_from=0001-01-01", "invalid_parameter", "date_from"),
        (f"institution_id={CENTRE_ID}&date_from={today + timedelta(days=367)}", "invalid_parameter", "date_from"),
        (f"institution_id={CENTRE_ID}&date_from={today + timedelta(days=9)}&date_to={today}",
         "invalid_date_range", None),
        (f"institution_id={CENTRE_ID}&date_from={today}&date_to={today + timedelta(days=31)}",
         "date_range_too_long", None),
    ]


async def test_slot_query_errors_are_chinese_400s(api):
    headers = await login(api)
    for query, code, field in slot_query_errors():
        response = await api.get(f"/api/v1/slots?{query}", headers=headers)
        body = await response.json()
        assert (response.status, body["error"]["code"]) == (400, code), query
        assert any("\u4e00" <= ch <= "\u9fff" for ch in body["error"]["message"])
        if field:
            assert body["error"]["details"]["field"] == field, query
    response = await api.get(f"/api/v1/slots?institution_id={CENTRE_ID}&date_from=9999-12-31", headers=headers)
    assert "今天前后 366 天之内" in (await response.json())["error"]["message"]


async def test_slot_query_accepts_exactly_31_days_and_unknown_institution_is_404(api):
    headers = await login(api)
    today = slots.today_local()
    response = await api.get(f"/api/v1/slots?institution_id={CENTRE_ID}&date_from={today}"
                             f"&date_to={today + timedelta(days=30)}", headers=headers)
    assert response.status == 200
    response = await api.get(f"/api/v1/slots?institution_id={CENTRE_ID}&date_from=&service_id=", headers=headers)
    assert response.status == 200  # empty parameters mean "not given"
    assert (await response.json())["date_from"] == today.isoformat()
    response = await api.get("/api/v1/slots?institution_id=nowhere", headers=headers)
    assert response.status == 404


# --- staff: calendar overrides --------------------------------------------------------------------

def overrides_path(institution_id: str) -> str:
    return f"/api/v1/staff/institutions/{institution_id}/calendar/overrides"


async def next_weekday(days_ahead: int = 2):
    day = slots.today_local() + timedelta(days=days_ahead)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


async def test_centre_staff_closes_and_reopens_a_day(api, db):
    headers = await staff_headers(api, "demo-centre")
    day = await next_weekday()
    response = await api.post(overrides_path(CENTRE_ID), headers=headers,
                              json={"date": day.isoformat(), "action": "close", "reason": "系统停机维护"})
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["override"]["action"] == "close" and body["override"]["by"] == "demo-centre"
    assert body["regeneration"]["withdrawn"] > 0
    resident = await login(api)
    query = f"/api/v1/slots?institution_id={CENTRE_ID}&date_from={day}&date_to={day}"
    assert (await (await api.get(query, headers=resident)).json())["slots"] == []
    listed = await (await api.get(overrides_path(CENTRE_ID), headers=headers)).json()
    assert [o["date"] for o in listed["overrides"]] == [day.isoformat()]

    response = await api.delete(f"{overrides_path(CENTRE_ID)}/{day}", headers=headers)
    assert response.status == 200
    assert (await (await api.get(query, headers=resident)).json())["slots"]
    response = await api.delete(f"{overrides_path(CENTRE_ID)}/{day}", headers=headers)
    assert response.status == 404 and await error_code(response) == "override_not_found"


async def test_open_override_publishes_appointment_only_slots(api):
    headers = await staff_headers(api, "demo-admin")
    sunday = slots.today_local() + timedelta(days=1)
    while sunday.weekday() != 6:
        sunday += timedelta(days=1)
    response = await api.post(overrides_path(CENTRE_ID), headers=headers, json={
        "date": sunday.isoformat(), "action": "open", "open": "09:00", "close": "10:00", "capacity": 2,
        "reason": "周日集中受理"})
    assert response.status == 200, await response.text()
    body = await (await api.get(f"/api/v1/slots?institution_id={CENTRE_ID}&date_from={sunday}&date_to={sunday}",
                                headers=await login(api))).json()
    # the next Sunday is inside the horizon; an override opens it even in a year without holiday data
    assert [(s["start"][11:16], s["capacity"], s["appointment_only"]) for s in body["slots"]] == [
        ("09:00", 2, True), ("09:30", 2, True)]


INVALID_OVERRIDES = [
    ({"action": "close", "reason": "x"}, "invalid_override"),
    ({"date": "2026-02-30", "action": "close", "reason": "x"}, "invalid_override"),
    ({"date": "2020-01-01", "action": "close", "reason": "x"}, "invalid_override_date"),
    ({"date": "DAY", "action": "shut", "reason": "x"}, "invalid_override"),
    ({"date": "DAY", "action": "close"}, "invalid_override"),
    ({"date": "DAY", "action": "open", "open": "12:00", "close": "09:00", "reason": "x"}, "invalid_override"),
    ({"date": "DAY", "action": "open", "open": "9", "close": "12:00", "reason": "x"}, "invalid_override"),
    ({"date": "DAY", "action": "capacity", "reason": "x"}, "invalid_override"),
    ({"date": "DAY", "action": "capacity", "capacity": -1, "reason": "x"}, "invalid_override"),
    ({"date": "DAY", "action": "close", "capacity": 3, "reason": "x"}, "invalid_override"),
]


async def test_invalid_overrides_are_rejected(api):
    headers = await staff_headers(api, "demo-centre")
    day = await next_weekday()
    for payload, code in INVALID_OVERRIDES:
        if payload.get("date") == "DAY":
            payload = {**payload, "date": day.isoformat()}
        response = await api.post(overrides_path(CENTRE_ID), headers=headers, json=payload)
        assert (response.status, await error_code(response)) == (400, code), payload


async def test_override_permissions(api):
    day = (await next_weekday()).isoformat()
    payload = {"date": day, "action": "capacity", "capacity": 1, "reason": "人手不足"}
    # no staff login at all
    assert (await api.post(overrides_path(CENTRE_ID), json=payload)).status == 401
    assert (await api.post(overrides_path(CENTRE_ID), json=payload, headers=await login(api))).status == 401
    # clinic staff of the hospital cannot touch the centre, nor another clinic's calendar
    clinic = await staff_headers(api, "demo-clinic")
    assert (await api.post(overrides_path(CENTRE_ID), json=payload, headers=clinic)).status == 403
    assert (await api.get(overrides_path(OTHER_CLINIC), headers=clinic)).status == 403
    other = await staff_headers(api, "other-clinic-staff")
    assert (await api.post(overrides_path(HOSPITAL_ID), json=payload, headers=other)).status == 403
    assert (await api.delete(f"{overrides_path(HOSPITAL_ID)}/{day}", headers=other)).status == 403
    # a nurse cannot edit calendars, not even her own institution's
    nurse = await staff_headers(api, "demo-nurse")
    assert (await api.post(overrides_path(HOSPITAL_ID), json=payload, headers=nurse)).status == 403
    # the institution's own staff and the admin can
    assert (await api.post(overrides_path(HOSPITAL_ID), json=payload, headers=clinic)).status == 200
    admin = await staff_headers(api, "demo-admin")
    assert (await api.post(overrides_path(CENTRE_ID), json=payload, headers=admin)).status == 200
    assert (await api.get(overrides_path("nowhere"), headers=admin)).status == 404


# --- staff: nurses --------------------------------------------------------------------------------

def nurses_path(institution_id: str) -> str:
    return f"/api/v1/staff/institutions/{institution_id}/nurses"


async def test_clinic_staff_see_whole_phones_admin_sees_masked(api):
    clinic = await staff_headers(api, "demo-clinic")
    body = await (await api.get(nurses_path(HOSPITAL_ID), headers=clinic)).json()
    by_id = {n["id"]: n for n in body["nurses"]}
    assert len(by_id) >= 4
    assert by_id["nurse-wangjingyi"]["phone"] == "13800000001"
    assert by_id["nurse-wangjingyi"]["qualified"] is True
    zhaomin, zhouting = by_id["nurse-zhaomin"], by_id["nurse-zhouting"]
    assert zhaomin["qualified"] is False and "护师及以上" in zhaomin["qualification_note"]
    assert zhouting["qualified"] is False and "未满 5 年" in zhouting["qualification_note"]
    admin = await staff_headers(api, "demo-admin")
    body = await (await api.get(nurses_path(HOSPITAL_ID), headers=admin)).json()
    assert {n["phone"] for n in body["nurses"]} == {f"138****000{i}" for i in range(1, 6)}


async def test_creating_and_updating_nurses_derives_qualification_and_capacity(api, db):
    clinic = await staff_headers(api, "demo-clinic")
    response = await api.post(nurses_path(HOSPITAL_ID), headers=clinic, json={
        "name": "钱芳", "phone": "13700000007", "title": "护士", "years_of_practice": 10, "skills": ["母婴护理"]})
    assert response.status == 201, await response.text()
    nurse = (await response.json())["nurse"]
    assert nurse["qualified"] is False and nurse["phone"] == "13700000007"
    day = slots.today_local() + timedelta(days=1)
    slot_id = f"{HOSPITAL_ID}|{day}|16:00"
    assert (await slots.get_slot(db, slot_id))["capacity"] == 3

    response = await api.patch(f"{nurses_path(HOSPITAL_ID)}/{nurse['id']}", headers=clinic, json={"title": "护师"})
    assert response.status == 200
    assert (await response.json())["nurse"]["qualified"] is True
    assert (await slots.get_slot(db, slot_id))["capacity"] == 4
    response = await api.patch(f"{nurses_path(HOSPITAL_ID)}/{nurse['id']}", headers=clinic,
                               json={"years_of_practice": 4})
    assert (await response.json())["nurse"]["qualified"] is False
    response = await api.patch(f"{nurses_path(HOSPITAL_ID)}/nurse-liujia", headers=clinic, json={"active": False})
    assert (await response.json())["nurse"]["active"] is False
    assert (await slots.get_slot(db, slot_id))["capacity"] == 2


INVALID_NURSES = [
    {"name": "钱芳", "phone": "13700000007", "title": "护师"},
    {"name": "钱芳", "phone": "1370000", "title": "护师", "years_of_practice": 5},
    {"name": "钱芳", "phone": "13700000007", "title": "护理员", "years_of_practice": 5},
    {"name": "钱芳", "phone": "13700000007", "title": "护师", "years_of_practice": -1},
    {"name": "钱芳", "phone": "13700000007", "title": "护师", "years_of_practice": "5"},
    {"name": "", "phone": "13700000007", "title": "护师", "years_of_practice": 5},
    {"name": "钱芳", "phone": "13700000007", "title": "护师", "years_of_practice": 5, "skills": ["美容"]},
    {"name": "钱芳", "phone": "13700000007", "title": "护师", "years_of_practice": True},
]


async def test_invalid_nurse_fields(api):
    headers = await staff_headers(api, "demo-clinic")
    for payload in INVALID_NURSES:
        response = await api.post(nurses_path(HOSPITAL_ID), headers=headers, json=payload)
        assert (response.status, await error_code(response)) == (400, "invalid_nurse"), payload
    # a field the API does not take (qualified is derived) is named, not silently dropped
    response = await api.post(nurses_path(HOSPITAL_ID), headers=headers, json={
        "name": "钱芳", "phone": "13700000007", "title": "护师", "years_of_practice": 5, "qualified": True})
    assert (response.status, await error_code(response)) == (400, "unknown_fields")


async def test_nurse_permissions(api):
    payload = {"name": "钱芳", "phone": "13700000007", "title": "护师", "years_of_practice": 6}
    other = await staff_headers(api, "other-clinic-staff")
    assert (await api.get(nurses_path(HOSPITAL_ID), headers=other)).status == 403
    assert (await api.post(nurses_path(HOSPITAL_ID), headers=other, json=payload)).status == 403
    assert (await api.patch(f"{nurses_path(HOSPITAL_ID)}/nurse-liujia", headers=other,
                            json={"active": False})).status == 403
    # through its own institution's path, clinic Y cannot reach clinic X's nurse either
    response = await api.patch(f"{nurses_path(OTHER_CLINIC)}/nurse-liujia", headers=other, json={"active": False})
    assert response.status == 404 and await error_code(response) == "nurse_not_found"
    nurse = await staff_headers(api, "demo-nurse")
    assert (await api.get(nurses_path(HOSPITAL_ID), headers=nurse)).status == 403
    assert (await api.patch(f"{nurses_path(HOSPITAL_ID)}/nurse-wangjingyi", headers=nurse,
                            json={"years_of_practice": 30})).status == 403
    centre = await staff_headers(api, "demo-centre")
    assert (await api.get(nurses_path(HOSPITAL_ID), headers=centre)).status == 403
    admin = await staff_headers(api, "demo-admin")
    response = await api.get(nurses_path(CENTRE_ID), headers=admin)
    assert response.status == 400 and await error_code(response) == "not_nursing_institution"
    response = await api.patch(f"{nurses_path(HOSPITAL_ID)}/nurse-liujia", headers=admin, json={})
    assert response.status == 400


async def test_openapi_documents_every_catalogue_endpoint(api):
    document = await (await api.get("/api/v1/openapi.json")).json()
    expected = {
        "/api/v1/institutions": {"get"}, "/api/v1/institutions/{institution_id}/services": {"get"},
        "/api/v1/slots": {"get"},
        "/api/v1/staff/institutions/{institution_id}/calendar/overrides": {"get", "post"},
        "/api/v1/staff/institutions/{institution_id}/calendar/overrides/{date}": {"delete"},
        "/api/v1/staff/institutions/{institution_id}/nurses": {"get", "post"},
        "/api/v1/staff/institutions/{institution_id}/nurses/{nurse_id}": {"patch"},
        "/api/v1/staff/calendar/holidays": {"get"},
        "/api/v1/staff/calendar/holidays/{year}": {"get", "put"},
    }
    for path, methods in expected.items():
        assert methods <= set(document["paths"][path]), path
    schemas = document["components"]["schemas"]
    for name in ("Institution", "Service", "Slot", "CalendarOverride", "Nurse", "NurseInput", "Regeneration",
                 "HolidayYearIn", "HolidayImport", "AffectedBooking"):
        assert name in schemas
    assert "provisional" in schemas["Slot"]["required"]
    parameters = {p["name"]: p for p in document["paths"]["/api/v1/slots"]["get"]["parameters"]}
    assert parameters["institution_id"]["required"] and parameters["date_from"]["schema"]["anyOf"][0] == {
        "type": "string", "format": "date"}


# --- demo seeding -----------------------------------------------------------------------------------

async def test_demo_seeding_is_idempotent_and_keeps_passwords(mongo_client, db, settings):
    first = await seed_booking_demo(mongo_client, db, settings)
    printed = [line for line in first if "随机密码" in line]
    assert len(printed) == 1
    password = printed[0].split("随机密码 ")[1].split("（")[0]
    counts = {c: await db[c].count_documents({}) for c in ("institutions", "services", "nurses", "slots", "staff")}
    hashes = {d["_id"]: d["password_hash"] async for d in db.staff.find()}

    second = await seed_booking_demo(mongo_client, db, settings)
    assert not any("随机密码" in line for line in second)
    assert any("密码未改变" in line for line in second)
    assert counts == {c: await db[c].count_documents({}) for c in counts}
    assert hashes == {d["_id"]: d["password_hash"] async for d in db.staff.find()}
    member = await staff.authenticate(db, "demo-nurse", password)
    assert member and member.role == staff.NURSE and member.nurse_id == "nurse-wangjingyi"
    assert member.institution_id == HOSPITAL_ID
    admin = await staff.authenticate(db, "demo-admin", password)
    assert admin and admin.institution_id is None

    with_env = settings.__class__(**{**settings.__dict__, "demo_staff_password": "demo-password-1"})
    lines = await seed_booking_demo(mongo_client, db, with_env)
    assert any("DEMO_STAFF_PASSWORD" in line for line in lines)
    assert await staff.authenticate(db, "demo-centre", "demo-password-1")
    assert await staff.authenticate(db, "demo-centre", password) is None
    assert counts == {c: await db[c].count_documents({}) for c in counts}
