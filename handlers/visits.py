"""Home visits (issue 16), HTTP edges only.

- The nurse's phone (``/api/v1/nurse/visits/{booking_id}/…``): arrive, identity check, location
  pings, one-key alarm, photos, the service record. Only the assigned nurse's own staff account
  (role ``nurse`` linked to the booking's nurse) is accepted; the domain checks it.
- The family (``/api/v1/bookings/{booking_id}/…``): the consent it accepted, the visit's steps and
  the service record with its photos, and the confirmation or dispute of the visit.
- Staff (``/api/v1/staff/…``): consent texts, the visit page's data, alarms (banner, acknowledge,
  resolve), the duty roster, nurse credentials and staff alerts — JSON for the console.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bot.accounts import staff
from bot.endpoints import Api, Body, Query
from bot.errors import ApiError
from bot.keys import DB, SETTINGS
from bot.notify import alarms as alarm_delivery
from bot.web import json_response
from bot.wechat.api import WECHAT
from handlers.auth import current_resident
from handlers.bookings import policy_of
from handlers.patients import GeoPoint
from handlers.staff_auth import current_staff, institution_scope, require_institution
from scheduling import alarms, consent, credentials, service_records, visits
from scheduling.booking_base import BOOKINGS
from scheduling.calendar import SHANGHAI

api = Api("home-visits")
routes = api.routes

_CLINIC = (staff.ADMIN, staff.CLINIC_STAFF)
_NURSE_ERRORS = {403: "不是被指派的护士本人账号", 404: "找不到该上门服务", 409: "当前状态不允许此操作"}


class Loose(BaseModel):
    """Responses: the documented fields, plus whatever the domain adds."""

    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------- consent


class ConsentQuery(Query):
    institution_id: str = Field(min_length=1, max_length=64, title="机构编号")
    service_id: str = Field(min_length=1, max_length=64, title="服务项目编号")


class ConsentFees(BaseModel):
    service_fee: str
    visit_fee: str
    total: str
    summary: str
    refund_rule: str


class ConsentText(BaseModel):
    """预约上门护理前须阅读并同意的知情同意书；预约时请在请求中带上 consent_version"""

    id: str
    institution_id: str
    scope: str
    version: int
    title: str
    risks: list[str]
    nurse_will: list[str]
    nurse_will_not: list[str]
    notes: str
    fees: ConsentFees
    published_at: datetime
    service_id: str
    service_name: str


class NewConsent(Body):
    institution_id: str | None = Field(None, max_length=64, title="机构编号", description="不填则为本人所属机构")
    scope: str = Field(min_length=3, max_length=100, title="适用范围",
                       description="service:<服务项目编号> 或 category:<服务类别>")
    title: str | None = Field(None, max_length=50, title="标题")
    risks: list[str] = Field(min_length=1, max_length=30, title="风险告知")
    nurse_will: list[str] = Field(min_length=1, max_length=30, title="护士将提供的服务")
    nurse_will_not: list[str] = Field(min_length=1, max_length=30, title="护士不提供的服务")
    notes: str | None = Field(None, max_length=1000, title="其他说明")


class PublishedConsent(Loose):
    id: str
    scope: str
    version: int
    published_at: datetime
    published_by: str


@api.get("/api/v1/consent", summary="上门护理知情同意书（当前版本，含费用：项目费 + 出诊费及退费规则）",
         query=ConsentQuery, response=ConsentText, errors={404: "该服务项目暂无知情同意书"})
async def current_consent(request: web.Request, query: ConsentQuery) -> web.Response:
    return json_response(await consent.current_for(request.app[DB], query.institution_id, query.service_id))


@api.post("/api/v1/staff/consent", summary="发布知情同意书新版本（只适用于此后的新预约）", body=NewConsent,
          response=PublishedConsent, status=201, auth=True, errors={403: "仅限本机构的护理管理人员"})
async def publish_consent(request: web.Request, body: NewConsent) -> web.Response:
    member = await current_staff(request, *_CLINIC)
    institution_id = body.institution_id or member.institution_id
    if institution_id is None:
        raise ApiError(400, "institution_required", "请指定机构（institution_id）")
    require_institution(member, institution_id)
    texts = body.model_dump(exclude={"institution_id", "scope"})
    published = await consent.publish(request.app[DB], institution_id, body.scope, texts,
                                      published_by=member.username)
    return json_response(published, status=201)


class BookingConsent(Loose):
    """预约时所同意的知情同意书版本、时间和同意人；机构未发布知情同意书时为 null"""

    consent: dict[str, Any] | None
    text: dict[str, Any] | None


@api.get("/api/v1/bookings/{booking_id}/consent", summary="该预约所同意的知情同意书", response=BookingConsent,
         auth=True, errors={404: "找不到该预约"})
async def booking_consent(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    db = request.app[DB]
    booking = await db[BOOKINGS].find_one({"_id": request.match_info["booking_id"], "openid": openid})
    if booking is None:
        raise ApiError(404, "booking_not_found", "找不到该预约")
    accepted = booking.get("consent")
    text = await db[consent.COLLECTION].find_one({"_id": accepted["text_id"]}) if accepted else None
    return json_response({"consent": accepted, "text": text and {k: text[k] for k in (
        "version", "title", "risks", "nurse_will", "nurse_will_not", "notes", "published_at")}})


# ---------------------------------------------------------------- the nurse's phone


class StartTripIn(Body):
    location: GeoPoint = Field(title="当前位置", description="wx.getLocation（type: gcj02）")
    accuracy: float | None = Field(None, ge=0, le=100000, title="定位精度（米）")


class ArriveIn(Body):
    location: GeoPoint = Field(title="当前位置", description="wx.getLocation（type: gcj02）")
    accuracy: float | None = Field(None, ge=0, le=100000, title="定位精度（米）")
    reason: str | None = Field(None, max_length=200, title="说明", description="不在服务地址附近时必填")


class VisitOut(Loose):
    arrival: dict[str, Any] | None
    identity: dict[str, Any] | None
    last_location: dict[str, Any] | None


def _location(point: GeoPoint, accuracy: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = point.model_dump()
    if accuracy is not None:
        out["accuracy"] = accuracy
    return out


@api.post("/api/v1/nurse/visits/{booking_id}/start-trip", summary="护士出发（记录出发时间和位置；此后出诊费不予退还）",
          body=StartTripIn, response=VisitOut, auth=True, errors=_NURSE_ERRORS)
async def start_trip(request: web.Request, body: StartTripIn) -> web.Response:
    member = await current_staff(request, staff.NURSE)
    visit = await visits.start_trip(request.app[DB], member, request.match_info["booking_id"],
                                    _location(body.location, body.accuracy), policy_of(request))
    return json_response(visits.visit_view(visit, for_staff=True))


@api.post("/api/v1/nurse/visits/{booking_id}/arrive", summary="护士到达（核对定位；超出范围须说明原因）", body=ArriveIn,
          response=VisitOut, auth=True, errors=_NURSE_ERRORS)
async def arrive(request: web.Request, body: ArriveIn) -> web.Response:
    member = await current_staff(request, staff.NURSE)
    visit = await visits.arrive(request.app[DB], member, request.match_info["booking_id"],
                                _location(body.location, body.accuracy),
                                radius_m=request.app[SETTINGS].visit_arrival_radius_m, reason=body.reason)
    return json_response(visits.visit_view(visit, for_staff=True))


class IdentityIn(Body):
    method: Literal["id_last4", "name_age"] = Field(title="核对方式")
    id_last4: str | None = Field(None, min_length=4, max_length=4, title="身份证后四位")
    name: str | None = Field(None, max_length=30, title="姓名")
    age: int | None = Field(None, ge=0, le=150, title="年龄")


@api.post("/api/v1/nurse/visits/{booking_id}/identity", summary="核对患者身份（身份证后四位，或姓名和年龄）",
          body=IdentityIn, response=VisitOut, auth=True, errors=_NURSE_ERRORS)
async def identity(request: web.Request, body: IdentityIn) -> web.Response:
    member = await current_staff(request, staff.NURSE)
    visit = await visits.check_identity(request.app[DB], member, request.match_info["booking_id"], body.method,
                                        id_last4=body.id_last4, name=body.name, age=body.age)
    return json_response(visits.visit_view(visit, for_staff=True))


class PingIn(Body):
    location: GeoPoint = Field(title="当前位置")
    accuracy: float | None = Field(None, ge=0, le=100000, title="定位精度（米）")


class PingOut(BaseModel):
    ok: bool
    expires_at: datetime


@api.post("/api/v1/nurse/visits/{booking_id}/pings", summary="服务中定时上报位置（保存期满后自动删除）", body=PingIn,
          response=PingOut, status=201, auth=True, errors=_NURSE_ERRORS)
async def ping(request: web.Request, body: PingIn) -> web.Response:
    member = await current_staff(request, staff.NURSE)
    stored = await visits.ping(request.app[DB], member, request.match_info["booking_id"],
                               _location(body.location, body.accuracy),
                               retention=timedelta(days=request.app[SETTINGS].visit_ping_retention_days))
    return json_response({"ok": True, "expires_at": stored["expires_at"]}, status=201)


class AlarmIn(Body):
    location: GeoPoint | None = Field(None, title="当前位置", description="不填则用最近一次上报的位置")
    note: str | None = Field(None, max_length=200, title="说明")


class AlarmOut(Loose):
    id: str
    booking_id: str
    status: str
    status_label: str
    level: int
    raised_at: datetime


@api.post("/api/v1/nurse/visits/{booking_id}/alarm", summary="一键报警（立即通知本机构值班人员，未响应则逐级上报）",
          body=AlarmIn, response=AlarmOut, status=201, auth=True, body_required=False, errors=_NURSE_ERRORS)
async def raise_alarm(request: web.Request, body: AlarmIn) -> web.Response:
    member = await current_staff(request, staff.NURSE)
    db = request.app[DB]
    alarm = await alarm_delivery.raise_alarm(
        db, request.app[WECHAT], member, request.match_info["booking_id"],
        location=_location(body.location) if body.location else None, note=body.note,
        escalation=timedelta(minutes=request.app[SETTINGS].alarm_escalation_minutes))
    return json_response(alarms.alarm_view(alarm, await alarms.deliveries(db, alarm["_id"])), status=201)


class PhotoOut(BaseModel):
    id: str
    content_type: str
    size: int


@api.post("/api/v1/nurse/visits/{booking_id}/photos",
          summary="上传服务照片（请求体为图片本身：JPEG/PNG/WebP，不超过 1 MB）", response=PhotoOut, status=201,
          auth=True, errors={**_NURSE_ERRORS, 413: "照片过大", 415: "照片格式不支持"})
async def upload_photo(request: web.Request) -> web.Response:
    member = await current_staff(request, staff.NURSE)
    data = await request.read()
    photo = await service_records.upload_photo(request.app[DB], member, request.match_info["booking_id"], data,
                                               request.headers.get("Content-Type"))
    return json_response(photo, status=201)


class Material(Body):
    name: str = Field(min_length=1, max_length=50, title="耗材名称")
    quantity: float = Field(1, gt=0, le=1000, title="数量")
    unit: str = Field("", max_length=10, title="单位")


class RecordIn(Body):
    items: list[str] = Field(min_length=1, max_length=30, title="已完成的护理项目")
    materials: list[Material] = Field(default_factory=list, max_length=30, title="耗材")
    vitals: dict[str, float | dict[str, Any]] = Field(
        default_factory=dict, title="生命体征",
        description="temperature ℃ 34–42.5；pulse 次/分 30–220；respiration 次/分 5–60；systolic/diastolic mmHg；"
                    "spo2 % 50–100；glucose mmol/L 1–33.3。数值，或 {value, unit}")
    observations: str = Field("", max_length=1000, title="观察情况")
    advice: str = Field("", max_length=1000, title="护理建议")
    photo_ids: list[str] = Field(default_factory=list, max_length=9, title="照片编号")


class RecordOut(Loose):
    booking_id: str
    items: list[str]
    created_at: datetime
    corrections: list[dict[str, Any]]
    family_response: dict[str, Any] | None


@api.post("/api/v1/nurse/visits/{booking_id}/record", summary="提交护理记录并完成服务（提交后只读，只能追加更正）",
          body=RecordIn, response=RecordOut, status=201, auth=True, errors=_NURSE_ERRORS)
async def submit_record(request: web.Request, body: RecordIn) -> web.Response:
    member = await current_staff(request, staff.NURSE)
    record = await service_records.submit(request.app[DB], member, request.match_info["booking_id"],
                                          body.model_dump(), policy_of(request))
    return json_response(service_records.record_view(record), status=201)


class CorrectionIn(Body):
    note: str = Field(min_length=1, max_length=500, title="更正说明")


@api.post("/api/v1/staff/visits/{booking_id}/corrections", summary="追加护理记录的更正说明（原记录不变）",
          body=CorrectionIn, response=RecordOut, status=201, auth=True, errors=_NURSE_ERRORS)
async def add_correction(request: web.Request, body: CorrectionIn) -> web.Response:
    member = await current_staff(request, staff.NURSE, *_CLINIC)
    record = await service_records.correct(request.app[DB], member, request.match_info["booking_id"], body.note)
    return json_response(service_records.record_view(record), status=201)


# ---------------------------------------------------------------- the family


class FamilyVisit(Loose):
    visit: dict[str, Any]
    record: dict[str, Any] | None


async def _record_or_none(db: Any, booking_id: str, **who: Any) -> dict[str, Any] | None:
    try:
        return service_records.record_view(await service_records.get_record(db, booking_id, **who))
    except ApiError as exc:
        if exc.code == "record_not_found":
            return None
        raise


@api.get("/api/v1/bookings/{booking_id}/visit", summary="上门服务进展与护理记录（家属）", response=FamilyVisit,
         auth=True, errors={404: "找不到该上门服务"})
async def family_visit(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    db = request.app[DB]
    booking_id = request.match_info["booking_id"]
    record = await _record_or_none(db, booking_id, openid=openid)
    return json_response({"visit": visits.visit_view(await visits.get_visit(db, booking_id), for_staff=False),
                          "record": record})


class ConfirmIn(Body):
    confirmed: bool = Field(title="确认服务已完成", description="false 表示有异议，须填写原因")
    reason: str | None = Field(None, max_length=500, title="异议原因")


@api.post("/api/v1/bookings/{booking_id}/visit/confirm", summary="家属确认上门服务已完成，或提出异议（只能一次）",
          body=ConfirmIn, response=RecordOut, auth=True, errors={404: "找不到该上门服务或护理记录",
                                                                  409: "已确认或已提出异议"})
async def confirm_visit(request: web.Request, body: ConfirmIn) -> web.Response:
    openid = await current_resident(request)
    record = await service_records.respond(request.app[DB], openid, request.match_info["booking_id"],
                                           confirmed=body.confirmed, reason=body.reason)
    return json_response(service_records.record_view(record))


_PHOTO_HEADERS = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}


@api.get("/api/v1/bookings/{booking_id}/visit/photos/{photo_id}", summary="服务照片（仅家属本人）", auth=True,
         errors={404: "找不到该照片"})
async def family_photo(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    data, content_type = await service_records.read_photo(request.app[DB], request.match_info["booking_id"],
                                                          request.match_info["photo_id"], openid=openid)
    return web.Response(body=data, content_type=content_type, headers=_PHOTO_HEADERS)


# ---------------------------------------------------------------- staff: the visit page, alarms, roster


class StaffVisit(Loose):
    visit: dict[str, Any]
    record: dict[str, Any] | None
    pings: list[dict[str, Any]]
    trail: list[dict[str, Any]]
    alarms: list[dict[str, Any]]


@api.get("/api/v1/staff/visits/{booking_id}", summary="上门服务全程记录（到达、身份核对、轨迹、报警、护理记录）",
         response=StaffVisit, auth=True, errors={403: "不是本机构的上门服务", 404: "找不到该上门服务"})
async def staff_visit(request: web.Request) -> web.Response:
    member = await current_staff(request, staff.NURSE, *_CLINIC)
    db = request.app[DB]
    booking_id = request.match_info["booking_id"]
    record = await _record_or_none(db, booking_id, member=member)  # checks the institution and the nurse
    raised = await db[alarms.ALARMS].find({"booking_id": booking_id}).sort("raised_at", 1).to_list(None)
    trail = await visits.trail(db, booking_id)
    return json_response({
        "visit": visits.visit_view(await visits.get_visit(db, booking_id), for_staff=True), "record": record,
        "pings": [{"at": p["at"], **p["location"]} for p in await visits.pings(db, booking_id)],
        "trail": [{"at": r["at"], "action": r["action"], "actor": r["actor"], "details": r["details"]} for r in trail],
        "alarms": [alarms.alarm_view(a) for a in raised]})


@api.get("/api/v1/staff/visits/{booking_id}/photos/{photo_id}", summary="服务照片（本机构工作人员）", auth=True,
         errors={403: "不是本机构的上门服务", 404: "找不到该照片"})
async def staff_photo(request: web.Request) -> web.Response:
    member = await current_staff(request, staff.NURSE, *_CLINIC)
    data, content_type = await service_records.read_photo(request.app[DB], request.match_info["booking_id"],
                                                          request.match_info["photo_id"], member=member)
    return web.Response(body=data, content_type=content_type, headers=_PHOTO_HEADERS)


class AlarmQuery(Query):
    status: Literal["open", "acknowledged", "resolved"] | None = Field(None, title="状态")
    institution_id: str | None = Field(None, max_length=64, title="机构编号")


class AlarmList(BaseModel):
    alarms: list[dict[str, Any]]
    open: int


@api.get("/api/v1/staff/alarms", summary="报警列表（工作台报警横幅用 status=open）", query=AlarmQuery,
         response=AlarmList, auth=True)
async def list_alarms(request: web.Request, query: AlarmQuery) -> web.Response:
    member = await current_staff(request, *_CLINIC)
    db = request.app[DB]
    institution_id = institution_scope(member, query.institution_id)
    found = await alarms.list_alarms(db, institution_id, status=query.status)
    open_count = await db[alarms.ALARMS].count_documents(
        {"status": alarms.OPEN, **({"institution_id": institution_id} if institution_id else {})})
    return json_response({"alarms": [alarms.alarm_view(a, await alarms.deliveries(db, a["_id"])) for a in found],
                          "open": open_count})


class AckIn(Body):
    note: str | None = Field(None, max_length=200, title="说明")


class ResolveIn(Body):
    resolution: str = Field(min_length=1, max_length=500, title="处置结果")


@api.post("/api/v1/staff/alarms/{alarm_id}/acknowledge", summary="响应报警（停止逐级上报）", body=AckIn,
          response=AlarmOut, auth=True, body_required=False, errors={404: "找不到该报警", 409: "已被响应或已处置"})
async def acknowledge_alarm(request: web.Request, body: AckIn) -> web.Response:
    member = await current_staff(request, *_CLINIC)
    alarm = await alarms.acknowledge(request.app[DB], member, request.match_info["alarm_id"], note=body.note)
    return json_response(alarms.alarm_view(alarm))


@api.post("/api/v1/staff/alarms/{alarm_id}/resolve", summary="记录报警处置结果", body=ResolveIn, response=AlarmOut,
          auth=True, errors={404: "找不到该报警", 409: "已处置"})
async def resolve_alarm(request: web.Request, body: ResolveIn) -> web.Response:
    member = await current_staff(request, *_CLINIC)
    alarm = await alarms.resolve(request.app[DB], member, request.match_info["alarm_id"], resolution=body.resolution)
    return json_response(alarms.alarm_view(alarm))


class RosterEntryIn(Body):
    institution_id: str | None = Field(None, max_length=64, title="机构编号")
    openid: str = Field(min_length=1, max_length=64, title="接收报警的微信 openid")
    on_duty: bool = Field(title="是否值班")
    level: int = Field(0, ge=0, le=5, title="上报级别", description="0 为值班人员；1 起为逐级上报对象（如医院保卫科）")
    name: str = Field("", max_length=30, title="名称")
    phone: str = Field("", max_length=20, title="电话")


class Roster(BaseModel):
    entries: list[dict[str, Any]]


@api.put("/api/v1/staff/duty-roster/{contact}", summary="设置报警值班表中的一项（工作人员账号或值班岗位）",
         body=RosterEntryIn, response=Loose, auth=True)
async def put_roster_entry(request: web.Request, body: RosterEntryIn) -> web.Response:
    member = await current_staff(request, *_CLINIC)
    institution_id = institution_scope(member, body.institution_id)
    if institution_id is None:
        raise ApiError(400, "institution_required", "请指定机构（institution_id）")
    entry = await alarms.set_roster_entry(request.app[DB], institution_id, request.match_info["contact"],
                                          openid=body.openid, on_duty=body.on_duty, level=body.level, name=body.name,
                                          phone=body.phone)
    return json_response(entry)


@api.get("/api/v1/staff/duty-roster", summary="报警值班表", response=Roster, auth=True)
async def get_roster(request: web.Request) -> web.Response:
    member = await current_staff(request, *_CLINIC)
    institution_id = institution_scope(member, request.query.get("institution_id"))
    if institution_id is None:
        raise ApiError(400, "institution_required", "请指定机构（institution_id）")
    return json_response({"entries": await alarms.roster(request.app[DB], institution_id)})


# ---------------------------------------------------------------- staff: credentials and alerts


class InsuranceIn(Body):
    insurer: str = Field(min_length=1, max_length=50, title="承保公司")
    policy_number: str = Field(min_length=1, max_length=50, title="保单号")
    valid_until: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", title="保险有效期至")


class CredentialsIn(Body):
    licence_number: str = Field(min_length=1, max_length=30, title="执业证书编号")
    licence_valid_until: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", title="执业证书有效期至")
    title: str = Field(title="职称")
    years_of_practice: int = Field(ge=0, le=60, title="执业年限")
    insurance: InsuranceIn = Field(title="执业责任保险")


class CredentialsOut(Loose):
    nurse_id: str
    licence_number: str
    licence_valid_until: str
    insurance: dict[str, Any]
    problems: list[str]


@api.put("/api/v1/staff/nurses/{nurse_id}/credentials", summary="登记护士执业证书、职称和执业责任保险",
         body=CredentialsIn, response=CredentialsOut, auth=True, errors={404: "找不到该护士"})
async def put_credentials(request: web.Request, body: CredentialsIn) -> web.Response:
    member = await current_staff(request, *_CLINIC)
    db = request.app[DB]
    nurse = await db["nurses"].find_one({"_id": request.match_info["nurse_id"]})
    if nurse is None:
        raise ApiError(404, "nurse_not_found", "找不到该护士")
    require_institution(member, nurse["institution_id"])
    stored = await credentials.put(db, nurse["institution_id"], nurse["_id"], credentials.parse(body.model_dump()),
                                   by=member.username)
    return json_response(credentials.view(stored, datetime.now(SHANGHAI).date()))


@api.get("/api/v1/staff/nurses/{nurse_id}/credentials", summary="护士执业证书与保险（含到期提示）",
         response=CredentialsOut, auth=True, errors={404: "尚未登记"})
async def get_credentials(request: web.Request) -> web.Response:
    member = await current_staff(request, *_CLINIC)
    found = await credentials.get(request.app[DB], request.match_info["nurse_id"])
    if found is None:
        raise ApiError(404, "credentials_not_found", "该护士尚未登记执业证书和保险")
    require_institution(member, found["institution_id"])
    return json_response(credentials.view(found, datetime.now(UTC).astimezone(SHANGHAI).date()))


class AlertList(BaseModel):
    alerts: list[dict[str, Any]]


@api.get("/api/v1/staff/alerts", summary="工作人员提醒（如护士证书或保险 30 天内到期）", response=AlertList, auth=True)
async def staff_alerts(request: web.Request) -> web.Response:
    member = await current_staff(request, *_CLINIC)
    institution_id = institution_scope(member, request.query.get("institution_id"))
    return json_response({"alerts": await credentials.alerts(request.app[DB], institution_id)})
