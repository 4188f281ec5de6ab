"""The staff console in a real browser: Debian's Chromium driven by Playwright, against the real
app on a real port and the embedded database. Each test is one journey a nurse or clerk makes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import openpyxl
import pytest
from aiohttp.test_utils import TestServer

from bot.app import create_app
from bot.chat import handoff
from bot.config import Settings
from bot.keys import READINESS
from bot.notify import outbox
from bot.wechat.callback import CallbackCredentials
from bot.wechat.simulator import Simulator
from handlers.console.nurses import week_of
from scheduling import transitions as t
from scheduling.booking_base import BOOKINGS
from tests.console_support import CHROMIUM, CHROMIUM_ARGS, log_in, require_chromium, screenshot, seed


async def _start(settings: Settings) -> TestServer:
    app = create_app(settings, scheduler=False)
    test_server = TestServer(app, host="127.0.0.1")  # a free port
    await test_server.start_server()
    await app[READINESS].wait()
    return test_server


@pytest.fixture
async def server(settings: Settings, db: Any) -> AsyncIterator[TestServer]:
    test_server = await _start(settings)
    yield test_server
    await test_server.close()


@pytest.fixture
async def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def page(tmp_path: Any) -> AsyncIterator[Any]:
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900}, locale="zh-CN", timezone_id="Asia/Shanghai")
        context.set_default_timeout(15_000)
        page = context.pages[0] if context.pages else await context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # destructive actions ask; the journeys say yes
        yield page
        await context.close()


async def test_confirm_the_oldest_request_with_a_qualified_nurse(page, base_url, db):
    seeded = await seed(db, requests=3, centre=0)
    oldest = seeded.requests[0]
    await log_in(page, base_url, "clinic")
    assert page.url.endswith("/console/workbench")
    cards = page.locator("article.request")
    assert await cards.count() == 3
    first = cards.first
    assert await first.get_attribute("data-booking") == oldest["_id"]
    text = await first.inner_text()
    assert "王**" in text and "王秀英" not in text  # masked until opened with a reason
    options = await first.locator("select[name=nurse_id] option").all_inner_texts()
    assert any("吕丽" in o for o in options) and not any("刘新" in o for o in options)  # unqualified left out
    await screenshot(page, "workbench")
    await first.locator("select[name=nurse_id]").select_option(label=next(o for o in options if "吕丽" in o))
    await first.locator("button.primary").click()
    await page.wait_for_load_state("domcontentloaded")
    assert "已确认" in await page.locator(".flash").inner_text()
    assert await page.locator(f"article[data-booking='{oldest['_id']}']").count() == 0

    await page.goto(f"{base_url}/console/bookings/{oldest['_id']}")
    assert "已确认" in await page.locator("h1").inner_text()
    assert "确认通知" in await page.locator("tr.message[data-kind=booking_confirmed]").inner_text()
    await screenshot(page, "booking-detail")
    stored = await db[BOOKINGS].find_one({"_id": oldest["_id"]})
    assert stored["status"] == t.CONFIRMED and stored["nurse_id"] == "nurse-lvli"
    message = await db[outbox.COLLECTION].find_one({"kind": "booking_confirmed", "openid": oldest["openid"]})
    assert message is not None and message["payload"]["booking_id"] == oldest["_id"]

    # the nurse now has that visit: for a request at the same time she is no longer offered
    # (the other requests are at other hours, so she still is for them)
    await page.goto(f"{base_url}/console/workbench")
    assert await page.locator("article.request").count() == 2


async def test_reject_with_a_preset_reason_and_a_note(page, base_url, db):
    seeded = await seed(db, requests=1, centre=0)
    booking = seeded.requests[0]
    await log_in(page, base_url, "clinic")
    card = page.locator(f"article[data-booking='{booking['_id']}']")
    await card.locator("form.reject-form button").click()  # no reason given
    await page.wait_for_load_state("domcontentloaded")
    assert "请选择或填写拒绝原因" in await page.locator(".field-error").inner_text()
    card = page.locator(f"article[data-booking='{booking['_id']}']")
    await card.locator("select[name=preset]").select_option("需先到院完成首诊评估")
    await card.locator("input[name=detail]").fill("请带近期病历到护理门诊")
    await card.locator("form.reject-form button").click()
    await page.wait_for_load_state("domcontentloaded")
    assert "已拒绝" in await page.locator(".flash").inner_text()
    assert "目前没有待审核的申请" in await page.locator("#pending").inner_text()
    await screenshot(page, "workbench-empty")
    stored = await db[BOOKINGS].find_one({"_id": booking["_id"]})
    assert stored["status"] == t.REJECTED
    assert stored["status_reason"] == "需先到院完成首诊评估：请带近期病历到护理门诊"
    assert await db[outbox.COLLECTION].find_one({"kind": "booking_rejected", "openid": booking["openid"]})


async def test_patient_details_open_only_with_a_reason(page, base_url, db):
    seeded = await seed(db, requests=1, centre=0)
    await log_in(page, base_url, "clinic")
    card = page.locator("article.request").first
    assert "139****5678" in await card.inner_text()
    await card.locator("form[action$='/reveal'] button").click()
    await page.wait_for_load_state("domcontentloaded")
    text = await page.locator(f"article[data-booking='{seeded.requests[0]['_id']}']").inner_text()
    assert "王秀英" in text and "13912345678" in text and "八一北街" in text


async def test_check_in_by_code_and_a_second_check_in_is_refused(page, base_url, db):
    seeded = await seed(db, requests=0, centre=2)
    booking = seeded.centre[0]
    await log_in(page, base_url, "desk")
    await page.goto(f"{base_url}/console/day?date={booking['date']}")
    assert await page.locator("tr[data-booking]").count() == 2
    assert booking["code"]  # the booking code the visitor shows (typed, or scanned as a QR code)
    await page.fill("#checkin-code", booking["code"].lower())
    await page.press("#checkin-code", "Enter")  # what a barcode scanner does
    await page.wait_for_load_state("domcontentloaded")
    assert "签到成功" in await page.locator(".flash").inner_text()
    assert "已签到" in await page.locator(f"tr[data-booking='{booking['_id']}']").inner_text()
    await screenshot(page, "day-list")
    await page.fill("#checkin-code", booking["code"])
    await page.press("#checkin-code", "Enter")
    await page.wait_for_load_state("domcontentloaded")
    assert "已经签到过了" in await page.locator("#checkin-error").inner_text()
    await page.fill("#checkin-code", "ZZZZZZ")
    await page.press("#checkin-code", "Enter")
    await page.wait_for_load_state("domcontentloaded")
    assert "找不到该预约号" in await page.locator("#checkin-error").inner_text()
    stored = await db[BOOKINGS].find_one({"_id": booking["_id"]})
    assert stored["status"] == t.CHECKED_IN
    await page.goto(f"{base_url}/console/day?date={booking['date']}&print=1")
    await page.emulate_media(media="print")
    await screenshot(page, "day-list-print")


async def test_another_institutions_booking_is_refused(page, base_url, db):
    seeded = await seed(db, requests=1, centre=1)
    await log_in(page, base_url, "clinic-other")
    assert await page.locator("article.request").count() == 0  # the other hospital's requests are not listed
    response = await page.goto(f"{base_url}/console/bookings/{seeded.requests[0]['_id']}")
    assert response.status == 403
    assert "没有权限" in await page.locator("h1").inner_text()
    response = await page.goto(f"{base_url}/console/day")
    assert response.status == 403  # a clinic role has no centre day list


async def test_wrong_passwords_lock_the_login(page, base_url, db):
    await seed(db, requests=0, centre=0)
    for _ in range(4):
        await log_in(page, base_url, "clinic", "wrong-password")
        assert "用户名或密码错误" in await page.locator("#login-error").inner_text()
    await log_in(page, base_url, "clinic", "wrong-password")
    assert "暂时锁定" in await page.locator("#login-error").inner_text()
    await log_in(page, base_url, "clinic")  # the right password, while locked
    assert re.search("暂时锁定", await page.locator("#login-error").inner_text())
    await screenshot(page, "login-locked")


async def test_a_form_without_its_csrf_token_is_refused(page, base_url, db):
    seeded = await seed(db, requests=1, centre=0)
    await log_in(page, base_url, "clinic")
    card = page.locator("article.request").first
    await card.locator("form.reject-form input[name=_csrf]").evaluate("element => element.remove()")
    await card.locator("select[name=preset]").select_option("需先到院完成首诊评估")
    await card.locator("form.reject-form button").click()
    await page.wait_for_load_state("domcontentloaded")
    assert "请求被拒绝" in await page.locator("h1").inner_text()
    stored = await db[BOOKINGS].find_one({"_id": seeded.requests[0]["_id"]})
    assert stored["status"] == t.REQUESTED


async def test_add_a_nurse_and_assign_them(page, base_url, db):
    seeded = await seed(db, requests=1, centre=0)
    await log_in(page, base_url, "clinic")
    await page.goto(f"{base_url}/console/nurses")
    form = page.locator("#nurse-form-new")
    await form.locator("input[name=name]").fill("黄晓燕")
    await form.locator("input[name=phone]").fill("1381234")  # too short: refused next to the form
    await form.locator("select[name=title]").select_option("主管护师")
    await form.locator("input[name=years_of_practice]").fill("9")
    await form.locator("input[name=skills][value=老年护理]").check()
    await form.locator("button[type=submit]").click()
    await page.wait_for_load_state("domcontentloaded")
    assert "手机号" in await page.locator("#nurse-form-new .field-error").inner_text()
    form = page.locator("#nurse-form-new")
    await form.locator("input[name=phone]").fill("13812345678")
    await form.locator("button[type=submit]").click()
    await page.wait_for_load_state("domcontentloaded")
    assert "已添加护士 黄晓燕" in await page.locator(".flash").inner_text()
    row = page.locator("tr[data-nurse]", has_text="黄晓燕")
    assert "符合" in await row.inner_text()
    await screenshot(page, "nurses")

    await page.goto(f"{base_url}/console/workbench")
    card = page.locator("article.request").first
    option = card.locator("select[name=nurse_id] option", has_text="黄晓燕")
    await card.locator("select[name=nurse_id]").select_option(value=await option.get_attribute("value"))
    await card.locator("button.primary").click()
    await page.wait_for_load_state("domcontentloaded")
    assert "黄晓燕" in await page.locator(".flash").inner_text()
    stored = await db[BOOKINGS].find_one({"_id": seeded.requests[0]["_id"]})
    assert stored["status"] == t.CONFIRMED and stored["nurse"]["name"] == "黄晓燕"
    await page.goto(f"{base_url}/console/nurses")
    first, last = week_of(datetime.now(UTC))
    if first <= stored["start"] < last:  # the visit is three days ahead: this week, or the next
        assert "1 次" in await page.locator("tr[data-nurse]", has_text="黄晓燕").inner_text()


async def test_create_an_account_log_in_as_it_and_be_refused_elsewhere(page, base_url, db):
    seeded = await seed(db, requests=1, centre=1)
    await log_in(page, base_url, "boss")
    await page.goto(f"{base_url}/console/accounts")
    form = page.locator("#new-account")
    await form.locator("input[name=username]").fill("zhou.min")
    await form.locator("input[name=name]").fill("周敏")
    await form.locator("select[name=role]").select_option("clinic_staff")
    await form.locator("select[name=institution_id]").select_option("test-clinic-other")
    await form.locator("input[name=password]").fill("short")
    await form.locator("button[type=submit]").click()
    await page.wait_for_load_state("domcontentloaded")
    assert "密码长度" in await page.locator(".field-error[data-field=password]").inner_text()
    form = page.locator("#new-account")
    await form.locator("input[name=password]").fill("Initial-pass-2026")
    await form.locator("button[type=submit]").click()
    await page.wait_for_load_state("domcontentloaded")
    assert "已创建账号 zhou.min" in await page.locator(".flash").inner_text()
    await screenshot(page, "accounts")
    await page.click("text=退出登录")
    await page.wait_for_load_state("domcontentloaded")

    await log_in(page, base_url, "zhou.min", "Initial-pass-2026")
    assert page.url.endswith("/console/password")  # the initial password must be changed first
    await page.fill("input[name=current]", "Initial-pass-2026")
    await page.fill("input[name=new]", "My-own-pass-2026")
    await page.fill("input[name=repeat]", "My-own-pass-2026")
    await page.click("form[action='/console/password'] button")
    await page.wait_for_load_state("domcontentloaded")
    assert page.url.endswith("/console/workbench")
    assert "另一家医院" in await page.locator(".who").inner_text()
    response = await page.goto(f"{base_url}/console/bookings/{seeded.requests[0]['_id']}")
    assert response.status == 403  # a booking of 测试医院
    response = await page.goto(f"{base_url}/console/accounts")
    assert response.status == 403  # admin only
    response = await page.goto(f"{base_url}/console/day")
    assert response.status == 403  # the centre's day list


async def test_a_residents_request_for_a_person_is_answered_from_the_console(page, settings, db, fake_wechat):
    await seed(db, requests=0, centre=0)
    wired = Settings(**{**settings.__dict__, "wechat_app_id": fake_wechat.app_id,
                        "wechat_app_secret": fake_wechat.secret, "wechat_api_base": fake_wechat.base_url,
                        "wechat_token": "console-test-token"})
    test_server = await _start(wired)
    base_url = str(test_server.make_url("")).rstrip("/")
    openid = "resident-needs-help"
    fake_wechat.open_window(openid)
    try:
        async with aiohttp.ClientSession() as http:
            resident = Simulator(http, base_url + "/", CallbackCredentials.from_settings(wired), openid)
            told = await resident.text("转人工")
            assert "已转接人工客服" in told.content and "工作日" in told.content  # told at once, with the hours
            relayed = await resident.text("我母亲的异地就医备案一直没通过，怎么办？")
            assert relayed.content == handoff.RELAYED_REPLY  # not answered by the FAQ

            await log_in(page, base_url, "desk")
            await page.goto(f"{base_url}/console/handoffs")
            row = page.locator("tr[data-handoff]").first
            assert "异地就医备案" in await row.inner_text()
            await row.locator("a").click()
            await page.wait_for_load_state("domcontentloaded")
            await page.click("text=接入并回复")
            await page.wait_for_load_state("domcontentloaded")
            await page.fill("#answer-form textarea", "您好，请带身份证到政务服务中心 3 号窗口补交材料。")
            await page.click("#answer-form button")
            await page.wait_for_load_state("domcontentloaded")
            assert "微信客服消息" in await page.locator(".flash").inner_text()
            sent = fake_wechat.sent_to(openid, "custom")
            assert sent and "3 号窗口" in sent[-1]["text"]

            later = await resident.text("好的，需要带户口本吗？")
            assert later.kind == "empty"  # taken: the staff member answers, the bot stays quiet
            await page.reload()
            assert "需要带户口本吗" in await page.locator("#conversation").inner_text()
            await screenshot(page, "handoff")
            await page.click("text=结束人工服务")
            await page.wait_for_load_state("domcontentloaded")
            assert "已结束" in await page.locator(".flash").inner_text()
            assert "本次人工服务已结束" in fake_wechat.sent_to(openid, "custom")[-1]["text"]
    finally:
        await test_server.close()


async def test_close_a_day_and_see_the_affected_bookings(page, base_url, db):
    seeded = await seed(db, requests=0, centre=2)
    day = seeded.centre[0]["date"]
    await log_in(page, base_url, "desk")
    await page.goto(f"{base_url}/console/calendar")
    form = page.locator("#override-form")
    await form.locator("input[name=date]").fill(day)
    await form.locator("select[name=action]").select_option("close")
    await form.locator("button[type=submit]").click()  # no reason: refused next to the form
    await page.wait_for_load_state("domcontentloaded")
    assert "原因" in await page.locator(".field-error[data-field=override]").inner_text()
    form = page.locator("#override-form")
    await form.locator("input[name=reason]").fill("系统升级停止服务")
    await form.locator("button[type=submit]").click()
    await page.wait_for_load_state("domcontentloaded")
    assert "已设置" in await page.locator(".flash").inner_text()
    affected = page.locator("#affected")
    assert "仍有效的预约" in await affected.inner_text() and "系统升级停止服务" in await affected.inner_text()
    assert await page.locator("table.affected tr[data-booking]").count() == 2
    await screenshot(page, "calendar")
    await page.click("#affected button.danger")  # asks first; the dialog handler accepts
    await page.wait_for_load_state("domcontentloaded")
    assert "已取消 2 个预约" in await page.locator(".flash").inner_text()
    for booking in seeded.centre:
        stored = await db[BOOKINGS].find_one({"_id": booking["_id"]})
        assert stored["status"] == t.CANCELLED and "系统升级" in stored["status_reason"]
    assert await db[outbox.COLLECTION].count_documents({"kind": "booking_cancelled"}) == 2


async def test_a_reports_excel_export_holds_the_rows_shown(page, base_url, db, tmp_path):
    seeded = await seed(db, requests=3, centre=0)
    await log_in(page, base_url, "clinic")
    card = page.locator("article.request").first  # one confirmed, so two statuses show
    option = await card.locator("select[name=nurse_id] option").first.get_attribute("value")
    await card.locator("select[name=nurse_id]").select_option(value=option)
    await card.locator("button.primary").click()
    await page.wait_for_load_state("domcontentloaded")
    await page.goto(f"{base_url}/console/reports?report=service")
    assert await page.locator("svg.chart rect").count() == 2
    shown = [await row.locator("td").all_inner_texts() for row in await page.locator("table.report tbody tr").all()]
    assert sorted(shown) == [["更换导尿管", "已确认", "1"], ["更换导尿管", "待审核", "2"]]
    await screenshot(page, "reports")
    async with page.expect_download() as info:
        await page.click("#export-xlsx")
    download = await info.value
    path = tmp_path / download.suggested_filename
    await download.save_as(path)
    assert path.suffix == ".xlsx" and "按服务事项与状态" in download.suggested_filename
    sheet = openpyxl.load_workbook(path).active
    values = [[str(cell) for cell in row] for row in sheet.iter_rows(min_row=3, values_only=True)]
    assert values == shown
    assert [c.value for c in sheet[2]] == ["服务事项", "状态", "预约数"]
    assert seeded.requests
