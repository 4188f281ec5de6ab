"""The signed settlement webhook over HTTP, against the real database."""

from __future__ import annotations

import json
import time

import pytest

from bot.notify.outbox import COLLECTION as NOTIFICATIONS
from tests.conftest import login
from tests.settlement_support import IDENTITY_KEY, SECRET, WEBHOOK, event, post_event, resident_id, signed_headers
from tests.settlement_support import bind as bind_request


@pytest.fixture
async def app_client(make_client, db):
    return await make_client(settlement_webhook_secret=SECRET, identity_hash_key=IDENTITY_KEY,
                             bind_attempts_per_account=100, bind_attempts_per_identity=100)


async def bind(client, openid: str, id_number: str, name: str = "张三") -> dict:
    """A binding verified by the development verifier."""
    response = await bind_request(client, await login(client, openid), id_number, name)
    assert response.status in (200, 201), await response.text()
    return await response.json()


async def nothing_written(db) -> bool:
    return (await db.settlements.count_documents({}) == 0 and await db.settlement_events.count_documents({}) == 0
            and await db[NOTIFICATIONS].count_documents({}) == 0)


async def test_webhook_disabled_without_secret(make_client, db):
    client = await make_client()
    response = await post_event(client, event())
    assert response.status == 503
    error = (await response.json())["error"]
    assert error["code"] == "settlement_webhook_disabled" and "SETTLEMENT_WEBHOOK_SECRET" in error["message"]


async def test_bad_signature_and_stale_timestamp_are_401(app_client, db):
    raw = json.dumps(event()).encode()
    bad = signed_headers(raw, secret="someone-else")
    response = await app_client.post(WEBHOOK, data=raw, headers=bad)
    assert response.status == 401 and (await response.json())["error"]["code"] == "signature_invalid"
    stale = signed_headers(raw, timestamp=int(time.time()) - 301)
    response = await app_client.post(WEBHOOK, data=raw, headers=stale)
    assert response.status == 401 and (await response.json())["error"]["code"] == "timestamp_stale"
    response = await app_client.post(WEBHOOK, data=raw)
    assert response.status == 401 and (await response.json())["error"]["code"] == "signature_missing"
    tampered = signed_headers(raw)
    response = await app_client.post(WEBHOOK, data=raw.replace(b"1234.56", b"9234.56"), headers=tampered)
    assert response.status == 401
    assert await nothing_written(db)


async def test_invalid_events_name_the_field_and_change_nothing(app_client, db):
    body = event()
    body["amounts"]["basic_insurance"] = "900.00"  # parts no longer add up to the total
    response = await post_event(app_client, body)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_event" and error["details"]["field"] == "amounts.total"
    assert "amounts·total" in error["message"] and "不一致" in error["message"]
    response = await post_event(app_client, {**event(), "sequence": -1})
    assert (await response.json())["error"]["details"]["field"] == "sequence"
    response = await post_event(app_client, b"not json")
    assert response.status == 400 and (await response.json())["error"]["code"] == "invalid_json"
    assert await nothing_written(db)


async def test_status_change_notifies_every_resident_who_bound_the_identity(app_client, db):
    id_number = resident_id(11)
    await bind(app_client, "daughter", id_number, "王芳")
    await bind(app_client, "son", id_number, "王芳")
    await bind(app_client, "stranger", resident_id(12), "李四")
    response = await post_event(app_client, event(id_number=id_number, status="settled", name="王芳"))
    assert response.status == 200
    assert await response.json() == {"result": "applied", "settlement_id": "JS-1", "status": "settled",
                                     "notified": 2}
    notes = await db[NOTIFICATIONS].find({"kind": "settlement_status"}).to_list()
    assert sorted(n["openid"] for n in notes) == ["daughter", "son"]
    payload = notes[0]["payload"]
    assert payload["status"] == "settled" and payload["amounts"]["self_pay"] == "284.56"
    assert payload["id_number_masked"] == id_number[:6] + "********" + id_number[-4:]
    assert id_number not in json.dumps(payload, default=str)


async def test_replayed_event_is_acknowledged_and_ignored(app_client, db):
    await bind(app_client, "r1", resident_id())
    first = await post_event(app_client, event(status="submitted"))
    again = await post_event(app_client, event(status="submitted"))
    assert (await first.json())["result"] == "applied"
    assert again.status == 200 and (await again.json())["result"] == "duplicate"
    assert await db[NOTIFICATIONS].count_documents({}) == 1
    settlement = await db.settlements.find_one({"_id": "JS-1"})
    assert len(settlement["history"]) == 1


async def test_out_of_order_sequences_never_move_backwards(app_client, db):
    await bind(app_client, "r1", resident_id())
    sequence = [(3, "approved"), (1, "submitted"), (2, "reviewing"), (4, "paid"), (3, "approved")]
    results = []
    for number, (seq, status) in enumerate(sequence):
        response = await post_event(app_client, event(event_id=f"e{number}", sequence=seq, status=status))
        results.append((await response.json())["result"])
    assert results == ["applied", "late", "late", "applied", "late"]
    settlement = await db.settlements.find_one({"_id": "JS-1"})
    assert settlement["status"] == "paid" and settlement["sequence"] == 4
    assert [(h["sequence"], h["applied"]) for h in settlement["history"]] == [
        (3, True), (1, False), (2, False), (4, True), (3, False)]
    notes = await db[NOTIFICATIONS].find({}).sort("created_at", 1).to_list()
    assert [n["payload"]["status"] for n in notes] == ["approved", "paid"]


async def test_impossible_transition_is_409_and_changes_nothing(app_client, db):
    await post_event(app_client, event(event_id="a", sequence=1, status="settled"))
    response = await post_event(app_client, event(event_id="b", sequence=2, status="reviewing"))
    assert response.status == 409
    error = (await response.json())["error"]
    assert error["code"] == "invalid_status_transition" and error["details"]["field"] == "status"
    assert await db.settlement_events.count_documents({"_id": "b"}) == 0
    assert (await db.settlements.find_one({"_id": "JS-1"}))["status"] == "settled"


async def test_same_settlement_other_person_is_409(app_client, db):
    await post_event(app_client, event(event_id="a", id_number=resident_id(1)))
    response = await post_event(app_client, event(event_id="b", sequence=2, status="reviewing",
                                                  id_number=resident_id(2)))
    assert response.status == 409
    assert (await response.json())["error"]["details"]["field"] == "insured_id_number"


async def test_unknown_identity_is_kept_and_matched_when_bound_later(app_client, db):
    id_number = resident_id(33)
    await post_event(app_client, event(event_id="a", settlement_id="JS-A", sequence=1, status="submitted",
                                       id_number=id_number, name="赵六"))
    await post_event(app_client, event(event_id="b", settlement_id="JS-A", sequence=2, status="reviewing",
                                       id_number=id_number, name="赵六"))
    await post_event(app_client, event(event_id="c", settlement_id="JS-B", sequence=1, status="settled",
                                       id_number=id_number, name="赵六"))
    assert await db.settlements.count_documents({}) == 2
    assert await db[NOTIFICATIONS].count_documents({}) == 0  # nobody to tell yet
    binding = await bind(app_client, "late-binder", id_number, "赵六")
    assert binding["verified"] is True and "matched_settlements" not in binding
    notes = await db[NOTIFICATIONS].find({"openid": "late-binder"}).to_list()
    assert sorted((n["payload"]["settlement_id"], n["payload"]["status"]) for n in notes) == [
        ("JS-A", "reviewing"), ("JS-B", "settled")]
    again = await bind(app_client, "late-binder", id_number, "赵六")
    assert again["id"] == binding["id"]
    assert await db[NOTIFICATIONS].count_documents({}) == 2
    response = await post_event(app_client, event(event_id="d", settlement_id="JS-A", sequence=3,
                                                  status="approved", id_number=id_number, name="赵六"))
    assert (await response.json())["notified"] == 1


async def test_binding_and_event_at_the_same_moment_never_miss_each_other(app_client, db):
    """Each pair races a binding against the identity's first event: the resident is told once."""
    import asyncio

    headers = await login(app_client, "racer")
    for serial in range(6):
        id_number = resident_id(100 + serial)
        bind_call = bind_request(app_client, headers, id_number, "钱七")
        event_call = post_event(app_client, event(event_id=f"race-{serial}", settlement_id=f"JS-R{serial}",
                                                  id_number=id_number, status="settled", name="钱七"))
        bound, posted = await asyncio.gather(bind_call, event_call)
        assert bound.status == 201 and posted.status == 200
        assert await db[NOTIFICATIONS].count_documents({"payload.settlement_id": f"JS-R{serial}"}) == 1


@pytest.mark.parametrize("occurred_at", ["0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59+08:00",
                                         "1999-12-31T23:59:59+00:00", "2099-01-01T00:00:00+08:00"])
async def test_implausible_occurred_at_is_400(app_client, db, occurred_at):
    response = await post_event(app_client, event(occurred_at=occurred_at))
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_event" and error["details"]["field"] == "occurred_at"
    assert await nothing_written(db)


async def test_insured_name_is_required_and_stored_only_hashed_and_masked(app_client, db):
    body = event()
    del body["insured_name"]
    response = await post_event(app_client, body)
    assert response.status == 400 and (await response.json())["error"]["details"]["field"] == "insured_name"
    assert (await post_event(app_client, event(name="欧阳修文"))).status == 200
    settlement = await db.settlements.find_one({"_id": "JS-1"})
    assert settlement["name_masked"] == "欧阳**" and len(settlement["name_hash"]) == 64
    assert "欧阳修文" not in json.dumps(settlement, default=str)


async def test_same_settlement_other_name_is_409(app_client, db):
    await post_event(app_client, event(event_id="a", name="张三"))
    response = await post_event(app_client, event(event_id="b", sequence=2, status="reviewing", name="李四"))
    assert response.status == 409 and (await response.json())["error"]["code"] == "settlement_identity_mismatch"
