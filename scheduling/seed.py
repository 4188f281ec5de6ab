"""Demo data of the booking capability: the Dazhou service centre, the Jinhua hospital with its
nurses, the catalogue, their slots and the staff accounts demo-admin/-centre/-clinic/-nurse.

Idempotent: institutions, nurses and services are set from ``scheduling/data/*.yaml`` on every run;
staff passwords are set only when an account is created, or on every run when
``DEMO_STAFF_PASSWORD`` is set. Otherwise a random password is generated for the accounts created
in this run and printed once (it is never stored in clear and never changed by later runs).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from bot.accounts import staff
from bot.config import Settings
from scheduling import catalogue, institutions, nurses, slots

INSTITUTIONS_FILE = Path(__file__).parent / "data" / "institutions.yaml"
CENTRE_ID = "dazhou-gaoxin-centre"
HOSPITAL_ID = "jinhua-peoples-hospital"
DEMO_NURSE_ID = "nurse-wangjingyi"
SECOND_DEMO_NURSE_ID = "nurse-chenxiaoyan"

# username -> (role, institution, display name, nurse record). A nurse account is a nurse: it names
# the nurse record whose visits it sees and moves (README "Booking codes, visitors and policies").
DEMO_STAFF: dict[str, tuple[str, str | None, str, str | None]] = {
    "demo-admin": (staff.ADMIN, None, "演示管理员", None),
    "demo-centre": (staff.CENTRE_STAFF, CENTRE_ID, "演示政务中心工作人员", None),
    "demo-clinic": (staff.CLINIC_STAFF, HOSPITAL_ID, "演示医院护理部工作人员", None),
    "demo-nurse": (staff.NURSE, HOSPITAL_ID, "王静怡", DEMO_NURSE_ID),
    "demo-nurse2": (staff.NURSE, HOSPITAL_ID, "陈晓燕", SECOND_DEMO_NURSE_ID),
}

_INSTITUTION_FIELDS = ("kind", "name", "address", "district", "phone", "description", "timezone", "windows",
                       "service_area", "cancel_deadline_hours", "review_deadline_hours", "calendar",
                       "booking_rules")


@cache
def demo_institutions() -> tuple[dict[str, Any], ...]:
    data = yaml.safe_load(INSTITUTIONS_FILE.read_text(encoding="utf-8"))
    for entry in data:
        institutions.calendar_rules(entry)  # fail early on unusable rules in the file
    nurse_ids = {(entry["id"], nurse["id"]) for entry in data for nurse in entry.get("nurses") or ()}
    for username, (role, institution_id, _name, nurse_id) in DEMO_STAFF.items():
        if role == staff.NURSE and (institution_id, nurse_id) not in nurse_ids:
            raise ValueError(f"demo account {username}: nurse {nurse_id} is not a nurse of {institution_id}")
    return tuple(data)


async def seed_booking_demo(client: AsyncMongoClient, db: AsyncDatabase, settings: Settings) -> list[str]:
    lines = await seed_booking_data(db, settings.booking_horizon_days)
    return lines + await _seed_staff(db, settings)


async def seed_booking_data(db: AsyncDatabase, horizon_days: int) -> list[str]:
    """Institutions, nurses, the catalogue and their slots (no staff accounts)."""
    now = datetime.now(UTC)
    offered: dict[str, list[str]] = {}
    items = catalogue.load_catalogue()
    lines: list[str] = []
    for entry in demo_institutions():
        fields = {key: entry[key] for key in _INSTITUTION_FIELDS if key in entry}
        await db[institutions.COLLECTION].update_one(
            {"_id": entry["id"]}, {"$set": {**fields, "updated_at": now}, "$setOnInsert": {"created_at": now}},
            upsert=True)
        service_ids = ([item["_id"] for item in items.of_kind(entry["kind"])] if entry.get("services") == "all"
                       else list(entry.get("services") or ()))
        for service_id in service_ids:
            offered.setdefault(service_id, []).append(entry["id"])
        for nurse in entry.get("nurses") or ():
            await _upsert_nurse(db, entry["id"], nurse, now)
        lines.append(f"机构 {entry['name']}（{entry['id']}）：{len(service_ids)} 个服务项目"
                     + (f"，{len(entry.get('nurses') or ())} 名护士" if entry.get("nurses") else ""))
    await catalogue.upsert_services(db, offered)
    for entry in demo_institutions():
        report = await slots.generate_slots(db, entry["id"], default_horizon_days=horizon_days)
        lines.append(f"已生成 {entry['name']} {report.first} 至 {report.last} 的 {report.upserted} 个预约时段"
                     + (f"（{'、'.join(map(str, report.uncovered_years))} 年无节假日数据，未生成）"
                        if report.uncovered_years else ""))
    return lines


async def _upsert_nurse(db: AsyncDatabase, institution_id: str, nurse: dict[str, Any], now: datetime) -> None:
    fields = {"institution_id": institution_id, "name": nurse["name"], "phone": nurse["phone"],
              "title": nurse["title"], "years_of_practice": nurse["years_of_practice"],
              "qualified": nurses.is_qualified(nurse["title"], nurse["years_of_practice"]),
              "skills": list(nurse.get("skills") or ()), "active": True, "updated_at": now}
    await db[nurses.COLLECTION].update_one({"_id": nurse["id"]},
                                           {"$set": fields, "$setOnInsert": {"created_at": now}}, upsert=True)


async def _seed_staff(db: AsyncDatabase, settings: Settings) -> list[str]:
    configured = settings.demo_staff_password
    generated = secrets.token_urlsafe(12) if not configured else None
    created, kept = [], []
    for username, (role, institution_id, name, nurse_id) in DEMO_STAFF.items():
        exists = await db[staff.COLLECTION].find_one({"_id": username}, projection={"_id": 1})
        if exists and not configured:
            kept.append(username)
            # keep the password; make sure role and binding are those of the demo
            await db[staff.COLLECTION].update_one(
                {"_id": username}, {"$set": {"role": role, "institution_id": institution_id, "name": name,
                                             "nurse_id": nurse_id, "active": True}})
            continue
        await staff.create_or_update(db, username, configured or generated or "", role, institution_id,
                                     name=name, nurse_id=nurse_id)
        created.append(username)
    lines = []
    if created and configured:
        lines.append(f"工作人员账号 {'、'.join(created)}：密码为 DEMO_STAFF_PASSWORD 的值")
    elif created:
        lines.append(f"工作人员账号 {'、'.join(created)}：随机密码 {generated}（只显示这一次，请妥善保存）")
    if kept:
        lines.append(f"工作人员账号 {'、'.join(kept)} 已存在，密码未改变（设置 DEMO_STAFF_PASSWORD 可重设）")
    return lines
