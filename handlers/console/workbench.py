"""The clinic's workbench: nursing requests awaiting review (nearest review deadline first, with a
countdown), confirm with a qualified free nurse, reject with a reason; today's visits live."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from bot.endpoints import QueryInt
from bot.errors import ApiError
from bot.keys import DB
from bot.masking import mask_name, mask_phone
from handlers.bookings import policy_of
from handlers.console import queries
from handlers.console import session as console_session
from handlers.console.access import REASONS, note_personal_data_access
from handlers.console.base import ADMIN, CLINIC, CLINIC_ROLES, NURSE, institution_of, page, parse_form, redirect, render
from handlers.console.session import ConsoleSession
from scheduling import assessment, bookings, catalogue, institutions
from scheduling import transitions as t
from scheduling.booking_base import Actor
from scheduling.slots import today_local

routes = web.RouteTableDef()

REJECT_PRESETS = ("不在本院上门服务范围内", "病情不适合居家护理，建议到院就诊", "该时段护士已排满，请改约其他时间",
                  "首诊评估信息不全，请补充后重新申请", "需先到院完成首诊评估")


class WorkbenchQuery(BaseModel):
    service: str | None = Field(None, max_length=80)
    page: QueryInt = Field(1, ge=1, le=1000)


def patient_for(booking: dict[str, Any], revealed: bool) -> dict[str, Any]:
    """What the page shows of the patient: masked unless opened with a stated reason."""
    patient = booking.get("patient") or {}
    address = booking.get("address") or {}
    if revealed:
        return {"name": patient.get("name"), "phone": patient.get("phone"), "gender": patient.get("gender"),
                "age": patient.get("age"), "conditions": patient.get("conditions") or [],
                "address": " ".join(filter(None, (address.get("district"), address.get("street"),
                                                  address.get("detail")))), "masked": False}
    return {"name": mask_name(patient.get("name")), "phone": mask_phone(patient.get("phone")),
            "gender": patient.get("gender"), "age": patient.get("age"), "conditions": patient.get("conditions") or [],
            "address": " ".join(filter(None, (address.get("district"), address.get("street")))) + "（详细地址已隐藏）",
            "masked": True}


def assessment_rows(booking: dict[str, Any]) -> list[tuple[str, str]]:
    answers = booking.get("assessment") or {}
    rows = []
    for question in assessment.QUESTIONS:
        value = answers.get(question.field)
        if value is None or value == "":
            continue
        rows.append((question.label, ("是" if value else "否") if isinstance(value, bool) else str(value)))
    return rows


async def _workbench(request: web.Request, s: ConsoleSession, *, errors: dict[str, str] | None = None,
                     status: int = 200) -> web.Response:
    db = request.app[DB]
    institution_id = institution_of(request, s)
    if institution_id is None:
        choices = await institutions.list_institutions(db, "nursing")
        return await render(request, "pick_institution.html", {"title": "选择机构", "institutions": choices,
                                                                "path": request.path}, s=s, active="workbench")
    query = WorkbenchQuery.model_validate(dict(request.query)) if not errors else WorkbenchQuery()
    page_number = query.page
    now = datetime.now(UTC)
    today = today_local(now).isoformat()
    nurse_only = s.member.nurse_id if s.member.role == NURSE else None
    pending, total = ([], 0)
    choices: dict[str, list] = {}
    if s.member.role != NURSE:
        pending, total = await queries.pending_requests(db, institution_id, service_id=query.service,
                                                        skip=(page_number - 1) * queries.PAGE_SIZE)
        choices = await queries.nurse_choices(db, institution_id, pending)
    visits = await queries.visits_of_day(db, institution_id, today, nurse_only)
    services = [sv for sv in await catalogue.services_of(db, institution_id) if sv.get("kind") == t.NURSING]
    items = [{"booking": b, "patient": patient_for(b, console_session.revealed(s, b["_id"])),
              "assessment": assessment_rows(b), "nurses": choices.get(b["_id"], [])} for b in pending]
    pages = max(1, -(-total // queries.PAGE_SIZE))
    return await render(request, "workbench.html", {
        "title": "护理工作台", "items": items, "total": total, "page": page_number, "pages": pages,
        "visits": visits, "services": services, "service": query.service or "", "presets": REJECT_PRESETS,
        "reveal_reasons": REASONS, "errors": errors or {}, "labels": t.STATUS_LABELS, "now": now,
        "can_review": s.member.role in CLINIC_ROLES, "institution_query": _institution_query(request, s),
    }, s=s, status=status, active="workbench")


def _institution_query(request: web.Request, s: ConsoleSession) -> str:
    return "" if s.member.institution_id else f"institution={request.query.get('institution', '')}"


@routes.get("/console/workbench")
@page(ADMIN, CLINIC, NURSE)
async def workbench(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    return await _workbench(request, s)


class ConfirmForm(BaseModel):
    nurse_id: str = Field(min_length=1, max_length=80, title="护士")


class RejectForm(BaseModel):
    preset: str = Field("", max_length=80, title="拒绝原因")
    detail: str = Field("", max_length=150, title="补充说明")


class RevealForm(BaseModel):
    reason: str = Field(min_length=2, max_length=200, title="查看原因")
    next: str = Field("/console/workbench", max_length=300)


def _back(request: web.Request, form: Any) -> str:
    target = str(form.get("next", "")) if form is not None else ""
    return target if target.startswith("/console/") and not target.startswith("//") else "/console/workbench"


async def _act(request: web.Request, s: ConsoleSession, target: str, *, reason: str | None = None,
               nurse_id: str | None = None) -> dict[str, Any]:
    booking_id = request.match_info["booking_id"]
    return await bookings.transition(request.app[DB], booking_id, target, Actor.staff(s.member), policy_of(request),
                                     reason=reason, nurse_id=nurse_id, now=datetime.now(UTC))


@routes.post("/console/bookings/{booking_id}/confirm")
@page(*CLINIC_ROLES)
async def confirm(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    form = await request.post()
    key = f"confirm-{request.match_info['booking_id']}"
    parsed, _problems = parse_form(ConfirmForm, form)
    if parsed is None:
        return await _workbench(request, s, errors={key: "请选择要指派的护士"}, status=400)
    try:
        booking = await _act(request, s, t.CONFIRMED, nurse_id=parsed.nurse_id)
    except ApiError as exc:
        if exc.status in (403, 404):
            raise
        return await _workbench(request, s, errors={key: exc.message}, status=exc.status)
    nurse = booking["nurse"]["name"]
    await console_session.flash(request, s, f"已确认 {booking['service_name']}（护士 {nurse}），已通知家属")
    raise redirect(_back(request, form))


@routes.post("/console/bookings/{booking_id}/reject")
@page(*CLINIC_ROLES)
async def reject(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    form = await request.post()
    key = f"reject-{request.match_info['booking_id']}"
    parsed, _ = parse_form(RejectForm, form)
    reason = "：".join(part for part in ((parsed.preset, parsed.detail.strip()) if parsed else ()) if part)
    if not reason:
        return await _workbench(request, s, errors={key: "请选择或填写拒绝原因（会发送给家属）"}, status=400)
    try:
        await _act(request, s, t.REJECTED, reason=reason)
    except ApiError as exc:
        if exc.status in (403, 404):
            raise
        return await _workbench(request, s, errors={key: exc.message}, status=exc.status)
    await console_session.flash(request, s, "已拒绝该申请，已将原因通知家属")
    raise redirect(_back(request, form))


@routes.post("/console/bookings/{booking_id}/reveal")
@page(ADMIN, CLINIC, NURSE, "centre_staff")
async def reveal(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    form = await request.post()
    booking = await bookings.get(request.app[DB], request.match_info["booking_id"], Actor.staff(s.member))
    parsed, _problems = parse_form(RevealForm, form)
    if parsed is None:
        await console_session.flash(request, s, "请先选择或填写查看原因")
        raise redirect(_back(request, form))
    await note_personal_data_access(request.app[DB], s.member, booking, parsed.reason)
    await console_session.add_reveal(request, s, booking["_id"])
    raise redirect(_back(request, form))
