"""Staff booking API: the institution's bookings, the actions of the transition table (confirm with
a nurse, reject, check in, start the trip, start the service, complete, no-show, cancel), check-in
by booking code, reassigning the nurse, booking on a resident's behalf, no-show suspensions, and
who the signed-in staff member is (``/staff/me``: for a nurse account, which nurse). Every endpoint
checks the role and the booking's institution on the server; a nurse sees and moves only the visits
assigned to her."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from bot.accounts import staff
from bot.endpoints import Api, Body, Query
from bot.keys import DB
from bot.web import json_response
from handlers.bookings import (
    CREATE_ERRORS,
    Booking,
    BookingDetails,
    Status,
    booking_request,
    idempotency_key,
    policy_of,
)
from handlers.staff_auth import current_staff, require_institution
from scheduling import bookings, nurses, patients
from scheduling import transitions as t
from scheduling.booking_base import Actor

api = Api("staff-bookings")
routes = api.routes

ALL_ROLES = staff.ROLES
_DESK = (staff.ADMIN, staff.CENTRE_STAFF)
_CLINIC = (staff.ADMIN, staff.CLINIC_STAFF)
_CLINIC_AND_NURSE = (staff.ADMIN, staff.CLINIC_STAFF, staff.NURSE)
_COMMON = {403: "forbidden：角色不符、不是本机构的预约，或护士操作非本人的上门服务",
           404: "booking_not_found：找不到该预约"}


# --- who am I ------------------------------------------------------------------------------------

class NurseLink(BaseModel):
    id: str
    name: str
    title: str
    qualified: bool


class StaffMe(BaseModel):
    username: str
    name: str
    role: Literal["admin", "centre_staff", "clinic_staff", "nurse"]
    institution_id: str | None
    nurse: NurseLink | None = Field(description="护士账号对应的护士；其他角色为 null")


async def staff_identity(db: Any, member: staff.StaffMember) -> dict[str, Any]:
    """The account as the API shows it; a nurse account names its nurse record."""
    nurse = None
    if member.nurse_id:
        record = await db[nurses.COLLECTION].find_one({"_id": member.nurse_id})
        if record is not None:
            nurse = {"id": record["_id"], "name": record.get("name", ""), "title": record.get("title", ""),
                     "qualified": bool(record.get("qualified"))}
    return {"username": member.username, "name": member.name, "role": member.role,
            "institution_id": member.institution_id, "nurse": nurse}


@api.get("/api/v1/staff/me", summary="当前工作人员（护士账号显示对应的护士）", response=StaffMe, auth=True,
         tags=["staff"])
async def me(request: web.Request) -> dict[str, Any]:
    member = await current_staff(request)
    return await staff_identity(request.app[DB], member)


# --- lists and details ---------------------------------------------------------------------------

class StaffBookingsQuery(Query):
    status: Status | None = Field(None, description="按状态筛选")  # type: ignore[valid-type]
    date: dt.date | None = Field(None, description="预约日期（北京时间，YYYY-MM-DD）")
    institution_id: str | None = Field(None, description="仅不绑定机构的管理员可指定其他机构")


class StaffBookingList(BaseModel):
    bookings: list[Booking]


def _view(booking: dict[str, Any], member: staff.StaffMember, audit_records: list | None = None) -> dict[str, Any]:
    # Contact details are whole only for staff of the institution handling the booking; an admin
    # of every institution sees them masked.
    reveal = member.institution_id == booking["institution_id"]
    return bookings.view(booking, reveal=reveal, audit_records=audit_records, show_actor_ids=True)


async def _booking_for(request: web.Request, member: staff.StaffMember) -> dict[str, Any]:
    """The booking if this member may see it (``bookings.get`` checks institution and nurse: 404/403)."""
    return await bookings.get(request.app[DB], request.match_info["booking_id"], Actor.staff(member))


@api.get("/api/v1/staff/bookings", summary="本机构的预约（护士只看到分配给自己的上门服务）", query=StaffBookingsQuery,
         response=StaffBookingList, auth=True, errors={403: _COMMON[403]})
async def list_bookings(request: web.Request, query: StaffBookingsQuery) -> dict[str, Any]:
    member = await current_staff(request, *ALL_ROLES)
    institution_id = query.institution_id or member.institution_id
    if institution_id is not None:
        require_institution(member, institution_id)
    found = await bookings.list_for_staff(request.app[DB], Actor.staff(member), institution_id=institution_id,
                                          status=query.status, date=query.date.isoformat() if query.date else None)
    return {"bookings": [_view(b, member) for b in found]}


@api.get("/api/v1/staff/bookings/{booking_id}", summary="预约详情（含完整审计记录）", response=Booking, auth=True,
         errors=_COMMON)
async def get_booking(request: web.Request) -> dict[str, Any]:
    member = await current_staff(request, *ALL_ROLES)
    booking = await _booking_for(request, member)
    return _view(booking, member, await bookings.history(request.app[DB], booking["_id"]))


# --- book on a resident's behalf -----------------------------------------------------------------

class StaffBookingIn(BookingDetails):
    slot_id: str = Field(min_length=1, max_length=200, title="时段")
    service_id: str = Field(min_length=1, max_length=200, title="服务项目")
    channel: Literal["phone", "walk_in", "assisted"] = Field(
        title="预约渠道", description="phone 电话预约；walk_in 现场；assisted 帮办代办")


@api.post("/api/v1/staff/bookings", summary="工作人员代为预约（电话、现场、帮办代办）", body=StaffBookingIn,
          response=Booking, status=201, auth=True,
          description="请求头 Idempotency-Key 必填（同一工作人员的同一 Key 重复提交返回第一次的预约）。"
                      "给出 patient_id（某个家庭账号的就诊人）时预约记在该家庭名下，家属在「我的预约」中可见；"
                      "只给来访人时为无账号的来访人预约。预约标明经办工作人员和渠道；不受家庭预约数上限和未到场暂停限制。",
          errors={**CREATE_ERRORS, 403: "forbidden：角色不符或不是本机构的时段"})
async def book_on_behalf(request: web.Request, body: StaffBookingIn) -> web.Response:
    member = await current_staff(request, staff.ADMIN, staff.CENTRE_STAFF, staff.CLINIC_STAFF)
    key = f"staff:{member.username}:{idempotency_key(request)}"
    db = request.app[DB]
    openid = None
    if body.patient_id:
        patient = await patients.find_by_id(db, body.patient_id)
        if patient is None:
            raise patients.PATIENT_NOT_FOUND
        openid = patient["openid"]
    booking, created = await bookings.create_booking(
        db, openid, booking_request(body, key, slot_id=body.slot_id, service_id=body.service_id,
                                    channel=body.channel), policy_of(request), staff=Actor.staff(member))
    view = _view(booking, member)
    if created:
        return json_response(view, status=201)
    return json_response(view, status=200, headers={"Idempotent-Replayed": "true"})


# --- check-in by code ----------------------------------------------------------------------------

class CheckInIn(Body):
    code: str = Field(min_length=1, max_length=20, title="预约码", description="6 位预约码（手输或扫码），不区分大小写")


@api.post("/api/v1/staff/bookings/check-in", summary="凭预约码签到（手输或扫码）", body=CheckInIn, response=Booking,
          auth=True,
          description="签到时间窗：默认时段开始前 30 分钟至时段结束（机构可设置 booking_rules）。"
                      "同一预约码同时扫两次只签到一次。",
          errors={403: "forbidden；code_other_institution：不是本机构的预约码",
                  400: "code_not_for_check_in：上门护理无需签到",
                  404: "code_not_found：预约码无效",
                  409: "code_used：已签到过；code_not_valid：预约已取消或已结束；code_expired：已过签到时间；"
                       "check_in_too_early：还未到签到时间；check_in_too_late"})
async def check_in_by_code(request: web.Request, body: CheckInIn) -> dict[str, Any]:
    member = await current_staff(request, *_DESK)
    booking = await bookings.check_in_by_code(request.app[DB], body.code, Actor.staff(member), policy_of(request),
                                              now=datetime.now(UTC))
    return _view(booking, member)


# --- reassign ------------------------------------------------------------------------------------

class ReassignIn(Body):
    nurse_id: str = Field(min_length=1, max_length=64, title="新护士")
    reason: str | None = Field(None, max_length=200, title="原因")


@api.post("/api/v1/staff/bookings/{booking_id}/reassign", summary="改派护士（已确认、尚未出发的上门服务）",
          body=ReassignIn, response=Booking, auth=True,
          description="数据库重新核对新护士的资质和时间（不与其已有上门服务重叠），释放原护士的时间，并通知家属。",
          errors={**_COMMON, 400: "nurse_not_found；same_nurse",
                  409: "invalid_transition；nurse_busy；nurse_inactive；nurse_not_qualified；nurse_lacks_skill；"
                       "booking_changed"})
async def reassign(request: web.Request, body: ReassignIn) -> dict[str, Any]:
    member = await current_staff(request, *_CLINIC)
    booking = await bookings.reassign(request.app[DB], request.match_info["booking_id"], body.nurse_id,
                                      Actor.staff(member), reason=body.reason)
    return _view(booking, member)


# --- no-show suspensions -------------------------------------------------------------------------

class SuspensionsQuery(Query):
    institution_id: str | None = Field(None, description="仅不绑定机构的管理员可指定其他机构")


class StaffSuspension(BaseModel):
    id: str
    openid: str
    institution_id: str
    institution_name: str
    reason: str
    no_shows: int | None
    since: datetime
    until: datetime
    message: str


class StaffSuspensionList(BaseModel):
    suspensions: list[StaffSuspension]


class LiftIn(Body):
    reason: str = Field(min_length=1, max_length=200, title="解除原因")


def _suspension(document: dict[str, Any]) -> dict[str, Any]:
    return {**bookings.suspension_view(document), "openid": document["openid"]}


@api.get("/api/v1/staff/booking-suspensions", summary="因多次未到场暂停自助预约的家庭", query=SuspensionsQuery,
         response=StaffSuspensionList, auth=True, errors={403: _COMMON[403]})
async def list_suspensions(request: web.Request, query: SuspensionsQuery) -> dict[str, Any]:
    member = await current_staff(request, staff.ADMIN, staff.CENTRE_STAFF, staff.CLINIC_STAFF)
    institution_id = query.institution_id or member.institution_id
    if institution_id is not None:
        require_institution(member, institution_id)
    found = await bookings.suspensions_for_staff(request.app[DB], institution_id)
    return {"suspensions": [_suspension(s) for s in found]}


@api.post("/api/v1/staff/booking-suspensions/{suspension_id}/lift", summary="解除自助预约暂停（须填写原因，记入审计）",
          body=LiftIn, response=StaffSuspension, auth=True,
          errors={403: _COMMON[403], 404: "suspension_not_found", 400: "reason_required",
                  409: "suspension_not_active：已解除或已到期"})
async def lift_suspension(request: web.Request, body: LiftIn) -> dict[str, Any]:
    member = await current_staff(request, staff.ADMIN, staff.CENTRE_STAFF, staff.CLINIC_STAFF)
    lifted = await bookings.lift_suspension(request.app[DB], request.match_info["suspension_id"],
                                            Actor.staff(member), body.reason)
    return _suspension(lifted)


# --- the actions of the transition table ---------------------------------------------------------

class ActionIn(Body):
    reason: str | None = Field(None, max_length=200, title="原因")


class ConfirmIn(Body):
    nurse_id: str = Field(min_length=1, max_length=64, title="护士")


class ReasonRequiredIn(Body):
    """A reason is required: without one the answer is 400 ``reason_required``."""

    reason: str | None = Field(None, max_length=200, title="原因（必填）")


_TIME_ERRORS = ("trip_too_early（最早上门前 2 小时出发，可按机构设置）；complete_too_early（上门时间开始前不能完成）；"
                "check_in_too_early；check_in_too_late")
_ACTION_409 = ("invalid_transition（含顺序提示：先出发再开始服务、先开始服务再完成）；booking_changed；"
               "visit_not_started；" + _TIME_ERRORS)

# path, target status, roles, summary, body model, body required, extra errors
ACTIONS: tuple[tuple[str, str, tuple[str, ...], str, type[Body], bool, dict[int, str]], ...] = (
    ("confirm", t.CONFIRMED, _CLINIC, "确认上门护理申请并指派有资质的护士（重新核对名额和护士时间），生成预约码",
     ConfirmIn, True,
     {400: "nurse_required；nurse_not_found",
      409: "nurse_busy；nurse_inactive；nurse_not_qualified；nurse_lacks_skill；slot_over_capacity；"
           "review_deadline_passed；" + _ACTION_409}),
    ("reject", t.REJECTED, _CLINIC, "拒绝上门护理申请（须填写原因）", ReasonRequiredIn, False,
     {400: "reason_required", 409: _ACTION_409}),
    ("check-in", t.CHECKED_IN, _DESK, "延时服务签到（按预约编号；凭预约码签到见 /staff/bookings/check-in）",
     ActionIn, False, {409: _ACTION_409}),
    ("start-trip", t.ON_THE_WAY, _CLINIC_AND_NURSE, "护士出发（最早上门前 2 小时）", ActionIn, False,
     {409: _ACTION_409}),
    ("start-service", t.IN_SERVICE, _CLINIC_AND_NURSE, "开始上门服务（须先出发）", ActionIn, False, {409: _ACTION_409}),
    ("complete", t.COMPLETED, (*_DESK, *_CLINIC_AND_NURSE), "办结 / 完成服务（上门服务须已开始且到了上门时间）",
     ActionIn, False, {409: _ACTION_409}),
    ("no-show", t.NO_SHOW, (*_DESK, *_CLINIC_AND_NURSE),
     "标记未到场（预约时间开始后；累计未到场达到机构规定次数将暂停该家庭的自助预约）", ActionIn, False,
     {409: _ACTION_409}),
    ("cancel", t.CANCELLED, (staff.ADMIN, staff.CENTRE_STAFF, staff.CLINIC_STAFF),
     "工作人员取消预约（须填写原因，截止时间后也可取消；已取消的再次取消原样返回）", ReasonRequiredIn, False,
     {400: "reason_required", 409: _ACTION_409}),
)


def _action(path: str, target: str, roles: tuple[str, ...], summary: str, model: type[Body], required: bool,
            errors: dict[int, str]) -> None:
    async def handler(request: web.Request, body: Body) -> dict[str, Any]:
        member = await current_staff(request, *roles)
        booking = await _booking_for(request, member)
        updated = await bookings.transition(
            request.app[DB], booking["_id"], target, Actor.staff(member), policy_of(request),
            reason=getattr(body, "reason", None), nurse_id=getattr(body, "nurse_id", None), now=datetime.now(UTC),
        )
        return _view(updated, member)

    handler.__name__ = f"staff_{target}"
    api.post(f"/api/v1/staff/bookings/{{booking_id}}/{path}", summary=summary, body=model, body_required=required,
             response=Booking, auth=True, description=f"角色：{'、'.join(dict.fromkeys(roles))}",
             errors={**_COMMON, **errors})(handler)


for _path, _target, _roles, _summary, _model, _required, _errors in ACTIONS:
    _action(_path, _target, tuple(dict.fromkeys(_roles)), _summary, _model, _required, _errors)
