"""Documents of the booking contract (institutions, services, nurses, slots) written straight into
the test database, so booking tests do not depend on calendar generation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pymongo.asynchronous.database import AsyncDatabase

from scheduling import patients
from scheduling.booking_base import Policy

SHANGHAI = ZoneInfo("Asia/Shanghai")
POLICY = Policy(max_active_bookings=5, waitlist_offer_minutes=30)

CENTRE = "test-centre"
CLINIC = "test-clinic"
OTHER_CLINIC = "test-clinic-other"
CENTRE_SERVICE = "centre-remote-medical-filing"
NURSING_SERVICE = "nursing-catheter-change"
OTHER_NURSING_SERVICE = "nursing-wound-dressing"

ASSESSMENT = {"consciousness": "清醒", "mobility": "完全卧床", "allergies": "青霉素过敏",
              "current_conditions": "脑梗后遗症，长期留置导尿管", "done_before": True}
ADDRESS = {"district": "婺城区", "street": "城东街道", "detail": "八一北街 100 号 2 单元 301"}


def visit_time(days: int = 3, hour: int = 9, minute: int = 0) -> datetime:
    """A local (Asia/Shanghai) time ``days`` from today, as an aware UTC datetime."""
    day = datetime.now(SHANGHAI).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


async def make_institution(db: AsyncDatabase, institution_id: str, kind: str, **fields: Any) -> dict[str, Any]:
    document = {
        "_id": institution_id, "kind": kind, "name": fields.pop("name", f"测试机构 {institution_id}"),
        "address": "测试地址", "district": "婺城区", "timezone": "Asia/Shanghai", "calendar": {}, "windows": 5,
        "service_area": [{"district": "婺城区", "streets": ["城东街道", "城中街道"]},
                         {"district": "金东区", "streets": []}],
        "cancel_deadline_hours": 4, "review_deadline_hours": 12, **fields,
    }
    await db.institutions.replace_one({"_id": institution_id}, document, upsert=True)
    return document


async def make_service(db: AsyncDatabase, service_id: str, kind: str, institution_ids: list[str],
                       **fields: Any) -> dict[str, Any]:
    document = {
        "_id": service_id, "institution_ids": institution_ids, "kind": kind,
        "category": "老年护理" if kind == "nursing" else "医保", "name": fields.pop("name", f"服务 {service_id}"),
        "duration_minutes": 60 if kind == "nursing" else 30, "service_fee": "120.00", "visit_fee": "50.00",
        "eligibility": "", "preparation": "", "contraindications": "", "active": True, **fields,
    }
    await db.services.replace_one({"_id": service_id}, document, upsert=True)
    return document


async def make_slot(db: AsyncDatabase, institution_id: str, start: datetime, *, minutes: int = 30,
                    capacity: int = 5, kind: str = "centre", booked: int = 0, status: str = "open") -> str:
    local_start = start.astimezone(SHANGHAI)
    slot_id = f"{institution_id}|{local_start:%Y-%m-%d}|{local_start:%H:%M}"
    await db.slots.replace_one({"_id": slot_id}, {
        "_id": slot_id, "institution_id": institution_id, "kind": kind, "date": f"{local_start:%Y-%m-%d}",
        "start": start, "end": start + timedelta(minutes=minutes), "capacity": capacity, "booked": booked,
        "appointment_only": False, "status": status, "generated_at": datetime.now(UTC),
    }, upsert=True)
    return slot_id


async def make_nurse(db: AsyncDatabase, nurse_id: str, institution_id: str = CLINIC, **fields: Any) -> dict[str, Any]:
    document = {"_id": nurse_id, "institution_id": institution_id, "name": fields.pop("name", "吕丽"),
                "phone": "13800000000", "title": "主管护师", "years_of_practice": 8, "qualified": True,
                "skills": ["老年护理", "慢病管理"], "active": True, **fields}
    await db.nurses.replace_one({"_id": nurse_id}, document, upsert=True)
    return document


async def make_patient(db: AsyncDatabase, openid: str, **fields: Any) -> dict[str, Any]:
    return await patients.create(db, openid, {
        "name": "王秀英", "gender": "女", "age": 82, "conditions": ["脑梗后遗症"], "phone": "13912345678",
        "id_number": "11010519491231002X", "address": dict(ADDRESS), **fields,
    })


@dataclass
class World:
    db: AsyncDatabase

    async def centre_slot(self, days: int = 3, hour: int = 9, minute: int = 0, capacity: int = 5, **kw: Any) -> str:
        return await make_slot(self.db, CENTRE, visit_time(days, hour, minute), capacity=capacity, **kw)

    async def nursing_slot(self, days: int = 3, hour: int = 9, capacity: int = 3, institution: str = CLINIC,
                           **kw: Any) -> str:
        return await make_slot(self.db, institution, visit_time(days, hour), minutes=120, capacity=capacity,
                               kind="nursing", **kw)


async def world(db: AsyncDatabase) -> World:
    """A service centre, two nursing institutions, their services and three nurses."""
    await make_institution(db, CENTRE, "centre", name="测试政务服务中心")
    await make_institution(db, CLINIC, "nursing", name="测试医院")
    await make_institution(db, OTHER_CLINIC, "nursing", name="另一家医院")
    await make_service(db, CENTRE_SERVICE, "centre", [CENTRE], name="异地就医备案")
    await make_service(db, NURSING_SERVICE, "nursing", [CLINIC, OTHER_CLINIC], name="更换导尿管")
    await make_service(db, OTHER_NURSING_SERVICE, "nursing", [CLINIC], name="伤口换药", category="康复护理")
    await make_nurse(db, "nurse-lvli", CLINIC, name="吕丽")
    await make_nurse(db, "nurse-chen", CLINIC, name="陈静")
    await make_nurse(db, "nurse-other", OTHER_CLINIC, name="周敏")
    return World(db)


def visitor(seed: str = "") -> dict[str, str]:
    """A centre visitor; a different ``seed`` gives a different person (a different phone)."""
    digits = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % 10**8
    return {"name": "张建国", "phone": f"139{digits:08d}"}


VISITOR = visitor()
