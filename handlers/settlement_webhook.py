"""The settlement system's webhook: signed status events of hospital / insurance settlements.

Order of checks: the feature is configured (503), the signature and timestamp (401), the JSON
event (400 naming the field at fault), then ``bot.settlements.store.ingest`` (409 for a contradiction).
Nothing is written before every check passed. The body is never logged (it holds an ID number).
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from bot.errors import ApiError, bad_request
from bot.keys import DB, MONGO, SETTINGS
from bot.openapi import error_response, json_body, ref
from bot.settlements import store as settlements
from bot.settlements.identity_key import require as require_identity_key
from bot.settlements.rules import AMOUNT_KEYS, STATUS_LABELS, EventInvalidError, TransitionRefusedError, parse_event
from bot.signatures import SignatureRejectedError, verify
from bot.web import json_response

routes = web.RouteTableDef()

PATH = "/api/v1/integrations/settlements/events"


@routes.post(PATH)
async def settlement_event(request: web.Request) -> web.Response:
    secret = request.app[SETTINGS].settlement_webhook_secret
    if not secret:
        raise ApiError(503, "settlement_webhook_disabled",
                       "结算通知接口未启用：服务端尚未配置 SETTLEMENT_WEBHOOK_SECRET")
    raw = await request.read()
    try:
        verify(secret, request.headers.get("X-Timestamp"), request.headers.get("X-Signature"), raw, time.time())
    except SignatureRejectedError as exc:
        raise ApiError(401, exc.code, exc.message) from None
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad_request("invalid_json", "请求内容不是有效的 UTF-8 JSON") from None
    if not isinstance(body, dict):
        raise bad_request("invalid_json", "请求内容必须是 JSON 对象")
    try:
        event = parse_event(body)
    except EventInvalidError as exc:
        raise bad_request("invalid_event", f"字段 {exc.field} 无效：{exc.message}", field=exc.field) from None
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
    return json_response({"result": outcome.result, "settlement_id": outcome.settlement_id,
                          "status": outcome.status, "notified": outcome.notified})


_STRING = {"type": "string"}
_AMOUNT = {"type": "string", "pattern": r"^\d{1,10}(\.\d{1,2})?$", "example": "1234.56"}

OPENAPI = {
    "paths": {
        PATH: {
            "post": {
                "summary": "结算系统推送结算状态事件（HMAC-SHA256 签名）",
                "description": (
                    "签名：X-Signature = hex(HMAC-SHA256(SETTLEMENT_WEBHOOK_SECRET, "
                    "X-Timestamp + \".\" + 原始请求体))，"
                    "小写十六进制；X-Timestamp 为 Unix 秒，与服务器时间相差不得超过 5 分钟。"
                    "同一 event_id 重复推送只确认不重复处理（result=duplicate）；sequence 不大于当前值的事件只记入历史"
                    "（result=late）。状态流转：submitted→reviewing→approved→paid，reviewing→needs_materials→reviewing，"
                    "reviewing→rejected（需 reason），settled 为出院一站式直接结算。各项金额之和必须等于 total。"
                ),
                "tags": ["settlements"],
                "parameters": [
                    {"name": "X-Timestamp", "in": "header", "required": True, "schema": _STRING},
                    {"name": "X-Signature", "in": "header", "required": True, "schema": _STRING},
                ],
                "requestBody": json_body(ref("SettlementEvent")),
                "responses": {
                    "200": json_body(ref("SettlementEventResult"), "已接收（applied / late / duplicate）"),
                    "400": error_response("事件不合法；error.details.field 指出出错字段"),
                    "401": error_response("签名错误、缺少签名或时间戳过期"),
                    "409": error_response("状态不可能从当前状态变为该状态，或结算单号属于另一参保人"),
                    "503": error_response("未配置 SETTLEMENT_WEBHOOK_SECRET（接口未启用）或 IDENTITY_HASH_KEY"),
                },
            }
        }
    },
    "schemas": {
        "SettlementEvent": {
            "type": "object",
            "required": ["event_id", "settlement_id", "sequence", "status", "occurred_at", "insured_id_number",
                         "institution", "visit", "amounts"],
            "properties": {
                "event_id": _STRING,
                "settlement_id": _STRING,
                "sequence": {"type": "integer", "minimum": 0},
                "status": {"type": "string", "enum": list(STATUS_LABELS)},
                "occurred_at": {"type": "string", "format": "date-time"},
                "insured_id_number": {"type": "string",
                                      "description": "18 位身份证号码（校验位有效），或以字母开头的 10–30 位医保编号"},
                "institution": {"type": "object", "required": ["name"], "properties": {"name": _STRING}},
                "visit": {"type": "object", "required": ["type", "admitted_on"], "properties": {
                    "type": {"type": "string", "enum": ["inpatient", "outpatient"]},
                    "admitted_on": {"type": "string", "format": "date"},
                    "discharged_on": {"type": "string", "format": "date", "nullable": True}}},
                "amounts": {"type": "object", "required": list(AMOUNT_KEYS),
                            "properties": {key: _AMOUNT for key in AMOUNT_KEYS}},
                "reason": {"type": "string", "description": "rejected / needs_materials 时必填"},
            },
        },
        "SettlementEventResult": {
            "type": "object",
            "properties": {"result": {"type": "string", "enum": ["applied", "late", "duplicate"]},
                           "settlement_id": _STRING, "status": {"type": "string", "nullable": True},
                           "notified": {"type": "integer"}},
        },
    },
}
