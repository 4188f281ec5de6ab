"""The console's shell over plain HTTP (no browser): the session cookie's attributes, CSRF,
logout, the idle time-out, the security headers, and pages that need no JavaScript."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from bot.accounts import sessions, staff
from bot.keys import DB
from handlers.console import session as console_session
from knowledge import gaps
from knowledge.engine import declined

PASSWORD = "console-http-password"


async def _signed_in(client, username: str = "clinic-h", role: str = staff.CLINIC_STAFF):
    # a nurse account names its nurse record (no record is needed for the pages tested here)
    await staff.create_or_update(client.app[DB], username, PASSWORD, role, "test-clinic",
                                 nurse_id=f"nurse-of-{username}" if role == staff.NURSE else None)
    form_page = await client.get("/console/login")
    token = re.search(r'name="_csrf" value="([^"]+)"', await form_page.text()).group(1)
    response = await client.post("/console/login", data={"_csrf": token, "username": username,
                                                         "password": PASSWORD}, allow_redirects=False)
    assert response.status == 303, await response.text()
    return response


async def _csrf(client, path: str) -> str:
    return re.search(r'name="_csrf" value="([^"]+)"', await (await client.get(path)).text()).group(1)


async def test_the_session_cookie_is_httponly_and_strict(client):
    response = await _signed_in(client)
    cookie = response.cookies[console_session.COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console"
    assert not cookie["secure"]  # plain HTTP here; Secure when served over HTTPS
    page = await client.get("/console/workbench")
    assert page.status == 200
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


async def test_behind_https_the_cookie_is_secure(client):
    await staff.create_or_update(client.app[DB], "clinic-s", PASSWORD, staff.CLINIC_STAFF, "test-clinic")
    form_page = await client.get("/console/login")
    token = re.search(r'name="_csrf" value="([^"]+)"', await form_page.text()).group(1)
    response = await client.post("/console/login", data={"_csrf": token, "username": "clinic-s", "password": PASSWORD},
                                 headers={"X-Forwarded-Proto": "https"}, allow_redirects=False)
    assert response.cookies[console_session.COOKIE]["secure"]


async def test_a_post_without_the_csrf_token_is_refused(client):
    await _signed_in(client)
    response = await client.post("/console/logout", data={})
    assert response.status == 403 and "请求被拒绝" in await response.text()
    login_without_token = await client.post("/console/login", data={"username": "x", "password": "y"})
    assert login_without_token.status == 403


async def test_logout_revokes_the_session(client):
    await _signed_in(client)
    token = await _csrf(client, "/console/workbench")
    await client.post("/console/logout", data={"_csrf": token}, allow_redirects=False)
    response = await client.get("/console/workbench", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/console/login")
    assert await client.app[DB][sessions.COLLECTION].count_documents({"kind": console_session.KIND}) == 0


async def test_an_idle_session_ends(client):
    await _signed_in(client)
    idle = datetime.now(UTC) - console_session.IDLE_TIMEOUT - timedelta(minutes=1)
    await client.app[DB][sessions.COLLECTION].update_many({"kind": console_session.KIND},
                                                          {"$set": {"last_seen": idle}})
    response = await client.get("/console/workbench", allow_redirects=False)
    assert response.status == 303


async def test_faq_gaps_are_listed_with_counts(client):
    for _ in range(3):
        await gaps.record_gap(client.app[DB], "生育津贴什么时候到账 13912345678", declined())
    await _signed_in(client)
    page = await client.get("/console/gaps")
    text = await page.text()
    assert page.status == 200 and "生育津贴什么时候到账" in text and "13912345678" not in text
    assert re.search(r"<td>3</td>", text)


async def test_a_nurse_cannot_open_the_accounts_page(client):
    await _signed_in(client, "nurse-h", staff.NURSE)
    response = await client.get("/console/accounts")
    assert response.status == 403 and "没有权限" in await response.text()


async def test_a_nurse_account_is_linked_to_a_nurse_of_its_institution(client):
    from tests.booking_factories import make_institution, make_nurse

    db = client.app[DB]
    await make_institution(db, "test-clinic", "nursing", name="测试医院")
    await make_institution(db, "other-clinic", "nursing", name="另一家医院")
    await make_nurse(db, "nurse-lv", "test-clinic", name="吕丽")
    await make_nurse(db, "nurse-far", "other-clinic", name="周芳")
    await _signed_in(client, "admin-h", staff.ADMIN)
    page = await client.get("/console/accounts")
    assert '<option value="nurse-lv">吕丽（测试医院）</option>' in await page.text()  # the nurse picker
    form = {"username": "lvli", "name": "吕丽", "role": staff.NURSE, "institution_id": "test-clinic",
            "password": "a-long-initial-password-1"}
    for nurse_id, problem in (("", "护士账号须选择对应的护士"), ("nurse-far", "不属于所选机构")):
        response = await client.post("/console/accounts", data={
            **form, "nurse_id": nurse_id, "_csrf": await _csrf(client, "/console/accounts")})
        assert response.status == 400 and problem in await response.text()
    response = await client.post("/console/accounts", data={
        **form, "nurse_id": "nurse-lv", "_csrf": await _csrf(client, "/console/accounts")}, allow_redirects=False)
    assert response.status == 303
    assert (await db[staff.COLLECTION].find_one({"_id": "lvli"}))["nurse_id"] == "nurse-lv"
    response = await client.post("/console/accounts", data={
        **form, "username": "desk-2", "role": staff.CLINIC_STAFF, "nurse_id": "nurse-lv",
        "_csrf": await _csrf(client, "/console/accounts")}, allow_redirects=False)
    assert response.status == 303  # another role names no nurse, whatever the picker said
    assert (await db[staff.COLLECTION].find_one({"_id": "desk-2"}))["nurse_id"] is None
