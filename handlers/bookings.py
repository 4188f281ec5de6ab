"""Resident booking API: book (with an Idempotency-Key), list, read, cancel, reschedule, and the
waitlist of full slots. Every handler parses, calls ``scheduling.bookings``/``waitlist``, renders."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot.errors import bad_request
from bot.keys import DB, SETTINGS
from bot.openapi import BEARER, error_response, json_body, ref
from bot.web import json_response, read_json
from handlers.auth import current_resident
from scheduling import assessment, bookings, waitlist
from scheduling import transitions as t
from scheduling.booking_base import Actor, Policy

routes = web.RouteTableDef()

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, no spaces
ALL_STATUSES = sorted(t.STATUSES[t.CENTRE] | t.STATUSES[t.NURSING])


def policy_of(request: web.Request) -> Policy:
    return Policy.from_settings(request.app[SETTINGS])


async def optional_json(request: web.Request) -> dict[str, Any]:
    """The JSON object of a body that may be left out (actions with an optional reason)."""
    return await read_json(request) if request.can_read_body else {}


def text_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise bad_request("invalid_field", f"请提供有效的 {name}")
    return value.strip()


def _booking_request(body: dict[str, Any], key: str, *, slot_id: str | None = None,
                     service_id: str | None = None, waitlist_id: str | None = None) -> bookings.BookingRequest:
    for name in ("address", "assessment"):
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise bad_request("invalid_field", f"{name} 应为 JSON 对象")
    return bookings.BookingRequest(
        slot_id=slot_id or text_field(body, "slot_id") or "",
        service_id=service_id or text_field(body, "service_id") or "",
        idempotency_key=key,
        patient_id=text_field(body, "patient_id", required=False),
        address=body.get("address"),
        assessment=body.get("assessment"),
        waitlist_id=waitlist_id or text_field(body, "waitlist_id", required=False),
        note=body.get("note"),
        consent_version=body.get("consent_version"),  # issue 16: informed consent version accepted
    )


def _rendered(booking: dict[str, Any], created: bool) -> web.Response:
    view = bookings.view(booking, reveal=True)
    if created:
        return json_response(view, status=201)
    return json_response(view, status=200, headers={"Idempotent-Replayed": "true"})


@routes.post("/api/v1/bookings")
async def create_booking(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise bad_request("idempotency_key_required", "缺少 Idempotency-Key 请求头（每次新的预约使用一个新的唯一值）")
    if not _IDEMPOTENCY_KEY.match(key):
        raise bad_request("invalid_idempotency_key", "Idempotency-Key 应为 1 到 128 个可见 ASCII 字符")
    body = await read_json(request)
    booking, created = await bookings.create_booking(request.app[DB], openid, _booking_request(body, key),
                                                     policy_of(request))
    return _rendered(booking, created)


@routes.get("/api/v1/bookings")
async def list_bookings(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    status = request.query.get("status") or None
    if status is not None and status not in ALL_STATUSES:
        raise bad_request("invalid_status", f"status 应为以下之一：{'、'.join(ALL_STATUSES)}")
    upcoming = request.query.get("upcoming", "").lower() in ("1", "true", "yes")
    now = datetime.now(UTC)
    found = await bookings.list_for_family(request.app[DB], openid, status=status,
                                           upcoming_after=now if upcoming else None)
    return json_response({"bookings": [bookings.view(b, reveal=True, now=now) for b in found]})


@routes.get("/api/v1/bookings/{booking_id}")
async def get_booking(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    db = request.app[DB]
    booking = await bookings.get(db, request.match_info["booking_id"], Actor.resident(openid))
    return json_response(bookings.view(booking, reveal=True, audit_records=await bookings.history(db, booking["_id"])))


@routes.post("/api/v1/bookings/{booking_id}/cancel")
async def cancel_booking(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    body = await optional_json(request)
    booking = await bookings.transition(request.app[DB], request.match_info["booking_id"], t.CANCELLED,
                                        Actor.resident(openid), policy_of(request),
                                        reason=text_field(body, "reason", required=False))
    return json_response(bookings.view(booking, reveal=True))


@routes.post("/api/v1/bookings/{booking_id}/reschedule")
async def reschedule_booking(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    body = await read_json(request)
    booking = await bookings.reschedule(request.app[DB], request.match_info["booking_id"],
                                        text_field(body, "slot_id") or "", Actor.resident(openid), policy_of(request))
    return json_response(bookings.view(booking, reveal=True))


# --- waitlist ----------------------------------------------------------------------------------

@routes.post("/api/v1/waitlist")
async def join_waitlist(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    body = await read_json(request)
    db = request.app[DB]
    entry = await waitlist.join(db, openid, text_field(body, "slot_id") or "", text_field(body, "service_id") or "")
    return json_response(waitlist.view(entry, await waitlist.position(db, entry)), status=201)


@routes.get("/api/v1/waitlist")
async def list_waitlist(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    entries = await waitlist.list_for(request.app[DB], openid)
    return json_response({"entries": [waitlist.view(e, e["position"]) for e in entries]})


@routes.post("/api/v1/waitlist/{entry_id}/accept")
async def accept_offer(request: web.Request) -> web.Response:
    """Book with the held seat. The entry id is the idempotency key: accepting twice returns the booking."""
    openid = await current_resident(request)
    db = request.app[DB]
    entry = await waitlist.get(db, openid, request.match_info["entry_id"])
    body = await optional_json(request)
    booking_request = _booking_request(body, f"waitlist:{entry['_id']}", slot_id=entry["slot_id"],
                                       service_id=entry["service_id"], waitlist_id=entry["_id"])
    if entry["status"] == waitlist.ACCEPTED and entry.get("booking_id"):
        booking = await bookings.get(db, entry["booking_id"], Actor.resident(openid))
        return _rendered(booking, created=False)
    booking, created = await bookings.create_booking(db, openid, booking_request, policy_of(request))
    return _rendered(booking, created)


@routes.post("/api/v1/waitlist/{entry_id}/cancel")
async def leave_waitlist(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    entry = await waitlist.leave(request.app[DB], openid, request.match_info["entry_id"], policy_of(request))
    return json_response(waitlist.view(entry))


# --- OpenAPI -----------------------------------------------------------------------------------

_UNAUTHORIZED = error_response("未登录")
_NOT_FOUND = error_response("找不到该预约（或不属于当前账号）")
_BOOKING_ID = {"name": "booking_id", "in": "path", "required": True, "schema": {"type": "string"}}
_ENTRY_ID = {"name": "entry_id", "in": "path", "required": True, "schema": {"type": "string"}}
_NURSING_FIELDS = {
    "patient_id": {"type": "string", "description": "上门护理必填：本账号的就诊人"},
    "address": {**ref("Address"), "description": "上门地址（不填则用就诊人的地址），须在机构服务范围内"},
    "assessment": assessment.openapi_schema(),
    "note": {"type": "string", "maxLength": 200},
    "consent_version": {"type": "integer", "description": "上门护理：所同意的知情同意书版本（GET /api/v1/consent）"},
}
_LOCAL_TIME = {"type": "string", "format": "date-time", "description": "ISO 8601，+08:00"}

OPENAPI = {
    "paths": {
        "/api/v1/bookings": {
            "post": {
                "summary": "预约（延时服务时段或上门护理申请）",
                "description": "同一 Idempotency-Key 重复提交返回第一次创建的预约"
                               "（200，响应头 Idempotent-Replayed: true），不同内容复用同一 Key 返回 422。"
                               "上门护理需要就诊人、地址和首诊评估，提交后为待审核。",
                "tags": ["bookings"], "security": BEARER,
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": True,
                                "schema": {"type": "string", "maxLength": 128}}],
                "requestBody": json_body({"type": "object", "required": ["slot_id", "service_id"], "properties": {
                    "slot_id": {"type": "string"}, "service_id": {"type": "string"},
                    "waitlist_id": {"type": "string", "description": "使用候补保留的名额预约"}, **_NURSING_FIELDS}}),
                "responses": {
                    "201": json_body(ref("Booking"), "已预约"),
                    "200": json_body(ref("Booking"), "重复请求：返回第一次的预约"),
                    "400": error_response("缺少 Idempotency-Key；service_not_offered；outside_service_area；"
                                          "invalid_assessment；patient_required …"),
                    "401": _UNAUTHORIZED,
                    "404": error_response("slot_not_found；patient_not_found"),
                    "409": error_response("slot_full（该时段已约满）；too_many_active_bookings；slot_started；"
                                          "too_late_to_request；offer_not_available"),
                    "422": error_response("idempotency_key_reused"),
                },
            },
            "get": {
                "summary": "我的预约",
                "tags": ["bookings"], "security": BEARER,
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"type": "string", "enum": ALL_STATUSES}},
                    {"name": "upcoming", "in": "query", "schema": {"type": "boolean"},
                     "description": "只看未开始的有效预约（按时间先后）"}],
                "responses": {"200": json_body({"type": "object", "properties": {
                    "bookings": {"type": "array", "items": ref("Booking")}}}), "400": error_response("参数有误"),
                    "401": _UNAUTHORIZED},
            },
        },
        "/api/v1/bookings/{booking_id}": {
            "get": {"summary": "预约详情（含状态变更记录）", "tags": ["bookings"], "security": BEARER,
                    "parameters": [_BOOKING_ID],
                    "responses": {"200": json_body(ref("Booking")), "401": _UNAUTHORIZED, "404": _NOT_FOUND}},
        },
        "/api/v1/bookings/{booking_id}/cancel": {
            "post": {
                "summary": "取消预约（上门护理在上门前 4 小时之前可自行取消）",
                "tags": ["bookings"], "security": BEARER,
                "parameters": [_BOOKING_ID],
                "requestBody": {"required": False, **json_body({"type": "object", "properties": {
                    "reason": {"type": "string", "maxLength": 200}}})},
                "responses": {"200": json_body(ref("Booking"), "已取消"), "401": _UNAUTHORIZED, "404": _NOT_FOUND,
                              "409": error_response("cancel_deadline_passed；invalid_transition")},
            }
        },
        "/api/v1/bookings/{booking_id}/reschedule": {
            "post": {
                "summary": "改约到同一机构的其他时段（预约编号不变）", "tags": ["bookings"], "security": BEARER,
                "parameters": [_BOOKING_ID],
                "requestBody": json_body({"type": "object", "required": ["slot_id"],
                                          "properties": {"slot_id": {"type": "string"}}}),
                "responses": {"200": json_body(ref("Booking"), "已改约"), "400": error_response("same_slot 等"),
                              "401": _UNAUTHORIZED, "404": _NOT_FOUND,
                              "409": error_response("slot_full；cancel_deadline_passed；invalid_transition")},
            }
        },
        "/api/v1/waitlist": {
            "post": {
                "summary": "候补已约满的时段", "tags": ["waitlist"], "security": BEARER,
                "requestBody": json_body({"type": "object", "required": ["slot_id", "service_id"], "properties": {
                    "slot_id": {"type": "string"}, "service_id": {"type": "string"}}}),
                "responses": {"201": json_body(ref("WaitlistEntry"), "已加入候补"), "401": _UNAUTHORIZED,
                              "404": error_response("slot_not_found"),
                              "409": error_response("slot_available（仍有名额）；already_waiting；waitlist_closed")},
            },
            "get": {
                "summary": "我的候补（有名额时状态为 offered，须在 offer_expires_at 前确认）", "tags": ["waitlist"],
                "security": BEARER,
                "responses": {"200": json_body({"type": "object", "properties": {
                    "entries": {"type": "array", "items": ref("WaitlistEntry")}}}), "401": _UNAUTHORIZED},
            },
        },
        "/api/v1/waitlist/{entry_id}/accept": {
            "post": {
                "summary": "接受候补名额并预约（上门护理需填就诊人、地址、首诊评估）", "tags": ["waitlist"],
                "security": BEARER, "parameters": [_ENTRY_ID],
                "requestBody": {"required": False, **json_body({"type": "object", "properties": _NURSING_FIELDS})},
                "responses": {"201": json_body(ref("Booking"), "已预约"),
                              "200": json_body(ref("Booking"), "此前已接受"),
                              "401": _UNAUTHORIZED, "404": error_response("找不到该候补记录"),
                              "409": error_response("offer_not_available（已过期或未轮到）")},
            }
        },
        "/api/v1/waitlist/{entry_id}/cancel": {
            "post": {
                "summary": "退出候补（保留中的名额顺延给下一位）", "tags": ["waitlist"], "security": BEARER,
                "parameters": [_ENTRY_ID],
                "responses": {"200": json_body(ref("WaitlistEntry")), "401": _UNAUTHORIZED,
                              "404": error_response("找不到该候补记录"), "409": error_response("候补已结束")},
            }
        },
    },
    "schemas": {
        "Booking": {
            "type": "object",
            "properties": {
                "id": {"type": "string"}, "kind": {"type": "string", "enum": list(t.KINDS)},
                "status": {"type": "string", "enum": ALL_STATUSES}, "status_label": {"type": "string"},
                "status_reason": {"type": "string", "nullable": True},
                "institution_id": {"type": "string"}, "institution_name": {"type": "string"},
                "service_id": {"type": "string"}, "service_name": {"type": "string"}, "slot_id": {"type": "string"},
                "date": {"type": "string", "format": "date"}, "start": _LOCAL_TIME, "end": _LOCAL_TIME,
                "patient": {**ref("BookingPatient"), "nullable": True}, "address": {**ref("Address"), "nullable": True},
                "assessment": {"type": "object", "nullable": True},
                "nurse": {"type": "object", "nullable": True, "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"}, "title": {"type": "string"}}},
                "cancel_deadline": {**_LOCAL_TIME, "nullable": True},
                "review_deadline": {**_LOCAL_TIME, "nullable": True},
                "can_cancel": {"type": "boolean"},
                "next_statuses": {"type": "array", "items": {"type": "string"}},
                "history": {"type": "array", "items": {"type": "object", "properties": {
                    "at": {"type": "string", "format": "date-time"}, "action": {"type": "string"},
                    "from": {"type": "string", "nullable": True}, "to": {"type": "string", "nullable": True},
                    "reason": {"type": "string", "nullable": True}, "actor": {"type": "object"}}}},
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
            },
        },
        "WaitlistEntry": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "status": {"type": "string", "enum": [waitlist.WAITING, waitlist.OFFERED, waitlist.ACCEPTED,
                                                      waitlist.LAPSED, waitlist.EXPIRED, waitlist.CANCELLED]},
                "status_label": {"type": "string"}, "slot_id": {"type": "string"},
                "service_id": {"type": "string"}, "institution_id": {"type": "string"},
                "service_name": {"type": "string"}, "institution_name": {"type": "string"},
                "start": _LOCAL_TIME, "end": _LOCAL_TIME,
                "position": {"type": "integer", "nullable": True, "description": "排队位置（1 为下一位）"},
                "offer_expires_at": {**_LOCAL_TIME, "nullable": True},
                "booking_id": {"type": "string", "nullable": True},
                "created_at": {"type": "string", "format": "date-time"},
            },
        },
    },
}
