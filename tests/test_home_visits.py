"""Home visits (issue 16) on the real database: informed consent, arrival, identity check, pings,
nurse credentials."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.accounts.staff import StaffMember
from bot.errors import ApiError
from scheduling import bookings, consent, credentials, geo, service_records, visits
from scheduling import transitions as t
from tests.booking_factories import ASSESSMENT, CLINIC, NURSING_SERVICE, POLICY, make_patient, world
from tests.home_visit_support import (
    CLINIC_ACTOR,
    DESK,
    FAMILY,
    HOME,
    NURSE,
    OTHER_NURSE,
    arrived_and_verified,
    confirmed_visit,
)

TEXT = {"risks": ["更换导尿管可能引起尿道黏膜损伤、出血或感染"], "nurse_will": ["更换导尿管并指导家属护理"],
        "nurse_will_not": ["不提供静脉输液", "不代购药品"]}


async def error_of(awaitable) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await awaitable
    return caught.value


def north_of(point: dict[str, float], metres: float) -> dict[str, float]:
    return {"latitude": point["latitude"] + metres / 111_195, "longitude": point["longitude"]}


# ---------------------------------------------------------------- consent


async def test_consent_versions_are_numbered_and_the_item_text_wins(db):
    await world(db)
    first = await consent.publish(db, CLINIC, consent.category_scope("老年护理"), TEXT, published_by="desk")
    second = await consent.publish(db, CLINIC, consent.category_scope("老年护理"), TEXT, published_by="desk")
    assert (first["version"], second["version"]) == (1, 2)
    shown = await consent.current_for(db, CLINIC, NURSING_SERVICE)
    assert shown["version"] == 2 and shown["scope"] == "category:老年护理"
    assert shown["fees"]["summary"] == "项目费 120.00 元 + 出诊费 50.00 元 = 合计 170.00 元"
    assert "出诊费不予退还" in shown["fees"]["refund_rule"]
    await consent.publish(db, CLINIC, consent.service_scope(NURSING_SERVICE), TEXT, published_by="desk")
    shown = await consent.current_for(db, CLINIC, NURSING_SERVICE)
    assert (shown["scope"], shown["version"]) == (f"service:{NURSING_SERVICE}", 1)


async def test_a_nursing_booking_records_the_consent_it_accepted_and_an_old_version_is_refused(db):
    w = await world(db)
    patient = await make_patient(db, FAMILY)
    scope = consent.service_scope(NURSING_SERVICE)
    await consent.publish(db, CLINIC, scope, TEXT, published_by="desk")

    def request(key: str, version: int | None, slot: str | None = None) -> bookings.BookingRequest:
        return bookings.BookingRequest(slot_id=slot or slot_id, service_id=NURSING_SERVICE, idempotency_key=key,
                                       patient_id=patient["_id"], assessment=ASSESSMENT, consent_version=version)

    slot_id = await w.nursing_slot(days=3)
    assert (await error_of(bookings.create_booking(db, FAMILY, request("c0", None), POLICY))).code == \
        "consent_required"
    booking, _ = await bookings.create_booking(db, FAMILY, request("c1", 1), POLICY)
    assert booking["consent"]["version"] == 1 and booking["consent"]["accepted_by"] == FAMILY
    assert booking["consent"]["text_id"] == f"{CLINIC}|{scope}|v1" and booking["consent"]["accepted_at"]
    stored = await db.bookings.find_one({"_id": booking["_id"]})
    assert stored["consent"]["version"] == 1

    await consent.publish(db, CLINIC, scope, {**TEXT, "risks": [*TEXT["risks"], "新增风险"]}, published_by="desk")
    refused = await error_of(bookings.create_booking(db, FAMILY, request("c2", 1), POLICY))
    assert refused.status == 409 and refused.code == "consent_outdated"
    # a new version applies to new bookings only: the first booking keeps version 1
    assert (await db.bookings.find_one({"_id": booking["_id"]}))["consent"]["version"] == 1
    # another day: one patient holds one booking of a slot
    second, _ = await bookings.create_booking(db, FAMILY, request("c3", 2, await w.nursing_slot(days=4)), POLICY)
    assert second["consent"]["version"] == 2


# ---------------------------------------------------------------- arrival, identity, pings


def test_distance_with_geopy():
    assert abs(geo.distance_m(HOME, north_of(HOME, 1000)) - 1000) < 5
    with pytest.raises(geo.LocationError):
        geo.parse_location({"latitude": 95, "longitude": 0})


async def test_departure_is_recorded_with_its_place_and_moves_the_booking(db):
    visit = await confirmed_visit(db, status=t.CONFIRMED)
    assert (await error_of(visits.start_trip(db, OTHER_NURSE, visit.id, HOME, POLICY))).code == "not_assigned_nurse"
    stored = await visits.start_trip(db, NURSE, visit.id, north_of(HOME, 2000), POLICY)
    assert stored["departure"]["by"] == "lvli" and stored["departure"]["location"]["latitude"] > HOME["latitude"]
    assert (await db.bookings.find_one({"_id": visit.id}))["status"] == t.ON_THE_WAY
    assert (await error_of(visits.start_trip(db, NURSE, visit.id, HOME, POLICY))).status == 409
    assert visits.visit_view(stored, for_staff=False)["departure"] == {"at": stored["departure"]["at"]}


async def test_arrival_within_the_radius_is_accepted(db):
    visit = await confirmed_visit(db)
    stored = await visits.arrive(db, NURSE, visit.id, north_of(HOME, 80), radius_m=300)
    assert stored["arrival"]["within_radius"] is True and stored["arrival"]["reason"] is None
    assert 75 < stored["arrival"]["distance_m"] < 85
    assert (await error_of(visits.arrive(db, NURSE, visit.id, HOME, radius_m=300))).code == "already_arrived"
    assert [r["action"] for r in await visits.trail(db, visit.id)] == ["arrive"]


async def test_arrival_outside_the_radius_needs_a_reason(db):
    visit = await confirmed_visit(db)
    far = north_of(HOME, 900)
    refused = await error_of(visits.arrive(db, NURSE, visit.id, far, radius_m=300))
    assert refused.code == "arrival_outside_radius" and refused.status == 409
    assert (await visits.get_visit(db, visit.id)) is None or not (await visits.get_visit(db, visit.id)).get("arrival")
    stored = await visits.arrive(db, NURSE, visit.id, far, radius_m=300, reason="小区新建，地图定位在旧门牌")
    assert stored["arrival"]["within_radius"] is False
    assert stored["arrival"]["reason"] == "小区新建，地图定位在旧门牌"


async def test_an_address_without_a_map_point_needs_a_reason(db):
    visit = await confirmed_visit(db, location=None)
    assert (await error_of(visits.arrive(db, NURSE, visit.id, HOME, radius_m=300))).code == \
        "arrival_reason_required"


async def test_only_the_assigned_nurse_acts_and_only_after_leaving(db):
    visit = await confirmed_visit(db, status=t.CONFIRMED)
    assert (await error_of(visits.arrive(db, OTHER_NURSE, visit.id, HOME, radius_m=300))).code == \
        "not_assigned_nurse"
    assert (await error_of(visits.arrive(db, NURSE, visit.id, HOME, radius_m=300))).code == "visit_not_on_the_way"


async def test_identity_check_is_recorded_without_the_digits(db):
    visit = await confirmed_visit(db)
    assert (await error_of(visits.check_identity(db, NURSE, visit.id, visits.ID_LAST4, id_last4="002X"))).code == \
        "not_arrived"
    await visits.arrive(db, NURSE, visit.id, HOME, radius_m=300)
    wrong = await visits.check_identity(db, NURSE, visit.id, visits.ID_LAST4, id_last4="1234")
    assert wrong["identity"]["matched"] is False
    right = await visits.check_identity(db, NURSE, visit.id, visits.ID_LAST4, id_last4="002x")
    assert right["identity"]["matched"] is True and right["identity"]["method"] == "id_last4"
    by_name = await visits.check_identity(db, NURSE, visit.id, visits.NAME_AGE, name="王秀英", age=82)
    assert by_name["identity"]["matched"] is True
    assert [c["matched"] for c in by_name["identity_checks"]] == [False, True, True]
    assert "002X" not in str(by_name["identity_checks"]) and "1234" not in str(by_name["identity_checks"])
    trail = await visits.trail(db, visit.id)
    assert [(r["action"], r["details"].get("matched")) for r in trail][1:] == [
        ("identity_check", False), ("identity_check", True), ("identity_check", True)]


async def test_pings_are_stored_with_their_expiry_under_a_ttl_index(db):
    visit = await confirmed_visit(db, status=t.IN_SERVICE)
    now = datetime.now(UTC)
    await visits.ping(db, NURSE, visit.id, north_of(HOME, 10), retention=timedelta(days=30), now=now)
    stored = await visits.pings(db, visit.id)
    assert len(stored) == 1 and stored[0]["expires_at"] - stored[0]["at"] == timedelta(days=30)
    indexes = await db.visit_pings.index_information()
    assert indexes["expires_ttl"]["expireAfterSeconds"] == 0
    assert (await visits.get_visit(db, visit.id))["last_location"]["latitude"] == pytest.approx(
        north_of(HOME, 10)["latitude"])


# ---------------------------------------------------------------- credentials


CREDENTIALS = {"licence_number": "202633000123", "licence_valid_until": "2030-06-30", "title": "主管护师",
               "years_of_practice": 8, "insurance": {"insurer": "中国人保财险", "policy_number": "PZAK2026330001",
                                                      "valid_until": "2027-06-30"}}


async def test_an_expired_licence_or_insurance_blocks_assignment(db):
    visit = await confirmed_visit(db, status="requested")
    await credentials.put(db, CLINIC, "nurse-lvli", credentials.parse(
        {**CREDENTIALS, "licence_valid_until": "2026-01-31"}), by="desk")
    refused = await error_of(bookings.transition(db, visit.id, t.CONFIRMED, CLINIC_ACTOR, POLICY,
                                                 nurse_id="nurse-lvli"))
    assert refused.status == 409 and refused.code == "nurse_licence_expired"
    assert (await db.bookings.find_one({"_id": visit.id}))["status"] == "requested"
    assert await db.nurse_assignments.count_documents({}) == 0
    # insurance ending before the visit day blocks too (the visit is due now: two days ago is before it
    # in every time zone)
    ended = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    await credentials.put(db, CLINIC, "nurse-lvli", credentials.parse(
        {**CREDENTIALS, "insurance": {**CREDENTIALS["insurance"], "valid_until": ended}}), by="desk")
    refused = await error_of(bookings.transition(db, visit.id, t.CONFIRMED, CLINIC_ACTOR, POLICY,
                                                 nurse_id="nurse-lvli"))
    assert refused.code == "nurse_insurance_expired"
    await credentials.put(db, CLINIC, "nurse-lvli", credentials.parse(CREDENTIALS), by="desk")
    confirmed = await bookings.transition(db, visit.id, t.CONFIRMED, CLINIC_ACTOR, POLICY, nurse_id="nurse-lvli")
    assert confirmed["status"] == t.CONFIRMED


async def test_admins_are_alerted_30_days_before_once(db):
    await world(db)
    now = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    await credentials.put(db, CLINIC, "nurse-lvli", credentials.parse(
        {**CREDENTIALS, "insurance": {**CREDENTIALS["insurance"], "valid_until": "2026-12-25"}}), by="desk")
    await credentials.put(db, CLINIC, "nurse-chen", credentials.parse(
        {**CREDENTIALS, "insurance": {**CREDENTIALS["insurance"], "valid_until": "2027-01-15"}}), by="desk")
    assert await credentials.alert_expiring(db, now) == 1
    assert await credentials.alert_expiring(db, now + timedelta(hours=1)) == 0
    [alert] = await credentials.alerts(db, CLINIC)
    assert alert["nurse_id"] == "nurse-lvli" and alert["document"] == "insurance"
    assert alert["message"] == "护士吕丽的执业责任保险将于 2026-12-25 到期，请及时续期"
    assert await credentials.alert_expiring(db, now + timedelta(days=20)) == 1  # chen's, 26 days before


# ---------------------------------------------------------------- service record

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
RECORD = {"items": ["更换导尿管"], "materials": [{"name": "导尿包", "quantity": 1, "unit": "套"}],
          "vitals": {"temperature": 36.8, "systolic": {"value": 132, "unit": "mmHg"}, "diastolic": 80, "spo2": 97},
          "observations": "尿液清亮，无发热", "advice": "每日饮水 1500 毫升以上，注意会阴清洁"}


async def test_the_service_record_is_written_once_and_corrections_are_appended(db):
    visit = await confirmed_visit(db, status=t.IN_SERVICE)
    refused = await error_of(service_records.submit(db, NURSE, visit.id, RECORD, POLICY))
    assert refused.code == "identity_not_verified"
    await arrived_and_verified(db, visit)
    photo = await service_records.upload_photo(db, NURSE, visit.id, PNG, "image/png")
    record = await service_records.submit(db, NURSE, visit.id, {**RECORD, "photo_ids": [photo["id"]]}, POLICY)
    assert record["vitals"]["temperature"] == {"label": "体温", "value": 36.8, "unit": "℃"}
    assert (await db.bookings.find_one({"_id": visit.id}))["status"] == t.COMPLETED
    refused = await error_of(service_records.submit(db, NURSE, visit.id, {**RECORD, "items": ["别的"]}, POLICY))
    assert refused.code == "record_exists" and refused.status == 409
    corrected = await service_records.correct(db, NURSE, visit.id, "耗材应为导尿包 1 套、无菌手套 2 副")
    assert corrected["items"] == ["更换导尿管"] and corrected["corrections"][0]["by"] == "lvli"
    stored = await service_records.get_record(db, visit.id, openid=FAMILY)
    assert stored["items"] == ["更换导尿管"] and len(stored["corrections"]) == 1


async def test_implausible_vital_signs_are_refused(db):
    visit = await confirmed_visit(db, status=t.IN_SERVICE)
    await arrived_and_verified(db, visit)
    for vitals in ({"temperature": 48}, {"pulse": 5}, {"temperature": {"value": 98.6, "unit": "℉"}},
                   {"systolic": 80, "diastolic": 95}):
        refused = await error_of(service_records.submit(db, NURSE, visit.id, {**RECORD, "vitals": vitals}, POLICY))
        assert refused.code in ("implausible_vitals", "invalid_vitals")
    assert await db.service_records.count_documents({}) == 0


async def test_photos_are_checked_and_served_only_to_the_family_and_the_institution(db):
    visit = await confirmed_visit(db, status=t.IN_SERVICE)
    assert (await error_of(service_records.upload_photo(db, NURSE, visit.id, b"GIF89a....", "image/gif"))).status == 415
    assert (await error_of(service_records.upload_photo(db, NURSE, visit.id, PNG, "image/jpeg"))).status == 415
    big = PNG + b"\x00" * service_records.MAX_PHOTO_BYTES
    assert (await error_of(service_records.upload_photo(db, NURSE, visit.id, big, "image/png"))).status == 413
    photo = await service_records.upload_photo(db, NURSE, visit.id, PNG, "image/png")
    data, content_type = await service_records.read_photo(db, visit.id, photo["id"], openid=FAMILY)
    assert data == PNG and content_type == "image/png"
    assert (await service_records.read_photo(db, visit.id, photo["id"], member=DESK))[0] == PNG
    assert (await error_of(service_records.read_photo(db, visit.id, photo["id"], openid="someone-else"))).status == 404
    assert (await error_of(service_records.read_photo(db, visit.id, photo["id"], member=OTHER_NURSE))).status == 403
    outsider = StaffMember("x", "clinic_staff", "test-clinic-other")
    assert (await error_of(service_records.read_photo(db, visit.id, photo["id"], member=outsider))).status == 403


async def test_the_family_confirms_or_disputes_once(db):
    visit = await confirmed_visit(db, status=t.IN_SERVICE)
    await arrived_and_verified(db, visit)
    await service_records.submit(db, NURSE, visit.id, RECORD, POLICY)
    assert (await error_of(service_records.respond(db, FAMILY, visit.id, confirmed=False))).code == "reason_required"
    disputed = await service_records.respond(db, FAMILY, visit.id, confirmed=False, reason="护士只待了 10 分钟")
    assert disputed["family_response"]["confirmed"] is False
    assert (await error_of(service_records.respond(db, FAMILY, visit.id, confirmed=True))).code == "already_responded"


async def test_the_demo_publishes_consent_once_and_valid_credentials(db, mongo_client, settings):
    from scheduling.home_visit_demo import seed_home_visit_demo
    from scheduling.seed import HOSPITAL_ID, seed_booking_data

    await seed_booking_data(db, 3)
    [line] = await seed_home_visit_demo(mongo_client, db, settings)
    assert "新发布 5 个类别" in line
    await seed_home_visit_demo(mongo_client, db, settings)
    assert await db.consent_texts.count_documents({"institution_id": HOSPITAL_ID}) == 5
    nurse = (await db.nurses.find({"institution_id": HOSPITAL_ID}).to_list(None))[0]
    assert credentials.problems(await credentials.get(db, nurse["_id"]), datetime.now(UTC).date()) == []
