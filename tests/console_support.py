"""Browser-test support: the real app on a real TCP port (aiohttp's TestServer, embedded
database), Debian's Chromium driven by Playwright, and the seed of the console journeys."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.accounts import staff
from scheduling import bookings
from scheduling.booking_base import INSTITUTIONS
from scheduling.bookings import BookingRequest
from tests.booking_factories import (
    ASSESSMENT,
    CENTRE,
    CENTRE_SERVICE,
    CLINIC,
    NURSING_SERVICE,
    OTHER_CLINIC,
    POLICY,
    make_nurse,
    make_patient,
    visitor,
    world,
)

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--lang=zh-CN"]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "console"
PASSWORD = "console-test-password"
ACCOUNTS = {
    "boss": (staff.ADMIN, None, None, "系统管理员"),
    "desk": (staff.CENTRE_STAFF, CENTRE, None, "窗口 李敏"),
    "clinic": (staff.CLINIC_STAFF, CLINIC, None, "护理部 张护士长"),
    "clinic-other": (staff.CLINIC_STAFF, OTHER_CLINIC, None, "另一家医院护理部"),
}


def require_chromium() -> None:
    """A missing browser skips on a developer's machine, and fails in CI (CI=true)."""
    if CHROMIUM.exists() or shutil.which(str(CHROMIUM)):
        return
    message = f"{CHROMIUM} not found: run `make test` (installs chromium and fonts-wqy-microhei) or apt-get install"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Seeded:
    requests: list[dict[str, Any]]  # oldest (nearest review deadline) first
    centre: list[dict[str, Any]]


async def seed(db: Any, *, requests: int = 2, centre: int = 2) -> Seeded:
    w = await world(db)
    await make_nurse(db, "nurse-junior", CLINIC, name="刘新", title="护士", years_of_practice=2, qualified=False)
    for username, (role, institution_id, nurse_id, name) in ACCOUNTS.items():
        await staff.create_or_update(db, username, PASSWORD, role, institution_id, name=name, nurse_id=nurse_id)
    now = datetime.now(UTC)
    made = []
    for n in range(requests):
        openid = f"family-{n}"
        patient = await make_patient(db, openid, name=["王秀英", "李建国", "赵淑珍", "孙志强"][n % 4])
        slot = await w.nursing_slot(hour=9 + 2 * n)
        booking, _ = await bookings.create_booking(
            db, openid, BookingRequest(slot_id=slot, service_id=NURSING_SERVICE, idempotency_key=f"k{n}",
                                       patient_id=patient["_id"], assessment=ASSESSMENT,
                                       note="老人怕冷，请护士进门前先敲门" if n == 0 else None),
            POLICY, now=now - timedelta(hours=requests - n))
        made.append(booking)
    desk = []
    # the centre's counter opens check-in two days ahead here, so the desk can check in whatever
    # the hour the suite runs (the default window opens 30 minutes before the slot)
    await db[INSTITUTIONS].update_one({"_id": CENTRE}, {"$set": {"booking_rules.check_in_before_minutes": 2880}})
    slot = await w.centre_slot(days=0, hour=23, minute=0) if datetime.now(UTC).hour < 14 else None
    for n in range(centre):
        slot_id = slot or await w.centre_slot(days=1, hour=9)
        booking, _ = await bookings.create_booking(
            db, f"visitor-{n}", BookingRequest(slot_id=slot_id, service_id=CENTRE_SERVICE, idempotency_key=f"c{n}",
                                               visitor=visitor(f"c{n}"),
                                               note="带身份证和社保卡" if n == 0 else None), POLICY)
        desk.append(booking)
    return Seeded(made, desk)


async def log_in(page: Any, base_url: str, username: str, password: str = PASSWORD) -> None:
    await page.goto(f"{base_url}/console/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_load_state("domcontentloaded")


async def screenshot(page: Any, name: str) -> None:
    """docs/console/<name>.png: written when missing, or on every run with CONSOLE_SCREENSHOTS=1 (so
    an ordinary test run does not rewrite the committed images with new times)."""
    path = SCREENSHOTS / f"{name}.png"
    if path.exists() and os.environ.get("CONSOLE_SCREENSHOTS") != "1":
        await page.screenshot()  # still rendered: a page that cannot be drawn fails the journey
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path), full_page=True)
