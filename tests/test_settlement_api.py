"""Resident settlement API end to end: identities (hashed only), settlements seen only through a
binding, the inbox after dispatch, subscription grants and the chat menu."""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest
from bson import json_util

from bot.keys import DB, SETTINGS
from bot.notify import grants
from bot.notify.dispatcher import Dispatcher
from bot.notify.templates import TEMPLATES, TemplateBook
from bot.settlements.identity_key import KEY_FILE
from bot.wechat.callback import CallbackCredentials
from bot.wechat.simulator import Simulator, message_xml
from tests.conftest import login
from tests.settlement_support import IDENTITY_KEY, SECRET, bind, event, post_event, resident_id


@pytest.fixture
async def app_client(make_client, db):
    return await make_client(settlement_webhook_secret=SECRET, identity_hash_key=IDENTITY_KEY,
                             wechat_template_ids="settlement_status=TPL-SETTLEMENT",
                             bind_attempts_per_account=100, bind_attempts_per_identity=100)


async def test_binding_stores_only_hash_and_masked_number(app_client, db, caplog):
    caplog.set_level(logging.DEBUG)
    id_number, insurance_number = resident_id(5, born="19520312"), "YB330702000123456"
    headers = await login(app_client, "family")
    for name, number in (("张秀英", id_number), ("李明", insurance_number.lower())):
        response = await bind(app_client, headers, number, name)
        assert response.status == 201, await response.text()
    await post_event(app_client, event(id_number=id_number, status="settled", name="张秀英"))
    listed = await (await app_client.get("/api/v1/me/insured-identities", headers=headers)).json()
    assert [i["id_number_masked"] for i in listed["items"]] == [
        id_number[:6] + "********" + id_number[-4:], "YB33*********3456"]
    # scan every document of every collection, and the logs, for the plain numbers
    dump = ""
    for name in await db.list_collection_names():
        dump += json_util.dumps(await db[name].find({}).to_list())
    assert "张秀英" not in json_util.dumps(await db.settlements.find({}).to_list())  # name: hash + masked only
    for plain in (id_number, insurance_number, id_number[6:14] + id_number[14:]):
        assert plain not in dump
        assert plain not in caplog.text
        assert plain not in json.dumps(listed)
    binding = await db.insured_identities.find_one({"name": "张秀英"})
    assert len(binding["id_hash"]) == 64 and set(binding) >= {"id_hash", "id_masked"}


async def test_binding_validation_and_limits(app_client, db):
    headers = await login(app_client, "family")
    valid = resident_id()
    wrong_check = valid[:-1] + ("1" if valid[-1] != "1" else "2")
    bad = await app_client.post("/api/v1/me/insured-identities", headers=headers,
                                json={"name": "张三", "id_number": wrong_check})
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "invalid_id_number"
    assert "校验位" in (await bad.json())["error"]["message"]
    bad_name = await app_client.post("/api/v1/me/insured-identities", headers=headers,
                                     json={"name": "<script>", "id_number": resident_id()})
    assert bad_name.status == 400 and (await bad_name.json())["error"]["code"] == "invalid_name"
    for serial in range(10):
        ok = await app_client.post("/api/v1/me/insured-identities", headers=headers,
                                   json={"name": "家人", "id_number": resident_id(200 + serial)})
        assert ok.status == 201
    full = await app_client.post("/api/v1/me/insured-identities", headers=headers,
                                 json={"name": "家人", "id_number": resident_id(300)})
    assert full.status == 409 and (await full.json())["error"]["code"] == "too_many_identities"
    unauthenticated = await app_client.get("/api/v1/me/insured-identities")
    assert unauthenticated.status == 401


async def test_settlements_are_visible_only_through_a_binding(app_client, db):
    mine, theirs = resident_id(1), resident_id(2)
    headers = await login(app_client, "me")
    other = await login(app_client, "neighbour")
    bound = await (await bind(app_client, headers, mine)).json()
    await post_event(app_client, event(event_id="a", settlement_id="JS-MINE", id_number=mine, status="submitted"))
    await post_event(app_client, event(event_id="b", settlement_id="JS-MINE", id_number=mine, sequence=3,
                                       status="approved"))
    await post_event(app_client, event(event_id="c", settlement_id="JS-MINE", id_number=mine, sequence=2,
                                       status="reviewing"))
    await post_event(app_client, event(event_id="d", settlement_id="JS-THEIRS", id_number=theirs))
    listed = await (await app_client.get("/api/v1/settlements", headers=headers)).json()
    assert [s["id"] for s in listed["items"]] == ["JS-MINE"]
    assert listed["items"][0]["status_label"] == "审核通过"
    detail = await (await app_client.get("/api/v1/settlements/JS-MINE", headers=headers)).json()
    assert [(b["label"], b["amount"]) for b in detail["breakdown"]] == [
        ("总费用", "1234.56"), ("基本医保统筹", "800.00"), ("大病保险", "100.00"), ("医疗救助", "50.00"),
        ("其他基金", "0.00"), ("个人自付", "284.56")]
    assert [(h["sequence"], h["status_label"], h["applied"]) for h in detail["history"]] == [
        (1, "已提交", True), (2, "审核中", False), (3, "审核通过", True)]
    assert detail["insured"]["name"] == "张三" and detail["insured"]["via"] == "binding"
    assert mine not in json.dumps(detail)
    for path in ("/api/v1/settlements/JS-THEIRS", "/api/v1/settlements/JS-NOPE"):
        response = await app_client.get(path, headers=headers)
        assert response.status == 404 and (await response.json())["error"]["code"] == "settlement_not_found"
    assert (await app_client.get("/api/v1/settlements/JS-MINE", headers=other)).status == 404
    assert (await (await app_client.get("/api/v1/settlements", headers=other)).json())["items"] == []
    # unbinding hides the settlement again; someone else cannot unbind it
    assert (await app_client.delete(f"/api/v1/me/insured-identities/{bound['id']}", headers=other)).status == 404
    assert (await app_client.delete(f"/api/v1/me/insured-identities/{bound['id']}", headers=headers)).status == 200
    assert (await app_client.get("/api/v1/settlements/JS-MINE", headers=headers)).status == 404


async def test_inbox_gets_every_notification_and_marks_read(app_client, db):
    headers = await login(app_client, "reader")
    await bind(app_client, headers, resident_id())
    await post_event(app_client, event(event_id="a", status="submitted"))
    await post_event(app_client, event(event_id="b", sequence=2, status="reviewing"))
    stats = await Dispatcher(app_client.app[DB], None, app_client.app[TEMPLATES]).run()
    assert stats.sent == {"inbox": 2}
    inbox = await (await app_client.get("/api/v1/inbox", headers=headers)).json()
    assert inbox["unread"] == 2 and [e["title"] for e in inbox["items"]] == ["结算进度通知"] * 2
    newest = inbox["items"][0]
    assert "结算状态：审核中；总费用 1,234.56 元；统筹支付 800.00 元" in newest["text"]
    assert newest["ref"] == {"settlement_id": "JS-1"} and newest["link"] == "pages/settlement/detail?id=JS-1"
    page = await (await app_client.get(f"/api/v1/inbox?limit=1&before={newest['id']}", headers=headers)).json()
    assert [e["id"] for e in page["items"]] == [inbox["items"][1]["id"]]
    read = await app_client.post(f"/api/v1/inbox/{newest['id']}/read", headers=headers)
    assert read.status == 200 and (await read.json())["read"] is True
    assert (await (await app_client.get("/api/v1/inbox", headers=headers)).json())["unread"] == 1
    stranger = await login(app_client, "stranger")
    assert (await app_client.post(f"/api/v1/inbox/{newest['id']}/read", headers=stranger)).status == 404
    assert (await app_client.get("/api/v1/inbox?before=nope", headers=headers)).status == 400


async def test_subscriptions_record_one_grant_per_acceptance(app_client, db):
    headers = await login(app_client, "subscriber")
    for expected in (1, 2):
        response = await app_client.post("/api/v1/subscriptions", json={"accepted": ["TPL-SETTLEMENT"]},
                                         headers=headers)
        assert response.status == 200
        assert (await response.json())["granted"] == [{"template_id": "TPL-SETTLEMENT", "available": expected}]
    assert await grants.available(db, "subscriber", "TPL-SETTLEMENT") == 2
    unknown = await app_client.post("/api/v1/subscriptions", json={"accepted": ["SOMEONE-ELSES"]}, headers=headers)
    assert unknown.status == 400 and (await unknown.json())["error"]["code"] == "unknown_template"
    twice = await app_client.post("/api/v1/subscriptions", json={"accepted": ["TPL-SETTLEMENT"] * 2},
                                  headers=headers)
    assert twice.status == 400


async def test_chat_menu_shows_the_latest_settlements(app_client, db):
    credentials = CallbackCredentials.from_settings(app_client.app[SETTINGS])
    bot = Simulator(app_client.session, str(app_client.make_url("/")), credentials, "chat-resident")
    clicks = iter(range(1_800_000_000, 1_800_000_010))  # distinct CreateTime: not a WeChat retry

    async def click() -> str:
        xml = message_xml(bot.openid, "event", create_time=next(clicks), Event="CLICK", EventKey="MENU_SETTLEMENT")
        return (await bot.send(xml)).content

    assert "还没有绑定参保人" in await click()
    headers = await login(app_client, "chat-resident")
    await bind(app_client, headers, resident_id(), verify_result=None)  # unverified
    await post_event(app_client, event(status="settled"))
    unverified = await click()
    assert "尚未完成身份核验" in unverified and "人脸核身" in unverified and "金华市中心医院" not in unverified
    await bind(app_client, headers, resident_id())  # the same identity again, now verified
    reply = await click()
    assert "张三·金华市中心医院（住院，2026-11-10）：已结算，总费用 1,234.56 元，个人自付 284.56 元" in reply


async def test_development_identity_key_file_is_private_and_stable(make_client, db, settings):
    client = await make_client(settlement_webhook_secret=SECRET)  # no IDENTITY_HASH_KEY
    path = settings.data_dir / KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = path.read_text()
    headers = await login(client, "dev")
    response = await bind(client, headers, resident_id())
    assert response.status == 201
    await make_client(settlement_webhook_secret=SECRET)
    assert path.read_text() == key


async def test_production_without_identity_key_refuses_identity_work(make_client, db):
    client = await make_client(settlement_webhook_secret=SECRET, wechat_app_id="wx-prod", wechat_app_secret="s")
    response = await post_event(client, event())
    assert response.status == 503 and (await response.json())["error"]["code"] == "identity_key_missing"
    readyz = await (await client.get("/readyz")).json()
    assert "IDENTITY_HASH_KEY" in readyz["detail"]["settlements"]


def test_shipped_templates_validate():
    book = TemplateBook.load()
    assert book.template_ids() == set()  # ids come from WECHAT_TEMPLATE_IDS per account


async def test_demo_seeder_is_idempotent(mongo_client, db, settings):
    from bot.settlements.demo import DEMO_OPENID, seed_settlement_demo

    first = await seed_settlement_demo(mongo_client, db, settings)
    again = await seed_settlement_demo(mongo_client, db, settings)
    assert first == again and "2 笔结算记录" in first[0]
    assert await db.settlements.count_documents({}) == 2
    assert await db.insured_identities.count_documents({"openid": DEMO_OPENID}) == 1
    assert await db.notifications.count_documents({"openid": DEMO_OPENID}) == 3  # bind (0) + 3 status changes
    binding = await db.insured_identities.find_one({"openid": DEMO_OPENID})
    assert binding["verified"] is True and binding["verification"]["method"] == "development"
