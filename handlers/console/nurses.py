"""Nurses of a nursing institution: list (with the linked staff account and this week's visits),
add, edit, deactivate. Validation is the domain's (``scheduling.nurses.parse_nurse_fields``);
a change regenerates the slots as the JSON API does (the number of nurses is the capacity)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from bot.accounts import staff
from bot.keys import DB, SETTINGS
from handlers.catalogue import NURSE_ROLES
from handlers.console import session as console_session
from handlers.console.base import form_errors, institution_of, page, redirect, render
from handlers.console.session import ConsoleSession
from scheduling import institutions, nurses, slots
from scheduling import transitions as t
from scheduling.booking_base import BOOKINGS
from scheduling.calendar import SHANGHAI, RulesError
from scheduling.catalogue import NURSING_CATEGORIES

routes = web.RouteTableDef()


class NurseForm(BaseModel):
    name: str = Field(min_length=1, max_length=20, title="姓名")
    phone: str = Field(pattern=r"^1[3-9]\d{9}$", title="手机号")
    title: str = Field(title="职称")
    years_of_practice: int = Field(ge=0, le=60, title="临床执业年限")
    skills: list[str] = Field(default_factory=list, title="擅长类别")


def week_of(now: datetime) -> tuple[datetime, datetime]:
    today = now.astimezone(SHANGHAI).date()
    monday = today - timedelta(days=today.weekday())
    start = datetime(monday.year, monday.month, monday.day, tzinfo=SHANGHAI).astimezone(UTC)
    return start, start + timedelta(days=7)


async def _page(request: web.Request, s: ConsoleSession, *, errors: dict[str, str] | None = None,
                values: dict[str, Any] | None = None, editing: str | None = None, status: int = 200) -> web.Response:
    db = request.app[DB]
    institution_id = institution_of(request, s)
    if institution_id is None:
        return await render(request, "pick_institution.html", {
            "title": "选择机构", "institutions": await institutions.list_institutions(db, "nursing"),
            "path": request.path}, s=s, active="nurses")
    show_inactive = request.query.get("inactive") == "1"
    found = [n for n in await nurses.list_nurses(db, institution_id) if show_inactive or n.get("active")]
    accounts = {a["nurse_id"]: a["_id"] async for a in db[staff.COLLECTION].find(
        {"nurse_id": {"$in": [n["_id"] for n in found]}}, {"nurse_id": 1})}
    first, last = week_of(datetime.now(UTC))
    visits: dict[str, list[dict[str, Any]]] = {}
    async for booking in db[BOOKINGS].find(
            {"nurse_id": {"$in": [n["_id"] for n in found]}, "start": {"$gte": first, "$lt": last},
             "status": {"$in": [t.CONFIRMED, t.ON_THE_WAY, t.IN_SERVICE, t.COMPLETED]}},
            {"nurse_id": 1, "start": 1, "service_name": 1, "status": 1}).sort("start", 1):
        visits.setdefault(booking["nurse_id"], []).append(booking)
    reveal = s.member.institution_id == institution_id
    return await render(request, "nurses.html", {
        "title": "护士管理", "nurses": [{**nurses.nurse_view(n, reveal_phone=reveal), "account": accounts.get(n["_id"]),
                                         "visits": visits.get(n["_id"], [])} for n in found],
        "titles": nurses.TITLES, "categories": NURSING_CATEGORIES, "errors": errors or {}, "values": values or {},
        "editing": editing, "show_inactive": show_inactive, "labels": t.STATUS_LABELS,
        "institution_param": "" if s.member.institution_id else institution_id,
    }, s=s, status=status, active="nurses")


@routes.get("/console/nurses")
@page(*NURSE_ROLES)
async def list_nurses(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    return await _page(request, s, editing=request.query.get("edit"))


def _form_values(form: Any) -> dict[str, Any]:
    return {"name": form.get("name", ""), "phone": form.get("phone", ""), "title": form.get("title", ""),
            "years_of_practice": form.get("years_of_practice", ""), "skills": form.getall("skills", [])}


async def _regenerate(request: web.Request, institution_id: str) -> str:
    institution = await institutions.get_institution(request.app[DB], institution_id)
    try:
        await slots.generate_slots(request.app[DB], institution or institution_id,
                                   default_horizon_days=request.app[SETTINGS].booking_horizon_days)
    except (RulesError, LookupError):
        return "（机构日历规则有误，时段未重新生成，请检查日历设置）"
    return ""


async def _save(request: web.Request, s: ConsoleSession, nurse_id: str | None) -> web.StreamResponse:
    form = await request.post()
    institution_id = institution_of(request, s) or str(form.get("institution", ""))
    values = _form_values(form)
    key = nurse_id or "new"
    try:
        parsed = NurseForm.model_validate(values)
        fields = nurses.parse_nurse_fields(parsed.model_dump(), partial=nurse_id is not None)
    except ValidationError as exc:
        return await _page(request, s, errors={key: "；".join(form_errors(exc, NurseForm).values())},
                           values=values, editing=nurse_id, status=400)
    except nurses.NurseFieldError as exc:
        return await _page(request, s, errors={key: str(exc)}, values=values, editing=nurse_id, status=400)
    db = request.app[DB]
    if nurse_id is None:
        nurse = await nurses.create_nurse(db, institution_id, fields)
        note = nurses.qualification_note(nurse["title"], nurse["years_of_practice"])
        message = f"已添加护士 {nurse['name']}（{note}）"
    else:
        nurse = await nurses.update_nurse(db, institution_id, nurse_id, fields)
        if nurse is None:
            return await _page(request, s, errors={key: "该机构没有这名护士"}, status=404)
        message = f"已保存护士 {nurse['name']} 的信息"
    await console_session.flash(request, s, message + await _regenerate(request, institution_id))
    raise redirect("/console/nurses")


@routes.post("/console/nurses")
@page(*NURSE_ROLES)
async def add_nurse(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    return await _save(request, s, None)


@routes.post("/console/nurses/{nurse_id}")
@page(*NURSE_ROLES)
async def edit_nurse(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    return await _save(request, s, request.match_info["nurse_id"])


@routes.post("/console/nurses/{nurse_id}/active")
@page(*NURSE_ROLES)
async def set_active(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    form = await request.post()
    institution_id = institution_of(request, s) or str(form.get("institution", ""))
    active = form.get("active") == "1"
    nurse = await nurses.update_nurse(request.app[DB], institution_id, request.match_info["nurse_id"],
                                      {"active": active})
    if nurse is None:
        await console_session.flash(request, s, "该机构没有这名护士")
    else:
        note = await _regenerate(request, institution_id)
        await console_session.flash(request, s, f"已{'启用' if active else '停用'}护士 {nurse['name']}{note}")
    raise redirect("/console/nurses")
