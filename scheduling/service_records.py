"""The service record of a home visit (护理记录), written by the assigned nurse on completion.

What was done (items), materials used, vital signs (each with its unit, refused outside a
plausible range), observations and advice to the family, and photos. The record needs a recorded arrival and a
matching identity check first (``scheduling.visits``). The record (``service_records``,
``_id`` = booking id) is inserted once: a second submission is refused, never an overwrite; later
corrections are appended (``corrections``), each with who and when. The family then confirms that
the visit took place, or disputes it with a reason (once).

Photos are stored in GridFS (bucket ``service_photos``, PyMongo's ``AsyncGridFSBucket``), checked
for size and type (JPEG, PNG or WebP by their first bytes, not by the declared type alone), with
the booking, institution and family in their metadata; they are served only to the family of the
booking and to staff of the institution (``may_read``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.accounts.staff import ADMIN, CLINIC_STAFF, StaffMember
from bot.db import declare_indexes
from bot.errors import ApiError, bad_request, not_found
from scheduling import bookings
from scheduling import transitions as t
from scheduling.booking_base import BOOKINGS, Actor, Policy
from scheduling.visits import NOT_ASSIGNED_NURSE, VISIT_NOT_FOUND, VISITS, assigned_booking, nurse_may_act

COLLECTION = "service_records"
PHOTO_BUCKET = "service_photos"
MAX_PHOTO_BYTES = 1_000_000  # under MAX_BODY_BYTES (1 MiB); the mini-program compresses (wx.compressImage)
MAX_PHOTOS = 9
PHOTO_TYPES = {"image/jpeg": (b"\xff\xd8\xff",), "image/png": (b"\x89PNG\r\n\x1a\n",), "image/webp": (b"RIFF",)}

# key: (label, unit, plausible minimum, plausible maximum)
VITALS: dict[str, tuple[str, str, float, float]] = {
    "temperature": ("体温", "℃", 34.0, 42.5),
    "pulse": ("脉搏", "次/分", 30, 220),
    "respiration": ("呼吸", "次/分", 5, 60),
    "systolic": ("收缩压", "mmHg", 60, 260),
    "diastolic": ("舒张压", "mmHg", 30, 160),
    "spo2": ("血氧饱和度", "%", 50, 100),
    "glucose": ("血糖", "mmol/L", 1.0, 33.3),
}

declare_indexes(COLLECTION, IndexModel([("institution_id", ASCENDING), ("created_at", ASCENDING)],
                                       name="institution_created"))
declare_indexes(f"{PHOTO_BUCKET}.files", IndexModel([("metadata.booking_id", ASCENDING)], name="booking"))

RECORD_NOT_FOUND = not_found("该上门服务还没有护理记录", "record_not_found")
RECORD_EXISTS = ApiError(409, "record_exists", "护理记录已提交，不能覆盖；如需更正请提交更正说明")
PHOTO_NOT_FOUND = not_found("找不到该照片", "photo_not_found")


def _bucket(db: AsyncDatabase) -> AsyncGridFSBucket:
    return AsyncGridFSBucket(db, bucket_name=PHOTO_BUCKET)


# ---------------------------------------------------------------- pure validation


def parse_vitals(given: Any) -> dict[str, dict[str, Any]]:
    """``{"temperature": 36.8}`` or ``{"temperature": {"value": 36.8, "unit": "℃"}}`` → stored form."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise bad_request("invalid_vitals", "生命体征应为 JSON 对象")
    out: dict[str, dict[str, Any]] = {}
    for key, raw in given.items():
        if key not in VITALS:
            raise bad_request("invalid_vitals", f"未知的生命体征「{key}」，可填：{'、'.join(VITALS)}")
        label, unit, low, high = VITALS[key]
        value, given_unit = (raw.get("value"), raw.get("unit")) if isinstance(raw, dict) else (raw, None)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad_request("invalid_vitals", f"「{label}」应为数字")
        if given_unit not in (None, unit):
            raise bad_request("invalid_vitals", f"「{label}」的单位应为 {unit}")
        if not low <= value <= high:
            raise bad_request("implausible_vitals",
                              f"「{label}」{value} {unit} 不在合理范围（{low}–{high} {unit}），请核对")
        out[key] = {"label": label, "value": value, "unit": unit}
    if "systolic" in out and "diastolic" in out and out["diastolic"]["value"] >= out["systolic"]["value"]:
        raise bad_request("implausible_vitals", "舒张压应低于收缩压，请核对")
    return out


def _texts(value: Any, label: str, *, items: int = 30, length: int = 200) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > items or not all(
            isinstance(v, str) and 0 < len(v.strip()) <= length for v in value):
        raise bad_request("invalid_record", f"「{label}」应为最多 {items} 条、每条不超过 {length} 字的列表")
    return [v.strip() for v in value]


def _materials(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 30:
        raise bad_request("invalid_record", "「耗材」应为最多 30 项的列表")
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
            raise bad_request("invalid_record", "每项耗材须有名称（name）")
        quantity = item.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int | float) or not 0 < quantity <= 1000:
            raise bad_request("invalid_record", f"耗材「{item['name']}」的数量应为 0 到 1000 之间的数字")
        unit = item.get("unit") or ""
        if not isinstance(unit, str) or len(unit) > 10:
            raise bad_request("invalid_record", "耗材单位不超过 10 字")
        out.append({"name": item["name"].strip()[:50], "quantity": quantity, "unit": unit})
    return out


def _text(value: Any, label: str, limit: int = 1000) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise bad_request("invalid_record", f"「{label}」应为不超过 {limit} 字的文字")
    return value.strip()


def sniff(data: bytes) -> str | None:
    """The image type by its first bytes."""
    for content_type, magics in PHOTO_TYPES.items():
        if any(data.startswith(magic) for magic in magics):
            if content_type == "image/webp" and data[8:12] != b"WEBP":
                continue
            return content_type
    return None


# ---------------------------------------------------------------- photos


async def upload_photo(db: AsyncDatabase, member: StaffMember, booking_id: str, data: bytes,
                       declared_type: str | None, filename: str = "photo") -> dict[str, Any]:
    booking = await assigned_booking(db, member, booking_id)
    if booking["status"] not in (t.IN_SERVICE, t.COMPLETED):
        raise ApiError(409, "visit_not_in_progress", "服务开始后才能上传照片")
    if not data:
        raise bad_request("photo_required", "请上传照片")
    if len(data) > MAX_PHOTO_BYTES:
        raise ApiError(413, "photo_too_large", "照片不能超过 1 MB，请压缩后重新上传")
    content_type = sniff(data)
    if content_type is None or (declared_type and declared_type.split(";")[0].strip() != content_type):
        raise ApiError(415, "photo_type", "只能上传 JPEG、PNG 或 WebP 格式的照片")
    existing = await db[f"{PHOTO_BUCKET}.files"].count_documents({"metadata.booking_id": booking_id})
    if existing >= MAX_PHOTOS:
        raise ApiError(409, "too_many_photos", f"每次上门服务最多上传 {MAX_PHOTOS} 张照片")
    metadata = {"booking_id": booking_id, "institution_id": booking["institution_id"], "openid": booking["openid"],
                "uploaded_by": member.username, "content_type": content_type}
    file_id = await _bucket(db).upload_from_stream(filename[:100] or "photo", data, metadata=metadata)
    return {"id": str(file_id), "content_type": content_type, "size": len(data)}


def may_read(booking: dict[str, Any], *, openid: str | None = None, member: StaffMember | None = None) -> bool:
    """The family of the booking, and staff of the institution (the assigned nurse among nurses)."""
    if openid is not None:
        return booking["openid"] == openid
    if member is None or not member.may_act_for(booking["institution_id"]):
        return False
    return member.role in (ADMIN, CLINIC_STAFF) or nurse_may_act(member, booking)


async def _readable_booking(db: AsyncDatabase, booking_id: str, openid: str | None,
                            member: StaffMember | None) -> dict[str, Any]:
    booking = await db[BOOKINGS].find_one({"_id": booking_id}) if isinstance(booking_id, str) else None
    if booking is None or booking.get("kind") != t.NURSING or (openid is not None and booking["openid"] != openid):
        raise VISIT_NOT_FOUND  # another family's visit is indistinguishable from none
    if not may_read(booking, openid=openid, member=member):
        raise ApiError(403, "forbidden", "没有权限查看该上门服务")
    return booking


async def read_photo(db: AsyncDatabase, booking_id: str, photo_id: str, *, openid: str | None = None,
                     member: StaffMember | None = None) -> tuple[bytes, str]:
    await _readable_booking(db, booking_id, openid, member)
    try:
        oid = ObjectId(photo_id)
    except (InvalidId, TypeError):
        raise PHOTO_NOT_FOUND from None
    info = await db[f"{PHOTO_BUCKET}.files"].find_one({"_id": oid, "metadata.booking_id": booking_id})
    if info is None:
        raise PHOTO_NOT_FOUND
    try:
        stream = await _bucket(db).open_download_stream(oid)
    except NoFile:
        raise PHOTO_NOT_FOUND from None
    return await stream.read(), info["metadata"]["content_type"]


# ---------------------------------------------------------------- the record


async def submit(db: AsyncDatabase, member: StaffMember, booking_id: str, body: dict[str, Any], policy: Policy,
                 now: datetime | None = None) -> dict[str, Any]:
    """Insert the record (once) and complete the visit when it is still in service."""
    now = now or datetime.now(UTC)
    booking = await assigned_booking(db, member, booking_id)
    if booking["status"] not in (t.IN_SERVICE, t.COMPLETED):
        raise ApiError(409, "visit_not_in_progress", "服务开始后才能提交护理记录")
    visit = await db[VISITS].find_one({"_id": booking_id}) or {}
    if not visit.get("arrival") or not (visit.get("identity") or {}).get("matched"):
        raise ApiError(409, "identity_not_verified", "请先确认到达并核对患者身份，再提交护理记录")
    photos = body.get("photo_ids") or []
    if not isinstance(photos, list) or len(photos) > MAX_PHOTOS or not all(isinstance(p, str) for p in photos):
        raise bad_request("invalid_record", f"photo_ids 应为最多 {MAX_PHOTOS} 个照片编号")
    for photo in photos:
        try:
            oid = ObjectId(photo)
        except InvalidId:
            raise bad_request("invalid_photo", f"照片编号无效：{photo}") from None
        if not await db[f"{PHOTO_BUCKET}.files"].find_one({"_id": oid, "metadata.booking_id": booking_id}):
            raise bad_request("invalid_photo", f"照片 {photo} 不属于该上门服务")
    items = _texts(body.get("items"), "已完成的护理项目")
    if not items:
        raise bad_request("items_required", "请填写已完成的护理项目（items）")
    record = {"_id": booking_id, "institution_id": booking["institution_id"], "openid": booking["openid"],
              "nurse_id": booking.get("nurse_id"), "service_id": booking["service_id"], "items": items,
              "materials": _materials(body.get("materials")), "vitals": parse_vitals(body.get("vitals")),
              "observations": _text(body.get("observations"), "观察情况"),
              "advice": _text(body.get("advice"), "护理建议"),
              "photo_ids": photos, "created_at": now, "created_by": member.username, "corrections": [],
              "family_response": None}
    try:
        await db[COLLECTION].insert_one(record)
    except DuplicateKeyError:
        raise RECORD_EXISTS from None
    if booking["status"] == t.IN_SERVICE:
        await bookings.transition(db, booking_id, t.COMPLETED, Actor.staff(member), policy, now=now)
    return record


async def correct(db: AsyncDatabase, member: StaffMember, booking_id: str, note: Any,
                  now: datetime | None = None) -> dict[str, Any]:
    """Append a correction (the record itself never changes)."""
    now = now or datetime.now(UTC)
    booking = await db[BOOKINGS].find_one({"_id": booking_id}) if isinstance(booking_id, str) else None
    if booking is None:
        raise VISIT_NOT_FOUND
    if not (nurse_may_act(member, booking) or (member.role in (ADMIN, CLINIC_STAFF)
                                                and member.may_act_for(booking["institution_id"]))):
        raise NOT_ASSIGNED_NURSE
    if not isinstance(note, str) or not 1 <= len(note.strip()) <= 500:
        raise bad_request("correction_required", "请填写更正说明（不超过 500 字）")
    entry = {"at": now, "by": member.username, "note": note.strip()}
    result = await db[COLLECTION].update_one({"_id": booking_id}, {"$push": {"corrections": entry}})
    if result.matched_count != 1:
        raise RECORD_NOT_FOUND
    return await db[COLLECTION].find_one({"_id": booking_id})


async def respond(db: AsyncDatabase, openid: str, booking_id: str, *, confirmed: bool, reason: Any = None,
                  now: datetime | None = None) -> dict[str, Any]:
    """The family confirms the visit took place, or disputes it with a reason (once)."""
    now = now or datetime.now(UTC)
    await _readable_booking(db, booking_id, openid, None)
    if not confirmed and (not isinstance(reason, str) or not 1 <= len(reason.strip()) <= 500):
        raise bad_request("reason_required", "如对服务有异议，请填写原因（不超过 500 字）")
    response = {"at": now, "confirmed": confirmed, "reason": None if confirmed else reason.strip()}
    result = await db[COLLECTION].update_one({"_id": booking_id, "openid": openid, "family_response": None},
                                             {"$set": {"family_response": response}})
    if result.matched_count != 1:
        if await db[COLLECTION].find_one({"_id": booking_id}) is None:
            raise RECORD_NOT_FOUND
        raise ApiError(409, "already_responded", "您已确认或提出过异议")
    return await db[COLLECTION].find_one({"_id": booking_id})


async def get_record(db: AsyncDatabase, booking_id: str, *, openid: str | None = None,
                     member: StaffMember | None = None) -> dict[str, Any]:
    await _readable_booking(db, booking_id, openid, member)
    record = await db[COLLECTION].find_one({"_id": booking_id})
    if record is None:
        raise RECORD_NOT_FOUND
    return record


def record_view(record: dict[str, Any]) -> dict[str, Any]:
    return {"booking_id": record["_id"], "items": record["items"], "materials": record["materials"],
            "vitals": record["vitals"], "observations": record["observations"], "advice": record["advice"],
            "photo_ids": record["photo_ids"], "created_at": record["created_at"], "created_by": record["created_by"],
            "corrections": record["corrections"], "family_response": record["family_response"]}
