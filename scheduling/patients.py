"""Patients of a family account (the WeChat user): the people a home nursing visit is for.

Only the family itself reads its patients through ``/api/v1/patients``; a booking keeps a
snapshot of the patient, shown whole to the family and to staff of the institution handling it,
with phone and ID numbers masked for everyone else (``view(..., reveal=False)``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from bot.db import declare_indexes
from bot.errors import ApiError, not_found
from bot.masking import mask_id_number, mask_phone
from scheduling import geo

COLLECTION = "patients"
MAX_PATIENTS_PER_FAMILY = 20
GENDERS = ("男", "女")

declare_indexes(COLLECTION, IndexModel([("openid", ASCENDING), ("created_at", ASCENDING)], name="openid_created"))

_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE = re.compile(r"^0\d{2,3}-?\d{7,8}$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

PATIENT_NOT_FOUND = not_found("找不到该就诊人", "patient_not_found")


def valid_id_number(value: str) -> bool:
    """An 18-character resident ID number with a correct check character (GB 11643)."""
    if not re.fullmatch(r"\d{17}[\dX]", value):
        return False
    total = sum(int(digit) * weight for digit, weight in zip(value[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == value[17]


def _text(value: Any, label: str, max_length: int, problems: dict[str, str], key: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        problems[key] = f"「{label}」应为文字"
        return None
    value = value.strip()
    if len(value) > max_length:
        problems[key] = f"「{label}」不能超过 {max_length} 个字"
        return None
    return value


def validate_address(value: Any, problems: dict[str, str], key: str = "address") -> dict[str, str] | None:
    if not isinstance(value, dict):
        problems[key] = "请填写地址（区县、街道、详细地址）"
        return None
    district = _text(value.get("district"), "区县", 30, problems, f"{key}.district")
    street = _text(value.get("street"), "街道/乡镇", 30, problems, f"{key}.street")
    detail = _text(value.get("detail"), "详细地址", 100, problems, f"{key}.detail")
    if district is None and f"{key}.district" not in problems:
        problems[f"{key}.district"] = "请填写区县"
    if street is None and f"{key}.street" not in problems:
        problems[f"{key}.street"] = "请填写街道/乡镇"
    if district is None or street is None:
        return None
    address = {"district": district, "street": street, "detail": detail or ""}
    if value.get("location") is not None:  # issue 16: the map point chosen with wx.chooseLocation
        try:
            address["location"] = geo.parse_location(value["location"])
        except geo.LocationError as exc:
            problems[f"{key}.location"] = str(exc)
            return None
    return address


def validate(body: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """The patient fields of ``body`` normalised; with ``partial`` only the fields present."""
    problems: dict[str, str] = {}
    clean: dict[str, Any] = {}

    def present(field: str) -> bool:
        return not partial or field in body

    if present("name"):
        name = _text(body.get("name"), "姓名", 30, problems, "name")
        if name is None and "name" not in problems:
            problems["name"] = "请填写姓名"
        clean["name"] = name
    if present("gender"):
        if body.get("gender") not in GENDERS:
            problems["gender"] = "性别应为“男”或“女”"
        clean["gender"] = body.get("gender")
    if present("age"):
        age = body.get("age")
        if not isinstance(age, int) or isinstance(age, bool) or not 0 <= age <= 150:
            problems["age"] = "年龄应为 0 到 150 之间的整数"
        clean["age"] = age
    if present("conditions"):
        conditions = body.get("conditions") or []
        if isinstance(conditions, str):
            conditions = [part for part in re.split(r"[,，、;；\s]+", conditions) if part]
        if not isinstance(conditions, list) or len(conditions) > 20 or not all(
            isinstance(c, str) and 0 < len(c.strip()) <= 50 for c in conditions
        ):
            problems["conditions"] = "疾病情况应为最多 20 项、每项不超过 50 字的列表"
        else:
            clean["conditions"] = [c.strip() for c in conditions]
    if present("phone"):
        phone = body.get("phone")
        phone = phone.strip().replace(" ", "") if isinstance(phone, str) else phone
        if not isinstance(phone, str) or not (_MOBILE.match(phone) or _LANDLINE.match(phone)):
            problems["phone"] = "请填写有效的联系电话（手机号或带区号的固定电话）"
        clean["phone"] = phone
    if present("id_number"):
        id_number = body.get("id_number")
        if id_number in (None, ""):
            clean["id_number"] = None
        elif not isinstance(id_number, str) or not valid_id_number(id_number.strip().upper()):
            problems["id_number"] = "身份证号码格式不正确"
        else:
            clean["id_number"] = id_number.strip().upper()
    if present("address"):
        clean["address"] = validate_address(body.get("address"), problems)
    if problems:
        raise ApiError(400, "invalid_patient", "就诊人信息有误：" + "；".join(problems.values()), fields=problems)
    return clean


def validate_visitor(value: Any) -> dict[str, Any]:
    """A centre visitor: name and phone required, ID number optional (stored whole, shown masked
    except to the family and the handling staff, like a patient's)."""
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_visitor", "来访人信息应为包含姓名和手机号的对象")
    problems: dict[str, str] = {}
    name = _text(value.get("name"), "来访人姓名", 30, problems, "visitor.name")
    if name is None and "visitor.name" not in problems:
        problems["visitor.name"] = "请填写来访人姓名"
    phone = value.get("phone")
    phone = phone.strip().replace(" ", "") if isinstance(phone, str) else phone
    if not isinstance(phone, str) or not (_MOBILE.match(phone) or _LANDLINE.match(phone)):
        problems["visitor.phone"] = "请填写来访人有效的联系电话（手机号或带区号的固定电话）"
    id_number = value.get("id_number")
    if id_number in (None, ""):
        id_number = None
    elif not isinstance(id_number, str) or not valid_id_number(id_number.strip().upper()):
        problems["visitor.id_number"] = "来访人身份证号码格式不正确"
    else:
        id_number = id_number.strip().upper()
    if problems:
        raise ApiError(400, "invalid_visitor", "来访人信息有误：" + "；".join(problems.values()), fields=problems)
    return {"name": name, "phone": phone, "id_number": id_number}


def view(document: dict[str, Any], *, reveal: bool) -> dict[str, Any]:
    """The API form; phone and ID numbers whole only when ``reveal`` (the family, the handling staff)."""
    phone, id_number = document.get("phone"), document.get("id_number")
    return {
        "id": document["_id"],
        "name": document.get("name"),
        "gender": document.get("gender"),
        "age": document.get("age"),
        "conditions": document.get("conditions", []),
        "phone": phone if reveal else mask_phone(phone),
        "id_number": (id_number if reveal else mask_id_number(id_number)) if id_number else None,
        "address": document.get("address"),
    }


def snapshot(document: dict[str, Any]) -> dict[str, Any]:
    """What a booking keeps of the patient (later edits of the patient do not change a booking)."""
    return {"patient_id": document["_id"], **{k: document.get(k) for k in
            ("name", "gender", "age", "conditions", "phone", "id_number", "address")}}


async def create(db: AsyncDatabase, openid: str, fields: dict[str, Any]) -> dict[str, Any]:
    if await db[COLLECTION].count_documents({"openid": openid}) >= MAX_PATIENTS_PER_FAMILY:
        raise ApiError(409, "too_many_patients", f"每个账号最多添加 {MAX_PATIENTS_PER_FAMILY} 位就诊人")
    now = datetime.now(UTC)
    document = {"_id": str(ObjectId()), "openid": openid, "conditions": [], "id_number": None,
                **fields, "created_at": now, "updated_at": now}
    await db[COLLECTION].insert_one(document)
    return document


async def list_for(db: AsyncDatabase, openid: str) -> list[dict[str, Any]]:
    return await db[COLLECTION].find({"openid": openid}).sort("created_at", ASCENDING).to_list(None)


async def find_by_id(db: AsyncDatabase, patient_id: str) -> dict[str, Any] | None:
    """Any family's patient (staff booking on a resident's behalf); the caller checks the right to."""
    return await db[COLLECTION].find_one({"_id": patient_id}) if isinstance(patient_id, str) else None


async def get(db: AsyncDatabase, openid: str, patient_id: str) -> dict[str, Any]:
    """The family's own patient, or 404 (another family's patient is indistinguishable from none)."""
    document = await db[COLLECTION].find_one({"_id": patient_id, "openid": openid})
    if document is None:
        raise PATIENT_NOT_FOUND
    return document


async def update(db: AsyncDatabase, openid: str, patient_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    result = await db[COLLECTION].update_one({"_id": patient_id, "openid": openid},
                                             {"$set": {**fields, "updated_at": datetime.now(UTC)}})
    document = await db[COLLECTION].find_one({"_id": patient_id, "openid": openid}) if result.matched_count else None
    if document is None:
        raise PATIENT_NOT_FOUND
    return document


async def delete(db: AsyncDatabase, openid: str, patient_id: str) -> None:
    """Bookings keep their own snapshot, so deleting a patient never changes a booking."""
    result = await db[COLLECTION].delete_one({"_id": patient_id, "openid": openid})
    if result.deleted_count != 1:
        raise PATIENT_NOT_FOUND
