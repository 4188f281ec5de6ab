"""Settlements only for their owner (issue 12), end to end on the real database: unverified bindings
reveal nothing, WeChat face verification against the fake WeChat API, the development verifier,
attempt limits shared by two app instances, the start-up migration, family grants, the counter,
the staff lookup and the resident's access log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from bot.accounts import sessions, staff
from bot.keys import DB, MONGO, SETTINGS
from bot.notify.outbox import COLLECTION as NOTIFICATIONS
from bot.settlements.migration import NOTICE_KIND, migrate_unverified
from bot.wechat.callback import CallbackCredentials
from bot.wechat.simulator import Simulator, message_xml
from tests.conftest import login
from tests.settlement_support import BIND, IDENTITY_KEY, SECRET, bind, event, post_event, resident_id

VICTIM_ID = resident_id(41, born="19560315")
VICTIM_NAME = "王秀兰"
LIMITS = {"bind_attempts_per_account": 100, "bind_attempts_per_identity": 100}


@pytest.fixture
async def app_client(make_client, db):
    return await make_client(settlement_webhook_secret=SECRET, identity_hash_key=IDENTITY_KEY, **LIMITS)


@pytest.fixture
async def wechat_client(make_client, db, fake_wechat):
    """Production mode: a WeChat AppID is set (so no dev login, no development verifier)."""
    return await make_client(settlement_webhook_secret=SECRET, identity_hash_key=IDENTITY_KEY,
                             wechat_app_id=fake_wechat.app_id, wechat_app_secret=fake_wechat.secret,
                             wechat_api_base=fake_wechat.base_url, **LIMITS)


async def resident(client, openid: str) -> dict[str, str]:
    """A resident session issued directly (the mini-program login needs a wx.login code)."""
    token, _ = await sessions.issue(client.app[DB], sessions.RESIDENT, openid)
    return {"Authorization": f"Bearer {token}"}


async def victim_settlements(client) -> None:
    await post_event(client, event(event_id="v1", settlement_id="JS-VICTIM", id_number=VICTIM_ID, name=VICTIM_NAME,
                                   status="settled"))


def failures(code: str, method: str = "wechat_face") -> float:
    return REGISTRY.get_sample_value("identity_verification_failures_total",
                                     {"method": method, "code": code}) or 0.0


async def test_stranger_gets_nothing_at_any_step(app_client, db):
    await victim_settlements(app_client)
    stranger = await login(app_client, "stranger")
    bound = await bind(app_client, stranger, VICTIM_ID, "随便", verify_result=None)
    body = await bound.json()
    assert bound.status == 201 and body["verified"] is False
    assert "matched" not in json.dumps(body) and "settlement" not in json.dumps(body)
    # the right name does not help either
    again = await bind(app_client, stranger, VICTIM_ID, VICTIM_NAME, verify_result=None)
    assert again.status == 200 and (await again.json())["verified"] is False
    listed = await app_client.get("/api/v1/settlements", headers=stranger)
    assert (await listed.json())["items"] == []
    detail = await app_client.get("/api/v1/settlements/JS-VICTIM", headers=stranger)
    assert detail.status == 404 and (await detail.json())["error"]["code"] == "settlement_not_found"
    # a new event for the victim queues nothing for the stranger
    response = await post_event(app_client, event(event_id="v2", settlement_id="JS-VICTIM-2", id_number=VICTIM_ID,
                                                  name=VICTIM_NAME, status="submitted"))
    assert (await response.json())["notified"] == 0
    assert await db[NOTIFICATIONS].count_documents({"openid": "stranger"}) == 0
    # nor the chat menu
    credentials = CallbackCredentials.from_settings(app_client.app[SETTINGS])
    bot = Simulator(app_client.session, str(app_client.make_url("/")), credentials, "stranger")
    xml = message_xml("stranger", "event", create_time=1_800_000_001, Event="CLICK", EventKey="MENU_SETTLEMENT")
    reply = (await bot.send(xml)).content
    assert "尚未完成身份核验" in reply and "金华市中心医院" not in reply and "1,234.56" not in reply


async def test_a_verified_binding_under_another_name_sees_nothing(app_client, db):
    await victim_settlements(app_client)
    someone = await login(app_client, "someone")
    response = await bind(app_client, someone, VICTIM_ID, "李四")  # development verifier, wrong name
    assert response.status == 409 and (await response.json())["error"]["code"] == "insured_name_mismatch"
    binding = await db.insured_identities.find_one({"openid": "someone"})
    assert binding["verified"] is False
    assert (await (await app_client.get("/api/v1/settlements", headers=someone)).json())["items"] == []


async def test_development_verifier_is_refused_in_production(wechat_client, db):
    headers = await resident(wechat_client, "prod-user")
    response = await bind(wechat_client, headers, VICTIM_ID, VICTIM_NAME)  # verify_result "dev-verified"
    error = (await response.json())["error"]
    assert response.status == 403 and error["code"] == "dev_verifier_disabled"
    assert error["details"]["verified"] is False
    assert (await db.insured_identities.find_one({"openid": "prod-user"}))["verified"] is False


async def test_face_verification_accepts_a_fresh_matching_result_once(wechat_client, db, fake_wechat):
    await victim_settlements(wechat_client)
    headers = await resident(wechat_client, "owner")
    fake_wechat.add_face_result("vr-good", "owner", VICTIM_ID, VICTIM_NAME)
    response = await bind(wechat_client, headers, VICTIM_ID, VICTIM_NAME, verify_result="vr-good")
    body = await response.json()
    assert response.status == 201 and body["verified"] is True and body["verification_method"] == "wechat_face"
    assert [r["json"] for r in fake_wechat.requests if r["path"] == "cityservice/face/identify/getinfo"] == [
        {"verify_result": "vr-good"}]
    listed = await (await wechat_client.get("/api/v1/settlements", headers=headers)).json()
    assert [s["id"] for s in listed["items"]] == ["JS-VICTIM"]
    assert await db[NOTIFICATIONS].count_documents({"openid": "owner"}) == 1  # the settlement on record
    # the same verify_result again, for another binding: refused before asking WeChat
    calls = len(fake_wechat.requests)
    other = resident_id(42)
    replay = await bind(wechat_client, headers, other, VICTIM_NAME, verify_result="vr-good")
    assert replay.status == 422 and (await replay.json())["error"]["code"] == "face_verify_replayed"
    assert len(fake_wechat.requests) == calls


@pytest.mark.parametrize("setup, claim, code", [
    # (openid the result belongs to, number, name, extra) → what the resident claims → refusal
    (("someone-else", VICTIM_ID, VICTIM_NAME, {}), (VICTIM_ID, VICTIM_NAME), "face_verify_wrong_account"),
    (("claimant", VICTIM_ID, "王秀英", {}), (VICTIM_ID, VICTIM_NAME), "face_verify_mismatch"),
    (("claimant", resident_id(43), VICTIM_NAME, {}), (VICTIM_ID, VICTIM_NAME), "face_verify_mismatch"),
    (("claimant", VICTIM_ID, VICTIM_NAME, {"age_seconds": 11 * 60}), (VICTIM_ID, VICTIM_NAME), "face_verify_expired"),
    (("claimant", VICTIM_ID, VICTIM_NAME, {"expired": True}), (VICTIM_ID, VICTIM_NAME), "face_verify_expired"),
    (("claimant", VICTIM_ID, VICTIM_NAME, {"identify_ret": 10002}), (VICTIM_ID, VICTIM_NAME), "face_verify_failed"),
    (("claimant", VICTIM_ID, VICTIM_NAME, {}), ("YB330702000123456", VICTIM_NAME), "face_verify_needs_id_card"),
])
async def test_face_verification_refusals(wechat_client, db, fake_wechat, setup, claim, code):
    openid, number, name, extra = setup
    fake_wechat.add_face_result("vr-x", openid, number, name, **extra)
    headers = await resident(wechat_client, "claimant")
    before = failures(code)
    response = await bind(wechat_client, headers, claim[0], claim[1], verify_result="vr-x")
    error = (await response.json())["error"]
    assert response.status == 422 and error["code"] == code, error
    assert error["details"]["verified"] is False and error["details"]["binding_id"]
    assert (await db.insured_identities.find_one({"openid": "claimant"}))["verified"] is False
    assert failures(code) == before + 1


async def test_wechat_errors_are_refusals_with_stable_codes(wechat_client, db, fake_wechat):
    headers = await resident(wechat_client, "claimant")
    unknown = await bind(wechat_client, headers, VICTIM_ID, VICTIM_NAME, verify_result="never-issued")
    assert unknown.status == 422 and (await unknown.json())["error"]["code"] == "face_verify_invalid"
    fake_wechat.add_face_result("vr-y", "claimant", VICTIM_ID, VICTIM_NAME)
    for injected, status, code in ((84003, 422, "face_verify_replayed"), (40003, 422, "face_verify_wrong_account"),
                                   (-1, 503, "face_verify_unavailable"), ("http:502", 503, "face_verify_unavailable")):
        fake_wechat.fail_next("cityservice/face/identify/getinfo", [injected])
        response = await bind(wechat_client, headers, VICTIM_ID, VICTIM_NAME, verify_result="vr-y")
        assert (response.status, (await response.json())["error"]["code"]) == (status, code), injected
    # an expired token is refreshed once and the call succeeds
    fake_wechat.expire_all_tokens()
    response = await bind(wechat_client, headers, VICTIM_ID, VICTIM_NAME, verify_result="vr-y")
    assert response.status == 200 and (await response.json())["verified"] is True


async def test_attempt_limits_hold_across_two_instances(make_client, db):
    settings = {"settlement_webhook_secret": SECRET, "identity_hash_key": IDENTITY_KEY,
                "bind_attempts_per_account": 10, "bind_attempts_per_identity": 3}
    first, second = await make_client(**settings), await make_client(**settings)
    assert first.app[DB].name == second.app[DB].name and first.app[MONGO] is not second.app[MONGO]
    guesser = await login(first, "guesser")
    statuses = []
    for serial in range(14):  # 60 guesses of a birth date's sequence numbers, cut short
        client = first if serial % 2 else second
        response = await bind(client, guesser, resident_id(500 + serial), "张三", verify_result=None)
        statuses.append(response.status)
    assert statuses == [201] * 10 + [429] * 4
    error = (await response.json())["error"]
    assert error["code"] == "too_many_attempts" and error["details"]["retry_after_seconds"] > 0
    # one identity tried from many accounts: limited per identity too
    statuses = []
    for account in range(5):
        client = first if account % 2 else second
        headers = await login(client, f"account-{account}")
        statuses.append((await bind(client, headers, VICTIM_ID, "张三", verify_result=None)).status)
    assert statuses == [201, 201, 201, 429, 429]


async def test_migration_marks_old_bindings_unverified_once(app_client, db):
    await victim_settlements(app_client)
    mongo = app_client.app[MONGO]
    # two bindings of one resident and one of another, as stored before verification existed
    from bot.settlements.id_numbers import identity_hash, parse

    key = IDENTITY_KEY.encode()
    for openid, number, name in (("old-1", VICTIM_ID, VICTIM_NAME), ("old-1", resident_id(44), "张三"),
                                 ("old-2", VICTIM_ID, VICTIM_NAME)):
        await db.insured_identities.insert_one({
            "openid": openid, "name": name, "id_kind": "resident_id", "id_hash": identity_hash(key, parse(number)),
            "id_masked": parse(number).masked, "created_at": datetime.now(UTC)})
    old_binding = await db.insured_identities.find_one({"openid": "old-2"})
    await db[NOTIFICATIONS].insert_one({"kind": "settlement_status", "openid": "old-2", "status": "pending",
                                        "payload": {"binding_id": str(old_binding["_id"])},
                                        "due_at": datetime.now(UTC), "created_at": datetime.now(UTC)})
    app_db = app_client.app[DB]
    assert await migrate_unverified(mongo, app_db, key) == 2
    assert await migrate_unverified(mongo, app_db, key) == 0  # idempotent
    assert await db.insured_identities.count_documents({"verified": False}) == 3
    assert (await db[NOTIFICATIONS].find_one({"openid": "old-2"}))["status"] == "cancelled"  # queued before
    notices = await db.inbox.find({"kind": NOTICE_KIND}).to_list()
    assert sorted(n["openid"] for n in notices) == ["old-1", "old-2"]
    assert "人脸核身" in notices[0]["text"] and "核验前不会显示结算记录" in notices[0]["text"]
    old = await login(app_client, "old-1")
    assert (await (await app_client.get("/api/v1/settlements", headers=old)).json())["items"] == []
    inbox = await (await app_client.get("/api/v1/inbox", headers=old)).json()
    assert [e["title"] for e in inbox["items"]] == ["请完成参保人身份核验"]
    # another start (another instance) runs the migration again: nothing more
    await migrate_unverified(mongo, app_db, key)
    assert await db.inbox.count_documents({"kind": NOTICE_KIND}) == 2
    # verifying the old binding (development verifier) reveals the settlement
    assert (await bind(app_client, old, VICTIM_ID, VICTIM_NAME)).status == 200
    assert len((await (await app_client.get("/api/v1/settlements", headers=old)).json())["items"]) == 1


async def test_migration_runs_at_start(make_client, db, settings):
    await db.insured_identities.insert_one({"openid": "legacy", "name": "张三", "id_kind": "resident_id",
                                            "id_hash": "a" * 64, "id_masked": "330702********0011",
                                            "created_at": datetime.now(UTC)})
    await make_client(identity_hash_key=IDENTITY_KEY)
    assert (await db.insured_identities.find_one({"openid": "legacy"}))["verified"] is False
    assert await db.inbox.count_documents({"openid": "legacy", "kind": NOTICE_KIND}) == 1


async def verified_owner(client, openid: str = "owner") -> tuple[dict[str, str], str]:
    headers = await login(client, openid)
    binding = await (await bind(client, headers, VICTIM_ID, VICTIM_NAME)).json()
    return headers, binding["id"]


async def test_family_grant_invite_accept_list_revoke(app_client, db):
    await victim_settlements(app_client)
    owner, binding_id = await verified_owner(app_client)
    daughter = await login(app_client, "daughter")
    created = await app_client.post(f"/api/v1/me/insured-identities/{binding_id}/grants", headers=owner,
                                    json={"scopes": ["view", "messages"]})
    assert created.status == 201, await created.text()
    invitation = await created.json()
    assert invitation["grant"]["state"] == "pending"
    # nothing before acceptance
    assert (await (await app_client.get("/api/v1/settlements", headers=daughter)).json())["items"] == []
    assert (await app_client.post("/api/v1/me/grants/accept", headers=owner,
                                  json={"code": invitation["invitation_code"]})).status == 409  # self_grant
    accepted = await app_client.post("/api/v1/me/grants/accept", headers=daughter,
                                     json={"code": invitation["invitation_code"]})
    assert accepted.status == 200 and (await accepted.json())["state"] == "active"
    again = await app_client.post("/api/v1/me/grants/accept", headers=await login(app_client, "nephew"),
                                  json={"code": invitation["invitation_code"]})
    assert again.status == 404 and (await again.json())["error"]["code"] == "invitation_not_found"
    seen = await (await app_client.get("/api/v1/settlements", headers=daughter)).json()
    assert [(s["id"], s["insured"]["via"], s["insured"]["name"]) for s in seen["items"]] == [
        ("JS-VICTIM", "grant", VICTIM_NAME)]
    assert (await app_client.get("/api/v1/settlements/JS-VICTIM", headers=daughter)).status == 200
    # messages: the next event tells the owner and the daughter
    response = await post_event(app_client, event(event_id="v3", settlement_id="JS-VICTIM-3", id_number=VICTIM_ID,
                                                  name=VICTIM_NAME))
    assert (await response.json())["notified"] == 2
    assert await db[NOTIFICATIONS].count_documents({"openid": "daughter"}) == 1
    lists = await (await app_client.get("/api/v1/me/grants", headers=owner)).json()
    assert [g["state"] for g in lists["given"]] == ["active"] and lists["max_grantees"] == 5
    received = await (await app_client.get("/api/v1/me/grants", headers=daughter)).json()
    assert [g["insured_name"] for g in received["received"]] == [VICTIM_NAME]
    # revoke: at once
    grant_id = invitation["grant"]["id"]
    assert (await app_client.delete(f"/api/v1/me/grants/{grant_id}", headers=await login(app_client, "x"))).status \
        == 404
    revoked = await app_client.delete(f"/api/v1/me/grants/{grant_id}", headers=owner)
    assert revoked.status == 200 and (await revoked.json())["state"] == "revoked"
    assert (await (await app_client.get("/api/v1/settlements", headers=daughter)).json())["items"] == []
    response = await post_event(app_client, event(event_id="v4", settlement_id="JS-VICTIM-4", id_number=VICTIM_ID,
                                                  name=VICTIM_NAME))
    assert (await response.json())["notified"] == 1


async def test_family_grant_expires_and_is_limited(make_client, db):
    client = await make_client(settlement_webhook_secret=SECRET, identity_hash_key=IDENTITY_KEY,
                               max_grantees_per_identity=2, **LIMITS)
    await victim_settlements(client)
    owner, binding_id = await verified_owner(client)
    soon = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    codes = []
    for _ in range(2):
        created = await client.post(f"/api/v1/me/insured-identities/{binding_id}/grants", headers=owner,
                                    json={"scopes": ["view"], "expires_at": soon})
        assert created.status == 201
        codes.append((await created.json())["invitation_code"])
    third = await client.post(f"/api/v1/me/insured-identities/{binding_id}/grants", headers=owner, json={})
    assert third.status == 409 and (await third.json())["error"]["code"] == "too_many_grantees"
    past = await client.post(f"/api/v1/me/insured-identities/{binding_id}/grants", headers=owner,
                             json={"expires_at": "2026-01-01T00:00:00+08:00"})
    assert past.status in (400, 409)
    son = await login(client, "son")
    assert (await client.post("/api/v1/me/grants/accept", headers=son, json={"code": codes[0]})).status == 200
    assert len((await (await client.get("/api/v1/settlements", headers=son)).json())["items"]) == 1
    # the grant's end passes (moved into the past, as time would)
    await db.settlement_grants.update_many({"grantee_openid": "son"},
                                           {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}})
    assert (await (await client.get("/api/v1/settlements", headers=son)).json())["items"] == []
    received = await (await client.get("/api/v1/me/grants", headers=son)).json()
    assert [g["state"] for g in received["received"]] == ["expired"]
    # an expired grant frees its place
    assert (await client.post(f"/api/v1/me/insured-identities/{binding_id}/grants", headers=owner,
                              json={})).status == 201
    # an unverified binding cannot grant
    unverified = await (await bind(client, owner, resident_id(45), "张三", verify_result=None)).json()
    refused = await client.post(f"/api/v1/me/insured-identities/{unverified['id']}/grants", headers=owner, json={})
    assert refused.status == 409 and (await refused.json())["error"]["code"] == "identity_not_verified"


async def staff_headers(client, role: str, username: str | None = None) -> dict[str, str]:
    username = username or f"{role}-1"
    nurse_id = f"nurse-{username}" if role == staff.NURSE else None  # a nurse account names its nurse record
    await staff.create_or_update(client.app[DB], username, "pw-0123456789", role, None, name="李工作人员",
                                 nurse_id=nurse_id)
    response = await client.post("/api/v1/staff/login", json={"username": username, "password": "pw-0123456789"})
    return {"Authorization": f"Bearer {(await response.json())['token']}"}


async def test_counter_binding_and_counter_grant(app_client, db):
    await victim_settlements(app_client)
    desk = await staff_headers(app_client, staff.CENTRE_STAFF)
    elder = await login(app_client, "elder")
    code = await (await app_client.post("/api/v1/me/counter-code", headers=elder)).json()
    assert len(code["code"]) == 8
    body = {"code": code["code"], "name": VICTIM_NAME, "id_number": VICTIM_ID, "documents": ["居民身份证原件"]}
    nurse = await staff_headers(app_client, staff.NURSE)
    assert (await app_client.post("/api/v1/staff/insured-identities", headers=nurse, json=body)).status == 403
    bound = await app_client.post("/api/v1/staff/insured-identities", headers=desk, json=body)
    assert bound.status == 201 and (await bound.json())["verification_method"] == "counter"
    binding = await db.insured_identities.find_one({"openid": "elder"})
    assert binding["verification"]["staff"] == "centre_staff-1"
    assert binding["verification"]["documents"] == ["居民身份证原件"]
    assert (await app_client.post("/api/v1/staff/insured-identities", headers=desk, json=body)).status == 404  # used
    assert len((await (await app_client.get("/api/v1/settlements", headers=elder)).json())["items"]) == 1
    # a grant recorded at the counter for a grandson
    grandson = await login(app_client, "grandson")
    grandson_code = (await (await app_client.post("/api/v1/me/counter-code", headers=grandson)).json())["code"]
    grant = await app_client.post("/api/v1/staff/grants", headers=desk, json={
        "grantee_code": grandson_code, "insured_name": VICTIM_NAME, "id_number": VICTIM_ID,
        "proof": ["参保人身份证原件", "授权委托书"]})
    assert grant.status == 201 and (await grant.json())["recorded_at_counter"] is True
    # staff can revoke it at the counter too, with a reason (a second grant, revoked at once)
    nephew = await login(app_client, "nephew")
    nephew_code = (await (await app_client.post("/api/v1/me/counter-code", headers=nephew)).json())["code"]
    second = await (await app_client.post("/api/v1/staff/grants", headers=desk, json={
        "grantee_code": nephew_code, "insured_name": VICTIM_NAME, "id_number": VICTIM_ID,
        "proof": ["授权委托书"]})).json()
    revoked = await app_client.post(f"/api/v1/staff/grants/{second['id']}/revoke", headers=desk,
                                    json={"reason": "参保人本人到窗口要求撤销"})
    assert revoked.status == 200 and (await revoked.json())["state"] == "revoked"
    assert (await (await app_client.get("/api/v1/settlements", headers=nephew)).json())["items"] == []
    assert len((await (await app_client.get("/api/v1/settlements", headers=grandson)).json())["items"]) == 1
    log = await (await app_client.get("/api/v1/me/access-log", headers=elder)).json()
    assert [e["what"] for e in log["items"]] == ["counter_grant_revoked", "counter_grant", "counter_grant",
                                                 "counter_binding"]
    # the verified owner sees the counter grant among theirs and revokes it
    given = (await (await app_client.get("/api/v1/me/grants", headers=elder)).json())["given"]
    assert [(g["recorded_at_counter"], g["state"]) for g in given] == [(True, "revoked"), (True, "active")]
    assert (await app_client.delete(f"/api/v1/me/grants/{given[1]['id']}", headers=elder)).status == 200
    assert (await (await app_client.get("/api/v1/settlements", headers=grandson)).json())["items"] == []
    assert log["items"][-1]["staff_name"] == "李工作人员" and "居民身份证原件" in log["items"][-1]["why"]


async def test_staff_lookup_is_masked_by_default_and_logged(app_client, db):
    await victim_settlements(app_client)
    owner, _ = await verified_owner(app_client)
    desk = await staff_headers(app_client, staff.CENTRE_STAFF)
    url = "/api/v1/staff/settlements/lookup"
    clinic = await staff_headers(app_client, staff.CLINIC_STAFF)
    assert (await app_client.post(url, headers=clinic, json={"settlement_id": "JS-VICTIM"})).status == 403
    masked = await (await app_client.post(url, headers=desk, json={"settlement_id": "JS-VICTIM"})).json()
    item = masked["items"][0]
    assert item["masked"] is True and item["insured"]["name_masked"] == "王**"
    assert VICTIM_NAME not in json.dumps(masked) and VICTIM_ID not in json.dumps(masked)
    no_reason = await app_client.post(url, headers=desk, json={"id_number": VICTIM_ID, "reveal": True})
    assert no_reason.status == 400 and (await no_reason.json())["error"]["code"] == "reason_required"
    both = await app_client.post(url, headers=desk, json={"id_number": VICTIM_ID, "settlement_id": "JS-VICTIM"})
    assert (await both.json())["error"]["code"] == "lookup_key_required"
    revealed = await (await app_client.post(url, headers=desk, json={
        "id_number": VICTIM_ID, "reveal": True, "reason": "参保人来电咨询报销进度"})).json()
    assert revealed["items"][0]["insured"]["names"] == [VICTIM_NAME]
    assert revealed["items"][0]["visible_to"] == {"verified_bindings": 1, "active_grants": 0}
    nothing = await (await app_client.post(url, headers=desk, json={"id_number": resident_id(46)})).json()
    assert nothing["items"] == []
    log = await (await app_client.get("/api/v1/me/access-log", headers=owner)).json()
    assert [(e["what"], e["why"], e["settlement_ids"]) for e in log["items"]] == [
        ("settlement_lookup_unmasked", "参保人来电咨询报销进度", ["JS-VICTIM"]),
        ("settlement_lookup", "窗口业务查询（脱敏）", ["JS-VICTIM"])]
    assert log["items"][0]["staff"] == "centre_staff-1"
    # a stranger's unverified binding of the same number does not see the log
    stranger = await login(app_client, "stranger")
    await bind(app_client, stranger, VICTIM_ID, VICTIM_NAME, verify_result=None)
    assert (await (await app_client.get("/api/v1/me/access-log", headers=stranger)).json())["items"] == []
    assert (await app_client.get(BIND, headers=stranger)).status == 200


async def test_openapi_documents_verification_grants_and_access_log(app_client):
    document = await (await app_client.get("/api/v1/openapi.json")).json()
    paths = document["paths"]
    bind_operation = paths["/api/v1/me/insured-identities"]["post"]
    assert {"201", "400", "401", "403", "409", "422", "429", "503"} <= set(bind_operation["responses"])
    assert "verify_result" in document["components"]["schemas"]["BindIn"]["properties"]
    assert "matched_settlements" not in json.dumps(document["components"]["schemas"]["InsuredIdentity"])
    for path in ("/api/v1/me/access-log", "/api/v1/me/grants", "/api/v1/me/grants/accept",
                 "/api/v1/me/insured-identities/{binding_id}/grants", "/api/v1/me/counter-code",
                 "/api/v1/staff/insured-identities", "/api/v1/staff/grants", "/api/v1/staff/settlements/lookup"):
        assert path in paths, path
    webhook = paths["/api/v1/integrations/settlements/events"]["post"]
    assert webhook["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("SettlementEventIn")
    assert "insured_name" in document["components"]["schemas"]["SettlementEventIn"]["required"]
    assert [p["name"] for p in webhook["parameters"]] == ["X-Timestamp", "X-Signature"]


async def test_spent_identity_attempts_do_not_lock_the_owner_out(make_client, db, fake_wechat):
    client = await make_client(settlement_webhook_secret=SECRET, identity_hash_key=IDENTITY_KEY,
                               wechat_app_id=fake_wechat.app_id, wechat_app_secret=fake_wechat.secret,
                               wechat_api_base=fake_wechat.base_url, bind_attempts_per_identity=2)
    for account in range(3):  # strangers spend the identity's attempts on unverified binds
        await bind(client, await resident(client, f"stranger-{account}"), VICTIM_ID, "张三", verify_result=None)
    blocked = await bind(client, await resident(client, "stranger-x"), VICTIM_ID, "张三", verify_result=None)
    assert blocked.status == 429
    fake_wechat.add_face_result("vr-owner", "owner", VICTIM_ID, VICTIM_NAME)
    owner = await bind(client, await resident(client, "owner"), VICTIM_ID, VICTIM_NAME, verify_result="vr-owner")
    assert owner.status == 201 and (await owner.json())["verified"] is True
    # a forged proof is refused and counted against the identity
    forged = await bind(client, await resident(client, "stranger-y"), VICTIM_ID, VICTIM_NAME, verify_result="forged")
    assert (await forged.json())["error"]["code"] == "face_verify_invalid"


async def test_wechat_client_face_identify_info_against_the_fake(settings, db, fake_wechat):
    import dataclasses

    import aiohttp

    from bot.wechat.api import WeChatClient, WeChatPermanentError, WeChatTransientError

    configured = dataclasses.replace(settings, wechat_api_base=fake_wechat.base_url,
                                     wechat_app_id=fake_wechat.app_id, wechat_app_secret=fake_wechat.secret)
    fake_wechat.add_face_result("vr-1", "openid-1", VICTIM_ID.lower(), VICTIM_NAME)
    async with aiohttp.ClientSession() as http:
        wechat = WeChatClient(http, db, configured)
        answer = await wechat.face_identify_info("vr-1")
        assert answer["identify_ret"] == 0 and answer["openid"] == "openid-1"
        assert set(answer) >= {"errcode", "errmsg", "identify_time", "validate_data", "user_id_key", "finish_time",
                               "id_card_number_md5", "name_utf8_md5"}
        for verify_result, errcode in (("vr-1", 84003), ("unknown", 84001)):
            with pytest.raises(WeChatPermanentError) as error:
                await wechat.face_identify_info(verify_result)
            assert error.value.errcode == errcode
        fake_wechat.add_face_result("vr-old", "openid-1", VICTIM_ID, VICTIM_NAME, expired=True)
        with pytest.raises(WeChatPermanentError) as error:
            await wechat.face_identify_info("vr-old")
        assert error.value.errcode == 84002
        fake_wechat.fail_next("cityservice/face/identify/getinfo", [-1])
        with pytest.raises(WeChatTransientError):
            await wechat.face_identify_info("vr-old")  # not retried: WeChat answers a result only once
        assert sum(r["path"] == "cityservice/face/identify/getinfo" for r in fake_wechat.requests) == 5


async def test_chat_menu_shows_granted_settlements(app_client, db):
    await victim_settlements(app_client)
    owner, binding_id = await verified_owner(app_client)
    invitation = await (await app_client.post(f"/api/v1/me/insured-identities/{binding_id}/grants", headers=owner,
                                              json={"scopes": ["view"]})).json()
    carer = await login(app_client, "carer")
    await app_client.post("/api/v1/me/grants/accept", headers=carer, json={"code": invitation["invitation_code"]})
    credentials = CallbackCredentials.from_settings(app_client.app[SETTINGS])
    bot = Simulator(app_client.session, str(app_client.make_url("/")), credentials, "carer")
    xml = message_xml("carer", "event", create_time=1_800_000_002, Event="CLICK", EventKey="MENU_SETTLEMENT")
    reply = (await bot.send(xml)).content
    assert f"{VICTIM_NAME}·金华市中心医院" in reply and "已结算" in reply
