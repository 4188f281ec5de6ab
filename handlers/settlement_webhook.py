"""The settlement system's webhook: signed status events of hospital / insurance settlements.

Order of checks: the feature is configured (503), the signature and timestamp (401), the JSON
event (400 naming the field at fault: ``bot.settlements.rules.SettlementEventIn``, which also
documents the body), then ``bot.settlements.store.ingest`` (409 for a contradiction).
Nothing is written before every check passed. The body is never logged (it holds an ID number).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from bot.endpoints import Api, parse_body, schema_ref
from bot.errors import ApiError
from bot.keys import DB, MONGO, SETTINGS
from bot.settlements import store as settlements
from bot.settlements.identity_key import require as require_identity_key
from bot.settlements.rules import STATUS_LABELS, SettlementEventIn, TransitionRefusedError
from bot.signatures import SignatureRejectedError, verify

PATH = "/api/v1/integrations/settlements/events"


class SignedApi(Api):
    """The body is validated only after the signature (the declaration documents it; see ``settlement_event``)."""

    def openapi(self) -> dict[str, Any]:
        document = super().openapi()
        operation = document["paths"][PATH]["post"]
        operation["parameters"] = [{"name": header, "in": "header", "required": True, "schema": {"type": "string"}}
                                   for header in ("X-Timestamp", "X-Signature")]
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": schema_ref(SettlementEventIn, document["schemas"])}}}
        operation["responses"].setdefault("400", {"description": "事件不合法（invalid_event，error.details.field 指出"
                                                                 "出错字段）或不是 JSON（invalid_json）",
                                                  "content": {"application/json": {
                                                      "schema": {"$ref": "#/components/schemas/Error"}}}})
        return document


api = SignedApi("settlements")
routes = api.routes


class SettlementEventResult(BaseModel):
    result: Literal["applied", "late", "duplicate"]
    settlement_id: str
    status: str | None
    notified: int


_DESCRIPTION = (
    "签名：X-Signature = hex(HMAC-SHA256(SETTLEMENT_WEBHOOK_SECRET, X-Timestamp + \".\" + 原始请求体))，"
    "小写十六进制；X-Timestamp 为 Unix 秒，与服务器时间相差不得超过 5 分钟。先验签，后校验请求体。"
    "同一 event_id 重复推送只确认不重复处理（result=duplicate）；sequence 不大于当前值的事件只记入历史"
    "（result=late）。状态流转：submitted→reviewing→approved→paid，reviewing→needs_materials→reviewing，"
    "reviewing→rejected（需 reason），settled 为出院一站式直接结算。各项金额之和必须等于 total。"
    "insured_id_number 与 insured_name 只以加密哈希与掩码形式保存；只有核验通过、姓名一致的绑定与亲情授权会收到通知"
    "（notified）。occurred_at 须在 2000 年之后且不晚于当前时间一天。"
)


@api.post(PATH, summary="结算系统推送结算状态事件（HMAC-SHA256 签名）", response=SettlementEventResult,
          description=_DESCRIPTION,
          errors={400: "事件不合法；error.details.field 指出出错字段",
                  401: "签名错误、缺少签名或时间戳过期（signature_invalid、signature_missing、timestamp_stale）",
                  409: "状态不可能从当前状态变为该状态（invalid_status_transition），"
                       "或结算单号属于另一参保人（settlement_identity_mismatch）",
                  503: "未配置 SETTLEMENT_WEBHOOK_SECRET（settlement_webhook_disabled）或 IDENTITY_HASH_KEY"})
async def settlement_event(request: web.Request) -> dict[str, Any]:
    secret = request.app[SETTINGS].settlement_webhook_secret
    if not secret:
        raise ApiError(503, "settlement_webhook_disabled",
                       "结算通知接口未启用：服务端尚未配置 SETTLEMENT_WEBHOOK_SECRET")
    raw = await request.read()
    try:
        verify(secret, request.headers.get("X-Timestamp"), request.headers.get("X-Signature"), raw, time.time())
    except SignatureRejectedError as exc:
        raise ApiError(401, exc.code, exc.message) from None
    event = (await parse_body(request, SettlementEventIn, code="invalid_event")).to_event()
    app = request.app
    try:
        outcome = await settlements.ingest(app[MONGO], app[DB], require_identity_key(app), event)
    except TransitionRefusedError as exc:
        raise ApiError(
            409, "invalid_status_transition",
            f"结算单当前状态为「{STATUS_LABELS[exc.current]}」，不能变为「{STATUS_LABELS[exc.requested]}」",
            field="status", current=exc.current, requested=exc.requested,
        ) from None
    except settlements.IdentityMismatchError:
        raise ApiError(409, "settlement_identity_mismatch", "该结算单号已属于另一位参保人",
                       field="insured_id_number") from None
    return {"result": outcome.result, "settlement_id": outcome.settlement_id,
            "status": outcome.status, "notified": outcome.notified}
