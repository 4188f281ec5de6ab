"""Resident and staff settlement API: insured identities and their verification, settlements seen
through verified bindings and family grants, the family grants, the access log, and the staff
desk (counter verification, counter grants, settlement lookup).

A resident sees a settlement only through a verified binding of the insured identity whose name
matches, or through an active grant; anything else is 404, so the API does not reveal which
settlements exist. The bind response says nothing about settlements on record."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field

from bot.accounts import staff
from bot.endpoints import Api, Body, Query, QueryInt
from bot.errors import ApiError, bad_request, not_found
from bot.keys import DB, MONGO, SETTINGS
from bot.masking import mask_name
from bot.settlements import access_log, attempts, counter, family, identities, verification
from bot.settlements import store as settlements
from bot.settlements.id_numbers import IdNumber, InvalidIdNumberError, identity_hash, name_hash, parse, valid_name
from bot.settlements.identity_key import require as require_identity_key
from bot.settlements.verification import VERIFICATION_FAILURES, Verification, VerificationRefusedError
from bot.web import json_response
from bot.wechat.api import WECHAT, WeChatError
from handlers.auth import current_resident
from handlers.staff_auth import current_staff

log = logging.getLogger(__name__)

api = Api("settlements")
routes = api.routes

_REFUSAL_STATUS = {verification.DEV_DISABLED: 403, verification.UNAVAILABLE: 503}
_REFUSAL_CODES = "、".join(sorted(verification.MESSAGES))
_BIND_ERRORS = {
    400: "姓名或证件号不正确（invalid_name、invalid_id_number）",
    403: "dev_verifier_disabled：正式环境不接受开发环境核验",
    409: "too_many_identities：绑定人数已达上限；insured_name_mismatch：姓名与结算记录不一致",
    422: f"核验未通过（参保人已保存为未核验，error.details.binding_id）：{_REFUSAL_CODES}",
    429: "too_many_attempts：绑定/核验尝试过于频繁（按账号和按证件号分别计数）",
    503: "identity_key_missing：未配置 IDENTITY_HASH_KEY；face_verify_unavailable：暂时无法向微信查询",
}


# --- models --------------------------------------------------------------------------------------


class BindIn(Body):
    name: str = Field(max_length=60, title="参保人姓名", examples=["张三"])
    id_number: str = Field(max_length=40, title="证件号",
                           description="18 位身份证号码（GB 11643 校验位有效），或以字母开头的 10–30 位医保编号")
    verify_result: str | None = Field(
        None, min_length=1, max_length=1024, title="核验凭据",
        description="wx.startFacialRecognitionVerify 返回的 verify_result（服务端向微信核对）；"
                    "仅开发环境可用 \"dev-verified\"。不提供则保存为未核验，核验前不显示任何结算信息")


class InsuredIdentity(BaseModel):
    id: str
    name: str
    id_kind: Literal["resident_id", "insurance_number"]
    id_number_masked: str = Field(examples=["110105********002X"])
    verified: bool = Field(description="false：未核验，不显示结算、不发送结算通知")
    verification_method: Literal["wechat_face", "counter", "development"] | None
    verified_at: datetime | None
    created_at: datetime


class IdentityList(BaseModel):
    items: list[InsuredIdentity]
    max: int
    how_to_verify: str


class Deleted(BaseModel):
    ok: bool


class CounterCode(BaseModel):
    code: str = Field(description="在服务大厅窗口出示给工作人员的一次性码（8 位数字）")
    expires_at: datetime


class Amounts(BaseModel):
    total: str
    basic_insurance: str
    critical_illness: str
    medical_assistance: str
    other_funds: str
    self_pay: str


class Institution(BaseModel):
    name: str


class Visit(BaseModel):
    type: Literal["inpatient", "outpatient"]
    type_label: str
    admitted_on: str
    discharged_on: str | None = None


class Insured(BaseModel):
    via: Literal["binding", "grant"] = Field(description="binding：本人核验的绑定；grant：亲情授权")
    binding_id: str | None
    grant_id: str | None
    name: str
    id_number_masked: str


class Settlement(BaseModel):
    id: str
    status: str
    status_label: str
    insured: Insured
    institution: Institution
    visit: Visit
    amounts: Amounts
    reason: str | None
    occurred_at: datetime
    updated_at: datetime


class BreakdownItem(BaseModel):
    key: str
    label: str = Field(examples=["基本医保统筹"])
    amount: str


class HistoryItem(BaseModel):
    sequence: int
    status: str
    status_label: str
    occurred_at: datetime
    received_at: datetime
    applied: bool = Field(description="false：迟到事件，仅记入历史")
    reason: str | None


class SettlementDetail(Settlement):
    breakdown: list[BreakdownItem]
    history: list[HistoryItem]


class SettlementList(BaseModel):
    items: list[Settlement]


class ListQuery(Query):
    limit: QueryInt = Field(20, ge=1, le=100, title="limit")


class GrantIn(Body):
    scopes: list[Literal["view", "messages"]] = Field(
        ["view", "messages"], min_length=1, max_length=2, title="授权范围",
        description="view：查看结算记录；messages：接收结算进度通知（须同时有 view）")
    expires_at: AwareDatetime | None = Field(None, title="授权截止时间", description="不填则直到撤销")


class Grant(BaseModel):
    id: str
    insured_name: str
    id_number_masked: str
    scopes: list[str]
    state: Literal["pending", "active", "revoked", "expired"]
    expires_at: datetime | None
    created_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None
    recorded_at_counter: bool
    binding_id: str | None = None
    grantee_accepted: bool | None = None


class GrantInvitation(BaseModel):
    grant: Grant
    invitation_code: str = Field(description="发给家人的授权邀请码（只显示这一次，3 天内有效）")


class AcceptIn(Body):
    code: str = Field(min_length=4, max_length=32, title="授权邀请码")


class GrantLists(BaseModel):
    given: list[Grant] = Field(description="我（作为参保人）授出的")
    received: list[Grant] = Field(description="别人授权给我的")
    max_grantees: int


class AccessLogEntry(BaseModel):
    id: str
    at: datetime
    staff: str
    staff_name: str | None
    role: str
    what: str
    what_label: str
    why: str
    settlement_ids: list[str]


class AccessLog(BaseModel):
    items: list[AccessLogEntry]


class CounterBindIn(Body):
    code: str = Field(min_length=4, max_length=16, title="居民一次性码")
    name: str = Field(max_length=60, title="参保人姓名")
    id_number: str = Field(max_length=40, title="证件号")
    documents: list[str] = Field(min_length=1, max_length=5, title="查验的证件",
                                 examples=[["居民身份证原件"]])
    note: str | None = Field(None, max_length=200, title="备注")


class CounterGrantIn(Body):
    grantee_code: str = Field(min_length=4, max_length=16, title="被授权人一次性码")
    insured_name: str = Field(max_length=60, title="参保人姓名")
    id_number: str = Field(max_length=40, title="参保人证件号")
    scopes: list[Literal["view", "messages"]] = Field(["view", "messages"], min_length=1, max_length=2,
                                                      title="授权范围")
    expires_at: AwareDatetime | None = Field(None, title="授权截止时间")
    proof: list[str] = Field(min_length=1, max_length=5, title="查验的材料",
                             examples=[["参保人身份证原件", "授权委托书"]])
    note: str | None = Field(None, max_length=200, title="备注")


class StaffRevokeIn(Body):
    reason: str = Field(min_length=4, max_length=200, title="撤销原因", examples=["参保人本人到窗口要求撤销"])


class LookupIn(Body):
    settlement_id: str | None = Field(None, min_length=1, max_length=128, title="结算单号")
    id_number: str | None = Field(None, max_length=40, title="证件号")
    reveal: bool = Field(False, title="显示未脱敏信息", description="true 时必须填写 reason，并记入访问日志")
    reason: str | None = Field(None, min_length=4, max_length=200, title="查询原因")


class StaffInsured(BaseModel):
    name_masked: str | None
    id_number_masked: str
    names: list[str] | None = Field(None, description="仅 reveal：已核验绑定/授权中的姓名")
    id_number: str | None = Field(None, description="仅 reveal 且按证件号查询时：所查询的号码")


class StaffSettlement(BaseModel):
    id: str
    status: str
    status_label: str
    insured: StaffInsured
    institution: Institution
    visit: Visit
    amounts: Amounts
    reason: str | None
    occurred_at: datetime
    updated_at: datetime
    breakdown: list[BreakdownItem]
    history: list[HistoryItem]
    masked: bool
    visible_to: dict[str, int] | None = None


class LookupResult(BaseModel):
    items: list[StaffSettlement]


# --- helpers -------------------------------------------------------------------------------------


def _claim(raw_name: str, raw_number: str) -> tuple[str, IdNumber]:
    name = valid_name(raw_name)
    if name is None:
        raise bad_request("invalid_name", "请填写参保人姓名（汉字或字母，最多 30 个字符）", field="name")
    try:
        return name, parse(raw_number)
    except InvalidIdNumberError as exc:
        raise bad_request("invalid_id_number", exc.message, field="id_number") from None


async def _count_attempt(request: web.Request, openid: str, number: IdNumber, key: bytes, *,
                         identity: bool, account: bool = True) -> None:
    """One bind/verify attempt against the account's and/or the identity's limits (shared by instances).

    An attempt that brings a proof (``verify_result``) is counted against the identity only when it
    fails: otherwise anyone could lock the owner out of verifying their own number by spending the
    identity's attempts on unverified binds."""
    account_limit, identity_limit = attempts.bind_limits(request.app[SETTINGS])
    try:
        if account:
            await attempts.hit(request.app[DB], account_limit, openid)
        if identity:
            await attempts.hit(request.app[DB], identity_limit, identity_hash(key, number))
    except attempts.LimitExceededError as exc:
        minutes = max(1, int(exc.retry_after.total_seconds() // 60) + 1)
        raise ApiError(429, "too_many_attempts", f"绑定或核验尝试过于频繁，请 {minutes} 分钟后再试",
                       retry_after_seconds=int(exc.retry_after.total_seconds()) + 1) from None


async def _count_failure(request: web.Request, openid: str, number: IdNumber, key: bytes) -> None:
    """A refused proof counts against the identity (the refusal is still what the caller is told)."""
    try:
        await _count_attempt(request, openid, number, key, identity=True, account=False)
    except ApiError:
        pass


async def _proof(request: web.Request, openid: str, name: str, number: IdNumber,
                 verify_result: str | None) -> Verification | None:
    """The verification a resident's ``verify_result`` proves, None without one; raises a refusal."""
    if verify_result is None:
        return None
    app = request.app
    if verify_result == verification.DEV_VERIFY_RESULT:
        if app[SETTINGS].wechat_configured:
            raise VerificationRefusedError(verification.DEV_DISABLED)
        return Verification(identities.DEVELOPMENT, {"note": "dev-verified（开发环境核验）"})
    verification.require_face_claim(number)
    if await settlements.face_result_used(app[DB], verification.result_hash(verify_result)):
        raise VerificationRefusedError(verification.REPLAYED)
    try:
        answer = await app[WECHAT].face_identify_info(verify_result)
    except WeChatError as exc:
        log.warning("face verification query failed", extra={"errcode": exc.errcode})
        raise verification.refusal_for_wechat_error(exc.errcode, exc.transient) from None
    verification.check_face_result(answer, openid=openid, number=number, name=name, now=datetime.now(UTC),
                                   max_age=timedelta(minutes=app[SETTINGS].face_verify_max_age_minutes))
    return verification.face_verification(verify_result, answer)


def _refused(exc: VerificationRefusedError, method: str, binding: dict[str, Any] | None,
             name: str, number: IdNumber) -> ApiError:
    VERIFICATION_FAILURES.labels(method, exc.code).inc()
    log.warning("insured identity verification refused",
                extra={"code": exc.code, "method": method, "insured_name": mask_name(name), "id_number": number.masked,
                       "binding": str(binding["_id"]) if binding else None})
    details: dict[str, Any] = {"verified": False}
    if binding is not None:
        details["binding_id"] = str(binding["_id"])
    return ApiError(_REFUSAL_STATUS.get(exc.code, 422), exc.code, exc.message, **details)


def _method_of(verify_result: str | None) -> str:
    return identities.DEVELOPMENT if verify_result == verification.DEV_VERIFY_RESULT else identities.FACE


async def _bind(request: web.Request, openid: str, name: str, number: IdNumber,
                verify_result: str | None) -> tuple[dict[str, Any], bool]:
    app = request.app
    key = require_identity_key(app)
    await _count_attempt(request, openid, number, key, identity=verify_result is None)
    client, db = app[MONGO], app[DB]
    existing = await identities.find_binding(db, openid, identity_hash(key, number))
    if existing is not None and existing.get("verified"):
        return existing, False  # verified before: nothing to prove again, nothing asked of WeChat
    try:
        try:
            proof = await _proof(request, openid, name, number, verify_result)
            return await settlements.bind_identity(client, db, key, openid, name, number, proof)
        except VerificationRefusedError as exc:
            await _count_failure(request, openid, number, key)
            binding, _ = await settlements.bind_identity(client, db, key, openid, name, number)  # kept unverified
            raise _refused(exc, _method_of(verify_result), binding, name, number) from None
        except settlements.NameMismatchError:
            await _count_failure(request, openid, number, key)
            VERIFICATION_FAILURES.labels(_method_of(verify_result), "insured_name_mismatch").inc()
            binding, _ = await settlements.bind_identity(client, db, key, openid, name, number)
            raise ApiError(409, "insured_name_mismatch",
                           "核验通过，但结算系统登记的参保人姓名与填写的不一致，请核对姓名或到服务大厅窗口办理",
                           binding_id=str(binding["_id"]), verified=False) from None
    except settlements.TooManyIdentitiesError:
        raise ApiError(409, "too_many_identities",
                       f"每位用户最多绑定 {identities.MAX_PER_RESIDENT} 位参保人，请先删除不再需要的") from None


# --- resident: identities ------------------------------------------------------------------------


@api.post("/api/v1/me/insured-identities", summary="绑定参保人（须核验后才显示结算）", body=BindIn,
          response=InsuredIdentity, status=201, auth=True, errors=_BIND_ERRORS,
          description="证件号与姓名只以加密哈希和掩码形式保存，接口不会返回完整号码，也不透露是否有结算记录。"
                      "带 verify_result 时服务端向微信查询人脸核身结果（identify_ret 为 0、10 分钟内、属于当前账号、"
                      "只能使用一次、姓名与身份证号 MD5 一致）后保存为已核验；不带或核验失败则保存为未核验。"
                      "已绑定过的同一参保人返回 200；对未核验的绑定再次提交并带 verify_result 即完成核验。"
                      "绑定与核验尝试按账号和按证件号限次。")
async def bind_identity(request: web.Request, body: BindIn) -> web.Response:
    openid = await current_resident(request)
    name, number = _claim(body.name, body.id_number)
    binding, created = await _bind(request, openid, name, number, body.verify_result)
    if created:
        log.info("insured identity bound", extra={"binding": str(binding["_id"]), "insured_name": mask_name(name),
                                                  "id_number": number.masked, "verified": binding["verified"]})
    return json_response(identities.binding_view(binding), status=201 if created else 200)


@api.get("/api/v1/me/insured-identities", summary="我绑定的参保人（含核验状态）", response=IdentityList, auth=True)
async def list_identities(request: web.Request) -> dict[str, Any]:
    openid = await current_resident(request)
    bindings = await identities.bindings_of_resident(request.app[DB], openid)
    return {"items": [identities.binding_view(b) for b in bindings], "max": identities.MAX_PER_RESIDENT,
            "how_to_verify": settlements.HOW_TO_VERIFY}


@api.delete("/api/v1/me/insured-identities/{binding_id}", summary="解除绑定（同时结束由它发出的亲情授权）",
            response=Deleted, auth=True, errors={404: "identity_not_found：找不到该参保人"})
async def delete_identity(request: web.Request) -> dict[str, Any]:
    openid = await current_resident(request)
    db = request.app[DB]
    removed = await identities.delete_binding(db, openid, request.match_info["binding_id"])
    if removed is None:
        raise not_found("找不到该参保人", code="identity_not_found")
    revoked = await family.revoke_of_binding(db, removed["_id"], openid)
    await settlements.withdraw_messages(db, "binding_id", [str(removed["_id"])])
    await settlements.withdraw_messages(db, "grant_id", revoked)
    return {"ok": True}


@api.post("/api/v1/me/counter-code", summary="窗口核验用的一次性码（10 分钟内有效，只能用一次）",
          response=CounterCode, status=201, auth=True)
async def counter_code(request: web.Request) -> dict[str, Any]:
    openid = await current_resident(request)
    code, expires_at = await counter.issue(request.app[DB], openid)
    return {"code": code, "expires_at": expires_at}


# --- resident: settlements -----------------------------------------------------------------------


@api.get("/api/v1/settlements", summary="我可查看的结算记录（已核验的参保人与亲情授权，最新在前）",
         query=ListQuery, response=SettlementList, auth=True)
async def list_settlements(request: web.Request, query: ListQuery) -> dict[str, Any]:
    openid = await current_resident(request)
    rows = await settlements.visible_settlements(request.app[DB], openid, query.limit)
    return {"items": [settlements.settlement_view(s, a) for s, a in rows]}


@api.get("/api/v1/settlements/{settlement_id}", summary="结算详情：费用构成与进度历史", response=SettlementDetail,
         auth=True, errors={404: "settlement_not_found：不存在，或不属于我已核验的参保人/亲情授权"})
async def get_settlement(request: web.Request) -> dict[str, Any]:
    openid = await current_resident(request)
    found = await settlements.visible_settlement(request.app[DB], openid, request.match_info["settlement_id"])
    if found is None:
        raise not_found("找不到该结算记录", code="settlement_not_found")
    settlement, access = found
    return settlements.settlement_view(settlement, access, detail=True)


# --- resident: family grants ---------------------------------------------------------------------


def _grant_error(exc: family.GrantError) -> ApiError:
    status = {"too_many_grantees": 409, "identity_not_verified": 409, "invitation_not_found": 404,
              "self_grant": 409}.get(exc.code, 400)
    return ApiError(status, exc.code, exc.message)


_GRANT_ERRORS = {400: "invalid_scopes、invalid_expiry", 404: "identity_not_found",
                 409: "identity_not_verified：参保人未核验；too_many_grantees：授权人数已达上限"}


@api.post("/api/v1/me/insured-identities/{binding_id}/grants", summary="授权家人查看结算（亲情账户，待对方接受）",
          body=GrantIn, response=GrantInvitation, status=201, auth=True, errors=_GRANT_ERRORS)
async def create_grant(request: web.Request, body: GrantIn) -> dict[str, Any]:
    openid = await current_resident(request)
    app = request.app
    binding = await identities.binding_by_id(app[DB], openid, request.match_info["binding_id"])
    if binding is None:
        raise not_found("找不到该参保人", code="identity_not_found")
    try:
        grant, code = await family.invite(app[MONGO], app[DB], binding, list(body.scopes), body.expires_at,
                                          app[SETTINGS].max_grantees_per_identity)
    except family.GrantError as exc:
        raise _grant_error(exc) from None
    return {"grant": family.grant_view(grant, for_owner=True), "invitation_code": code}


@api.post("/api/v1/me/grants/accept", summary="接受家人的授权（输入授权邀请码）", body=AcceptIn, response=Grant,
          auth=True, errors={404: "invitation_not_found：邀请码无效或已过期",
                             409: "self_grant：不能接受自己的授权；too_many_grantees：授权人数已达上限"})
async def accept_grant(request: web.Request, body: AcceptIn) -> dict[str, Any]:
    openid = await current_resident(request)
    app = request.app
    try:
        grant = await family.accept(app[MONGO], app[DB], openid, body.code, app[SETTINGS].max_grantees_per_identity)
    except family.GrantError as exc:
        raise _grant_error(exc) from None
    return family.grant_view(grant, for_owner=False)


@api.get("/api/v1/me/grants", summary="我授出的与收到的亲情授权", response=GrantLists, auth=True)
async def list_grants(request: web.Request) -> dict[str, Any]:
    openid = await current_resident(request)
    db = request.app[DB]
    return {"given": [family.grant_view(g, for_owner=True) for g in await family.given(db, openid)],
            "received": [family.grant_view(g, for_owner=False) for g in await family.received(db, openid)],
            "max_grantees": request.app[SETTINGS].max_grantees_per_identity}


@api.delete("/api/v1/me/grants/{grant_id}", summary="撤销授权（授权人或被授权人均可，立即生效）", response=Grant,
            auth=True, errors={404: "grant_not_found：找不到该授权"})
async def revoke_grant(request: web.Request) -> dict[str, Any]:
    openid = await current_resident(request)
    grant = await family.revoke(request.app[DB], openid, request.match_info["grant_id"])
    if grant is None:
        raise not_found("找不到该授权", code="grant_not_found")
    await settlements.withdraw_messages(request.app[DB], "grant_id", [str(grant["_id"])])
    return family.grant_view(grant, for_owner=grant.get("grantee_openid") != openid)


# --- resident: access log ------------------------------------------------------------------------


@api.get("/api/v1/me/access-log", summary="谁查看过我的个人信息与结算（工作人员访问记录）", query=ListQuery,
         response=AccessLog, auth=True,
         description="列出工作人员对本账号及本账号已核验的参保人的每一次查询与操作：何人、何时、查看了什么、原因。")
async def my_access_log(request: web.Request, query: ListQuery) -> dict[str, Any]:
    openid = await current_resident(request)
    db = request.app[DB]
    hashes = [b["id_hash"] for b in await identities.bindings_of_resident(db, openid) if b.get("verified")]
    entries = await access_log.entries_for(db, openid, hashes, query.limit)
    names = {doc["_id"]: doc.get("name", "") for doc in
             await db[staff.COLLECTION].find({"_id": {"$in": list({e["staff"] for e in entries})}}).to_list()}
    return {"items": [access_log.entry_view(e, names) for e in entries]}


# --- staff desk ----------------------------------------------------------------------------------

_STAFF_ERRORS = {403: "forbidden：仅管理员与服务大厅工作人员", 503: "identity_key_missing"}


@api.post("/api/v1/staff/insured-identities", summary="窗口核验：查验证件后为居民绑定并核验参保人",
          body=CounterBindIn, response=InsuredIdentity, status=201, auth=True,
          errors={**_STAFF_ERRORS, 404: "counter_code_not_found：一次性码无效或已过期",
                  409: "too_many_identities、insured_name_mismatch"},
          description="居民在小程序中出示一次性码（POST /api/v1/me/counter-code），工作人员查验证件后提交；"
                      "记录工作人员与所查验的证件，并写入居民可见的访问日志。")
async def counter_bind(request: web.Request, body: CounterBindIn) -> web.Response:
    member = await current_staff(request, *staff.SETTLEMENT_DESK)
    name, number = _claim(body.name, body.id_number)
    app = request.app
    key = require_identity_key(app)
    openid = await counter.consume(app[DB], body.code)
    if openid is None:
        raise not_found("一次性码无效或已过期，请让居民在小程序中重新获取", code="counter_code_not_found")
    try:
        binding, created = await settlements.bind_at_counter(
            app[MONGO], app[DB], key, openid=openid, name=name, number=number, staff=member.username,
            role=member.role, documents=body.documents, note=body.note)
    except settlements.TooManyIdentitiesError:
        raise ApiError(409, "too_many_identities", "该居民绑定的参保人已达上限") from None
    except settlements.NameMismatchError:
        raise ApiError(409, "insured_name_mismatch", "结算系统登记的参保人姓名与填写的不一致，请核对") from None
    log.info("insured identity verified at the counter",
             extra={"staff": member.username, "binding": str(binding["_id"]), "id_number": number.masked})
    return json_response(identities.binding_view(binding), status=201 if created else 200)


@api.post("/api/v1/staff/grants", summary="窗口登记亲情授权（为不使用智能手机的参保人）", body=CounterGrantIn,
          response=Grant, status=201, auth=True,
          errors={**_STAFF_ERRORS, 400: "invalid_scopes、invalid_expiry、invalid_name、invalid_id_number",
                  404: "counter_code_not_found", 409: "too_many_grantees"},
          description="参保人到场（或持授权委托书），工作人员查验材料；被授权的家人出示一次性码。授权立即生效，"
                      "记录工作人员与所查验的材料。")
async def counter_grant(request: web.Request, body: CounterGrantIn) -> dict[str, Any]:
    member = await current_staff(request, *staff.SETTLEMENT_DESK)
    name, number = _claim(body.insured_name, body.id_number)
    app = request.app
    key = require_identity_key(app)
    grantee = await counter.consume(app[DB], body.grantee_code)
    if grantee is None:
        raise not_found("一次性码无效或已过期，请让家人在小程序中重新获取", code="counter_code_not_found")
    insured = {"id_hash": identity_hash(key, number), "name_hash": name_hash(key, name), "name": name,
               "id_masked": number.masked}
    try:
        grant = await family.record_at_counter(
            app[MONGO], app[DB], insured=insured, grantee=grantee, scopes=list(body.scopes),
            expires_at=body.expires_at, limit=app[SETTINGS].max_grantees_per_identity, staff=member.username,
            proof=body.proof, note=body.note)
    except family.GrantError as exc:
        raise _grant_error(exc) from None
    await access_log.record(app[DB], staff=member.username, role=member.role, what=access_log.COUNTER_GRANT,
                            why="；".join(body.proof), id_hash=insured["id_hash"], openid=grantee,
                            target={"grant_id": str(grant["_id"])})
    return family.grant_view(grant, for_owner=False)


@api.post("/api/v1/staff/grants/{grant_id}/revoke", summary="窗口撤销亲情授权（参保人到窗口要求时）",
          body=StaffRevokeIn, response=Grant, auth=True,
          errors={**_STAFF_ERRORS, 404: "grant_not_found：找不到该授权"})
async def counter_revoke_grant(request: web.Request, body: StaffRevokeIn) -> dict[str, Any]:
    member = await current_staff(request, *staff.SETTLEMENT_DESK)
    db = request.app[DB]
    grant = await family.revoke_by_staff(db, request.match_info["grant_id"], member.username)
    if grant is None:
        raise not_found("找不到该授权", code="grant_not_found")
    await settlements.withdraw_messages(db, "grant_id", [str(grant["_id"])])
    await access_log.record(db, staff=member.username, role=member.role, what=access_log.COUNTER_GRANT_REVOKED,
                            why=body.reason, id_hash=grant["id_hash"], openid=grant.get("grantee_openid"),
                            target={"grant_id": str(grant["_id"])})
    return family.grant_view(grant, for_owner=True)


@api.post("/api/v1/staff/settlements/lookup", summary="工作人员查询结算（按结算单号或证件号，默认脱敏）",
          body=LookupIn, response=LookupResult, auth=True,
          errors={**_STAFF_ERRORS, 400: "lookup_key_required：须且只能提供结算单号或证件号之一；"
                                        "reason_required：显示未脱敏信息须填写原因；invalid_id_number"},
          description="每次查询（包括查无结果）都写入访问日志（何人、何时、查了什么、原因），参保人可在 "
                      "GET /api/v1/me/access-log 中查看。证件号放在请求体中，不出现在网址与访问日志里。")
async def staff_lookup(request: web.Request, body: LookupIn) -> dict[str, Any]:
    member = await current_staff(request, *staff.SETTLEMENT_DESK)
    if (body.settlement_id is None) == (body.id_number is None):
        raise bad_request("lookup_key_required", "请填写结算单号或证件号（二选一）")
    if body.reveal and not body.reason:
        raise bad_request("reason_required", "查看未脱敏信息须填写查询原因（至少 4 个字）", field="reason")
    number = None
    if body.id_number is not None:
        try:
            number = parse(body.id_number)
        except InvalidIdNumberError as exc:
            raise bad_request("invalid_id_number", exc.message, field="id_number") from None
    items = await settlements.lookup_for_staff(
        request.app[DB], require_identity_key(request.app), staff=member.username, role=member.role,
        settlement_id=body.settlement_id, number=number, reveal=body.reveal, reason=body.reason)
    return {"items": items}
