"""Resident booking API: book (with an Idempotency-Key), list, read, cancel, reschedule, the booking
code's QR image, no-show suspensions, and the waitlist of full slots. Every handler parses (one
pydantic declaration per endpoint, ``bot.endpoints``), calls ``scheduling.bookings``/``waitlist``,
renders."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from typing import Any, Literal

import segno
from aiohttp import web
from pydantic import BaseModel, Field

from bot.endpoints import Api, Body, Query
from bot.errors import bad_request, not_found
from bot.keys import DB, SETTINGS
from bot.web import json_response
from handlers.auth import current_resident
from handlers.patients import Address, BookingPatient
from scheduling import bookings, waitlist
from scheduling import transitions as t
from scheduling.booking_base import Actor, Policy

api = Api("bookings")
routes = api.routes

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, no spaces
ALL_STATUSES = sorted(t.STATUSES[t.CENTRE] | t.STATUSES[t.NURSING])
Status = Literal[tuple(ALL_STATUSES)]  # type: ignore[valid-type]
_PHONE = r"^[0-9 -]+$"


def policy_of(request: web.Request) -> Policy:
    return Policy.from_settings(request.app[SETTINGS])


def idempotency_key(request: web.Request) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise bad_request("idempotency_key_required", "缺少 Idempotency-Key 请求头（每次新的预约使用一个新的唯一值）")
    if not _IDEMPOTENCY_KEY.match(key):
        raise bad_request("invalid_idempotency_key", "Idempotency-Key 应为 1 到 128 个可见 ASCII 字符")
    return key


# --- models --------------------------------------------------------------------------------------


class Visitor(Body):
    name: str = Field(min_length=1, max_length=30, title="来访人姓名")
    phone: str = Field(min_length=7, max_length=20, pattern=_PHONE, title="来访人电话",
                       description="手机号或带区号的固定电话")
    id_number: str | None = Field(None, max_length=18, title="来访人身份证号",
                                  description="可选；除本人账号和办理机构外脱敏显示")


class BookingDetails(Body):
    """What a booking request may carry besides the slot: for a centre booking the visitor and the
    matter; for a home visit the patient, the address and the first assessment."""

    patient_id: str | None = Field(None, max_length=64, title="就诊人",
                                   description="上门护理必填：本账号的就诊人；延时服务可代替 visitor")
    address: Address | None = Field(None, title="上门地址",
                                    description="不填则用就诊人的地址；区县、街道和详细地址（门牌号）都必填，须在机构服务范围内")
    assessment: dict[str, Any] | None = Field(None, title="首诊评估",
                                              description="上门护理必填：consciousness、mobility、allergies、"
                                                          "current_conditions、done_before")
    visitor: Visitor | None = Field(None, title="来访人", description="延时服务必填（或给出 patient_id）")
    matter: str | None = Field(None, max_length=100, title="办理事项", description="不填则为所选服务项目")
    note: str | None = Field(None, max_length=200, title="备注")
    acknowledge_no_free_cancel: bool = Field(False, title="知晓不能免费取消",
                                             description="已过免费取消时间仍要预约时须为 true")
    consent_version: int | None = Field(None, ge=1, title="知情同意书版本",
                                        description="上门护理必填：家属已阅读并同意的当前知情同意书版本")


class BookingIn(BookingDetails):
    slot_id: str = Field(min_length=1, max_length=200, title="时段")
    service_id: str = Field(min_length=1, max_length=200, title="服务项目")
    waitlist_id: str | None = Field(None, max_length=64, title="候补记录", description="使用候补保留的名额预约")


class ReasonIn(Body):
    reason: str | None = Field(None, max_length=200, title="原因")


class RescheduleIn(Body):
    slot_id: str = Field(min_length=1, max_length=200, title="新时段")


class WaitlistIn(Body):
    slot_id: str = Field(min_length=1, max_length=200, title="时段")
    service_id: str = Field(min_length=1, max_length=200, title="服务项目")


class BookingsQuery(Query):
    status: Status | None = Field(None, description="按状态筛选")  # type: ignore[valid-type]
    upcoming: bool = Field(False, description="只看未开始的有效预约（按时间先后）")


class VisitorOut(BaseModel):
    name: str | None
    phone: str | None
    id_number: str | None = None


class NurseOut(BaseModel):
    id: str
    name: str
    title: str


class HistoryEntry(BaseModel):
    at: datetime
    action: str
    from_: str | None = Field(None, alias="from")
    to: str | None
    reason: str | None = None
    actor: dict[str, Any]
    details: dict[str, Any] | None = None


@api.schema
class Booking(BaseModel):
    """一个预约。联系电话和身份证号只对本人账号和负责该预约的机构工作人员完整显示；预约码和二维码只给这两方"""

    id: str
    kind: Literal["centre", "nursing"]
    status: Status  # type: ignore[valid-type]
    status_label: str
    status_reason: str | None
    institution_id: str
    institution_name: str
    service_id: str
    service_name: str
    slot_id: str
    date: str
    start: datetime = Field(description="ISO 8601，+08:00")
    end: datetime = Field(description="ISO 8601，+08:00")
    patient: BookingPatient | None
    visitor: VisitorOut | None = Field(description="延时服务的来访人")
    matter: str | None = Field(description="办理事项")
    address: Address | None
    assessment: dict[str, Any] | None
    nurse: NurseOut | None
    note: str | None
    code: str | None = Field(description="预约码（6 位，不含易混字符）：延时服务预约后即有，上门护理确认后才有")
    code_active: bool = Field(description="预约码当前是否可用于签到")
    qr_url: str | None = Field(description="预约码二维码图片（PNG）")
    provisional: bool = Field(description="该日的节假日安排尚未按国务院通知导入（暂定）")
    provisional_note: str | None
    acknowledged_no_free_cancel: bool
    channel: Literal["self", "phone", "walk_in", "assisted"] = Field(description="预约渠道：本人、电话、现场、帮办代办")
    channel_label: str
    booked_by: dict[str, Any] | None = Field(description="工作人员代为预约时为该工作人员")
    cancel_deadline: datetime | None
    review_deadline: datetime | None
    can_cancel: bool
    next_statuses: list[str]
    history: list[HistoryEntry] | None = None
    created_at: datetime
    updated_at: datetime


class BookingList(BaseModel):
    bookings: list[Booking]


class WaitlistEntry(BaseModel):
    id: str
    status: Literal["waiting", "offered", "accepted", "lapsed", "expired", "cancelled"]
    status_label: str
    slot_id: str
    service_id: str
    institution_id: str
    service_name: str
    institution_name: str
    start: datetime
    end: datetime
    position: int | None = Field(None, description="排队位置（1 为下一位）")
    offer_expires_at: datetime | None = None
    booking_id: str | None = None
    created_at: datetime


class WaitlistList(BaseModel):
    entries: list[WaitlistEntry]


class Suspension(BaseModel):
    id: str
    institution_id: str
    institution_name: str
    reason: str
    no_shows: int | None
    since: datetime
    until: datetime
    message: str


class SuspensionList(BaseModel):
    suspensions: list[Suspension]


# --- errors each endpoint may answer --------------------------------------------------------------

_NOT_FOUND = "booking_not_found：找不到该预约（或不属于当前账号）"
CREATE_ERRORS = {
    400: "idempotency_key_required；invalid_idempotency_key；invalid_field；unknown_fields；invalid_json；"
         "body_required；service_not_offered；outside_service_area；invalid_address；address_required；"
         "invalid_assessment；patient_required；visitor_required；invalid_visitor；invalid_matter；invalid_note；"
         "invalid_channel",
    403: "booking_suspended：多次未到场，自助预约暂停中（含原因和截止日期）",
    404: "slot_not_found；patient_not_found",
    409: "slot_full；slot_started；too_many_active_bookings；too_late_to_request；offer_not_available；"
         "already_booked（同一人同一时段已有预约）；patient_busy（就诊人已有时间重叠的上门服务）；"
         "no_free_cancel（已过免费取消时间，需 acknowledge_no_free_cancel）；idempotency_key_in_progress",
    422: "idempotency_key_reused：同一 Idempotency-Key 的请求内容有任何不同",
}


def _rendered(booking: dict[str, Any], created: bool) -> web.Response:
    view = bookings.view(booking, reveal=True)
    if created:
        return json_response(view, status=201)
    return json_response(view, status=200, headers={"Idempotent-Replayed": "true"})


def booking_request(body: BookingDetails, key: str, *, slot_id: str, service_id: str,
                    waitlist_id: str | None = None, channel: str = "self") -> bookings.BookingRequest:
    return bookings.BookingRequest(
        slot_id=slot_id, service_id=service_id, idempotency_key=key, patient_id=body.patient_id,
        address=body.address.model_dump() if body.address is not None else None, assessment=body.assessment,
        waitlist_id=waitlist_id, note=body.note,
        visitor=body.visitor.model_dump() if body.visitor is not None else None, matter=body.matter,
        acknowledge_no_free_cancel=body.acknowledge_no_free_cancel, channel=channel,
        consent_version=body.consent_version,
    )


# --- bookings ------------------------------------------------------------------------------------

@api.post("/api/v1/bookings", summary="预约（延时服务时段或上门护理申请）", body=BookingIn, response=Booking,
          status=201, auth=True, errors=CREATE_ERRORS,
          description="请求头 Idempotency-Key 必填。同一 Key 重复提交完全相同的内容返回第一次创建的预约"
                      "（200，响应头 Idempotent-Replayed: true）；内容有任何不同（包括备注）返回 422。"
                      "同一就诊人/来访人同一时段只能有一个有效预约（数据库唯一索引保证）。延时服务须填来访人，"
                      "预约后即得预约码；上门护理需要就诊人、完整地址和首诊评估，提交后为待审核。")
async def create_booking(request: web.Request, body: BookingIn) -> web.Response:
    openid = await current_resident(request)
    key = idempotency_key(request)
    booking, created = await bookings.create_booking(
        request.app[DB], openid, booking_request(body, key, slot_id=body.slot_id, service_id=body.service_id,
                                                 waitlist_id=body.waitlist_id), policy_of(request))
    return _rendered(booking, created)


@api.get("/api/v1/bookings", summary="我的预约（含工作人员代为预约的）", query=BookingsQuery, response=BookingList,
         auth=True)
async def list_bookings(request: web.Request, query: BookingsQuery) -> dict[str, Any]:
    openid = await current_resident(request)
    now = datetime.now(UTC)
    found = await bookings.list_for_family(request.app[DB], openid, status=query.status,
                                           upcoming_after=now if query.upcoming else None)
    return {"bookings": [bookings.view(b, reveal=True, now=now) for b in found]}


@api.get("/api/v1/bookings/{booking_id}", summary="预约详情（含状态变更记录）", response=Booking, auth=True,
         errors={404: _NOT_FOUND})
async def get_booking(request: web.Request) -> dict[str, Any]:
    openid = await current_resident(request)
    db = request.app[DB]
    booking = await bookings.get(db, request.match_info["booking_id"], Actor.resident(openid))
    return bookings.view(booking, reveal=True, audit_records=await bookings.history(db, booking["_id"]))


@api.get("/api/v1/bookings/{booking_id}/qr.png", summary="预约码二维码（PNG 图片，到场时出示）", auth=True,
         errors={404: _NOT_FOUND + "；no_code：该预约还没有预约码（上门护理确认后才有）"})
async def booking_qr(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    booking = await bookings.get(request.app[DB], request.match_info["booking_id"], Actor.resident(openid))
    if not booking.get("code"):
        raise not_found("该预约还没有预约码（上门护理在机构确认后生成）", "no_code")
    image = io.BytesIO()
    segno.make(booking["code"], error="m").save(image, kind="png", scale=8, border=2)
    return web.Response(body=image.getvalue(), content_type="image/png",
                        headers={"Cache-Control": "private, max-age=300"})


@api.post("/api/v1/bookings/{booking_id}/cancel",
          summary="取消预约（在免费取消截止时间前可自行取消；已取消的再次取消原样返回）",
          body=ReasonIn, body_required=False, response=Booking, auth=True,
          errors={404: _NOT_FOUND, 409: "cancel_deadline_passed；invalid_transition；booking_changed"})
async def cancel_booking(request: web.Request, body: ReasonIn) -> dict[str, Any]:
    openid = await current_resident(request)
    booking = await bookings.transition(request.app[DB], request.match_info["booking_id"], t.CANCELLED,
                                        Actor.resident(openid), policy_of(request), reason=body.reason)
    return bookings.view(booking, reveal=True)


@api.post("/api/v1/bookings/{booking_id}/reschedule", summary="改约到同一机构的其他时段（预约编号和预约码不变）",
          body=RescheduleIn, response=Booking, auth=True,
          errors={400: "same_slot；other_institution；service_not_offered", 404: _NOT_FOUND + "；slot_not_found",
                  409: "slot_full；slot_started；cancel_deadline_passed；invalid_transition；booking_changed；"
                       "already_booked；patient_busy；too_late_to_request"})
async def reschedule_booking(request: web.Request, body: RescheduleIn) -> dict[str, Any]:
    openid = await current_resident(request)
    booking = await bookings.reschedule(request.app[DB], request.match_info["booking_id"], body.slot_id,
                                        Actor.resident(openid), policy_of(request))
    return bookings.view(booking, reveal=True)


@api.get("/api/v1/me/booking-suspensions", summary="我的自助预约暂停（多次未到场），含原因和截止日期",
         response=SuspensionList, auth=True)
async def my_suspensions(request: web.Request) -> dict[str, Any]:
    openid = await current_resident(request)
    found = await bookings.suspensions_for_family(request.app[DB], openid)
    return {"suspensions": [bookings.suspension_view(s) for s in found]}


# --- waitlist ------------------------------------------------------------------------------------

@api.post("/api/v1/waitlist", summary="候补已约满的时段", body=WaitlistIn, response=WaitlistEntry, status=201,
          auth=True, tags=["waitlist"],
          errors={400: "service_not_offered", 404: "slot_not_found",
                  409: "slot_available（仍有名额）；already_waiting；waitlist_closed；slot_started"})
async def join_waitlist(request: web.Request, body: WaitlistIn) -> web.Response:
    openid = await current_resident(request)
    db = request.app[DB]
    entry = await waitlist.join(db, openid, body.slot_id, body.service_id)
    return json_response(waitlist.view(entry, await waitlist.position(db, entry)), status=201)


@api.get("/api/v1/waitlist", summary="我的候补（有名额时状态为 offered，须在 offer_expires_at 前确认）",
         response=WaitlistList, auth=True, tags=["waitlist"])
async def list_waitlist(request: web.Request) -> dict[str, Any]:
    openid = await current_resident(request)
    entries = await waitlist.list_for(request.app[DB], openid)
    return {"entries": [waitlist.view(e, e["position"]) for e in entries]}


@api.post("/api/v1/waitlist/{entry_id}/accept",
          summary="接受候补名额并预约（延时服务填来访人；上门护理填就诊人、地址、首诊评估）",
          body=BookingDetails, body_required=False, response=Booking, status=201, auth=True, tags=["waitlist"],
          errors={**CREATE_ERRORS, 404: "waitlist_not_found：找不到该候补记录；patient_not_found",
                  409: "offer_not_available（已过期或未轮到）；" + CREATE_ERRORS[409]})
async def accept_offer(request: web.Request, body: BookingDetails) -> web.Response:
    """Book with the held seat. The entry id is the idempotency key: accepting twice returns the booking."""
    openid = await current_resident(request)
    db = request.app[DB]
    entry = await waitlist.get(db, openid, request.match_info["entry_id"])
    if entry["status"] == waitlist.ACCEPTED and entry.get("booking_id"):
        booking = await bookings.get(db, entry["booking_id"], Actor.resident(openid))
        return _rendered(booking, created=False)
    booking, created = await bookings.create_booking(
        db, openid, booking_request(body, f"waitlist:{entry['_id']}", slot_id=entry["slot_id"],
                                    service_id=entry["service_id"], waitlist_id=entry["_id"]), policy_of(request))
    return _rendered(booking, created)


@api.post("/api/v1/waitlist/{entry_id}/cancel", summary="退出候补（保留中的名额顺延给下一位）",
          response=WaitlistEntry, auth=True, tags=["waitlist"],
          errors={404: "waitlist_not_found：找不到该候补记录", 409: "waitlist_not_active：候补已结束"})
async def leave_waitlist(request: web.Request) -> dict[str, Any]:
    openid = await current_resident(request)
    entry = await waitlist.leave(request.app[DB], openid, request.match_info["entry_id"], policy_of(request))
    return waitlist.view(entry)
