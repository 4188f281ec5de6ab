"""Nurses of nursing institutions and the qualification rule of the national pilot:
at least 5 years of clinical practice and the title 护师 or above (护士 is not enough)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from bot.db import declare_indexes
from bot.masking import mask_phone

COLLECTION = "nurses"
TITLES = ("护士", "护师", "主管护师", "副主任护师", "主任护师")  # ascending rank
QUALIFYING_TITLES = frozenset(TITLES[1:])
MIN_YEARS_OF_PRACTICE = 5

declare_indexes(COLLECTION, IndexModel([("institution_id", ASCENDING), ("active", ASCENDING),
                                        ("qualified", ASCENDING)], name="institution_active_qualified"))


def is_qualified(title: str, years_of_practice: int) -> bool:
    return title in QUALIFYING_TITLES and years_of_practice >= MIN_YEARS_OF_PRACTICE


def qualification_note(title: str, years_of_practice: int) -> str:
    if is_qualified(title, years_of_practice):
        return "符合上门护理资质（执业满 5 年且为护师及以上职称）"
    reasons = []
    if years_of_practice < MIN_YEARS_OF_PRACTICE:
        reasons.append(f"临床执业 {years_of_practice} 年，未满 5 年")
    if title not in QUALIFYING_TITLES:
        reasons.append(f"职称为{title}，需护师及以上")
    return "暂不符合上门护理资质：" + "；".join(reasons)


async def list_nurses(db: AsyncDatabase, institution_id: str) -> list[dict[str, Any]]:
    return await db[COLLECTION].find({"institution_id": institution_id}).sort("_id", ASCENDING).to_list(None)


async def count_qualified(db: AsyncDatabase, institution_id: str) -> int:
    return await db[COLLECTION].count_documents({"institution_id": institution_id, "active": True,
                                                 "qualified": True})


async def create_nurse(db: AsyncDatabase, institution_id: str, fields: dict[str, Any],
                       nurse_id: str | None = None) -> dict[str, Any]:
    """``fields``: name, phone, title, years_of_practice, skills, active (validated by the caller)."""
    now = datetime.now(UTC)
    document = {"_id": nurse_id or f"nurse-{uuid.uuid4().hex[:12]}", "institution_id": institution_id,
                "skills": [], "active": True, **fields, "created_at": now, "updated_at": now}
    document["qualified"] = is_qualified(document["title"], document["years_of_practice"])
    await db[COLLECTION].insert_one(document)
    return document


async def update_nurse(db: AsyncDatabase, institution_id: str, nurse_id: str,
                       changes: dict[str, Any]) -> dict[str, Any] | None:
    """Apply ``changes`` and re-derive ``qualified`` in one atomic update; None if no such nurse."""
    return await db[COLLECTION].find_one_and_update(
        {"_id": nurse_id, "institution_id": institution_id},
        [{"$set": {**{k: {"$literal": v} for k, v in changes.items()}, "updated_at": datetime.now(UTC)}},
         {"$set": {"qualified": {"$and": [{"$in": ["$title", sorted(QUALIFYING_TITLES)]},
                                          {"$gte": ["$years_of_practice", MIN_YEARS_OF_PRACTICE]}]}}}],
        return_document=ReturnDocument.AFTER,
    )


def nurse_view(nurse: dict[str, Any], *, reveal_phone: bool) -> dict[str, Any]:
    """The API form; the phone is whole only for staff of the nurse's own institution."""
    return {
        "id": nurse["_id"],
        "institution_id": nurse["institution_id"],
        "name": nurse["name"],
        "phone": nurse.get("phone", "") if reveal_phone else mask_phone(nurse.get("phone")),
        "title": nurse["title"],
        "years_of_practice": nurse["years_of_practice"],
        "qualified": bool(nurse.get("qualified")),
        "qualification_note": qualification_note(nurse["title"], nurse["years_of_practice"]),
        "skills": list(nurse.get("skills") or []),
        "active": bool(nurse.get("active")),
    }


class NurseFieldError(ValueError):
    """A nurse field that cannot be stored; the message is Chinese, for staff."""


_PHONE_DIGITS = 11
_FIELDS = ("name", "phone", "title", "years_of_practice", "skills", "active")


def parse_nurse_fields(body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """Validate a staff request; ``partial`` for an update (only the fields given)."""
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise NurseFieldError(f"不支持的字段：{'、'.join(unknown)}")
    if not partial:
        missing = [f for f in ("name", "phone", "title", "years_of_practice") if f not in body]
        if missing:
            raise NurseFieldError(f"缺少字段：{'、'.join(missing)}")
    elif not body:
        raise NurseFieldError("请至少提供一个要修改的字段")
    fields: dict[str, Any] = {}
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 20:
            raise NurseFieldError("姓名应为 1 到 20 个字")
        fields["name"] = name.strip()
    if "phone" in body:
        phone = body["phone"]
        if not (isinstance(phone, str) and len(phone) == _PHONE_DIGITS and phone.isascii() and phone.isdigit()
                and phone[0] == "1" and phone[1] in "3456789"):
            raise NurseFieldError("手机号应为 11 位数字")
        fields["phone"] = phone
    if "title" in body:
        if body["title"] not in TITLES:
            raise NurseFieldError(f"职称应为以下之一：{'、'.join(TITLES)}")
        fields["title"] = body["title"]
    if "years_of_practice" in body:
        years = body["years_of_practice"]
        if not isinstance(years, int) or isinstance(years, bool) or not 0 <= years <= 60:
            raise NurseFieldError("临床执业年限应为 0 到 60 之间的整数")
        fields["years_of_practice"] = years
    if "skills" in body:
        from scheduling.catalogue import NURSING_CATEGORIES

        skills = body["skills"]
        if not isinstance(skills, list) or any(s not in NURSING_CATEGORIES for s in skills):
            raise NurseFieldError(f"擅长类别应从以下选择：{'、'.join(NURSING_CATEGORIES)}")
        fields["skills"] = list(dict.fromkeys(skills))
    if "active" in body:
        if not isinstance(body["active"], bool):
            raise NurseFieldError("active 应为 true 或 false")
        fields["active"] = body["active"]
    return fields
