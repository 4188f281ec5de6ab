"""Resident settlement API: bind insured identities (self and family), list and read the
settlements of the identities one bound. A resident sees a settlement only through a binding;
anything else is 404, so the API does not reveal which settlements exist."""

from __future__ import annotations

import logging

from aiohttp import web

from bot.errors import ApiError, bad_request, not_found
from bot.keys import DB, MONGO
from bot.masking import mask_name
from bot.openapi import BEARER, error_response, json_body, ref
from bot.settlements import identities
from bot.settlements import store as settlements
from bot.settlements.id_numbers import InvalidIdNumberError, parse
from bot.settlements.identity_key import require as require_identity_key
from bot.web import json_response, query_int, read_json
from handlers.auth import current_resident

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


def limit_of(request: web.Request) -> int:
    """The ``limit`` query parameter of the resident lists (settlements, inbox): 1–100, default 20."""
    return query_int(request, "limit", 20, 1, 100, code="invalid_limit")


@routes.post("/api/v1/me/insured-identities")
async def bind_identity(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    body = await read_json(request)
    name = identities.valid_name(body.get("name"))
    if name is None:
        raise bad_request("invalid_name", "请填写参保人姓名（汉字或字母，最多 30 个字符）")
    try:
        number = parse(body.get("id_number"))
    except InvalidIdNumberError as exc:
        raise bad_request("invalid_id_number", exc.message) from None
    app = request.app
    try:
        binding, created, notified = await settlements.bind_identity(
            app[MONGO], app[DB], require_identity_key(app), openid, name, number)
    except settlements.TooManyIdentitiesError:
        raise ApiError(409, "too_many_identities",
                       f"每位用户最多绑定 {identities.MAX_PER_RESIDENT} 位参保人，请先删除不再需要的") from None
    if created:
        log.info("insured identity bound", extra={"binding": str(binding["_id"]), "insured_name": mask_name(name),
                                                  "id_number": number.masked, "matched": notified})
    return json_response({**identities.binding_view(binding), "matched_settlements": notified},
                         status=201 if created else 200)


@routes.get("/api/v1/me/insured-identities")
async def list_identities(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    bindings = await identities.bindings_of_resident(request.app[DB], openid)
    return json_response({"items": [identities.binding_view(b) for b in bindings],
                          "max": identities.MAX_PER_RESIDENT})


@routes.delete("/api/v1/me/insured-identities/{binding_id}")
async def delete_identity(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    if not await identities.delete_binding(request.app[DB], openid, request.match_info["binding_id"]):
        raise not_found("找不到该参保人", code="identity_not_found")
    return json_response({"ok": True})


@routes.get("/api/v1/settlements")
async def list_settlements(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    rows = await settlements.visible_settlements(request.app[DB], openid, limit_of(request))
    return json_response({"items": [settlements.settlement_view(s, b) for s, b in rows]})


@routes.get("/api/v1/settlements/{settlement_id}")
async def get_settlement(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    found = await settlements.visible_settlement(request.app[DB], openid, request.match_info["settlement_id"])
    if found is None:
        raise not_found("找不到该结算记录", code="settlement_not_found")
    settlement, binding = found
    return json_response(settlements.settlement_view(settlement, binding, detail=True))


_UNAUTHORIZED = error_response("未登录或令牌无效")
_AMOUNTS = {"type": "object", "description": "金额（元，字符串，两位小数）",
            "properties": {k: {"type": "string"} for k in ("total", "basic_insurance", "critical_illness",
                                                           "medical_assistance", "other_funds", "self_pay")}}

OPENAPI = {
    "paths": {
        "/api/v1/me/insured-identities": {
            "post": {
                "summary": "绑定参保人（本人或家人），之后可收到其结算进度",
                "description": "证件号只以加密哈希和掩码形式保存，接口不会返回完整号码。"
                               "已绑定过的同一参保人返回 200 和原记录。"
                               "绑定时已有的结算记录会立即生成通知（matched_settlements）。",
                "tags": ["settlements"], "security": BEARER,
                "requestBody": json_body({"type": "object", "required": ["name", "id_number"], "properties": {
                    "name": {"type": "string", "example": "张三"},
                    "id_number": {"type": "string",
                                  "description": "18 位身份证号码（GB 11643 校验位有效），"
                                                 "或以字母开头的 10–30 位医保编号"}}}),
                "responses": {
                    "201": json_body(ref("InsuredIdentity"), "已绑定"),
                    "200": json_body(ref("InsuredIdentity"), "此前已绑定"),
                    "400": error_response("姓名或证件号不正确"),
                    "401": _UNAUTHORIZED,
                    "409": error_response("绑定人数已达上限"),
                    "503": error_response("服务端未配置 IDENTITY_HASH_KEY"),
                },
            },
            "get": {
                "summary": "我绑定的参保人",
                "tags": ["settlements"], "security": BEARER,
                "responses": {"200": json_body({"type": "object", "properties": {
                    "items": {"type": "array", "items": ref("InsuredIdentity")}, "max": {"type": "integer"}}}),
                    "401": _UNAUTHORIZED},
            },
        },
        "/api/v1/me/insured-identities/{binding_id}": {
            "delete": {
                "summary": "解除绑定（之后不再看到该参保人的结算）",
                "tags": ["settlements"], "security": BEARER,
                "parameters": [{"name": "binding_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": json_body({"type": "object"}, "已解除"), "401": _UNAUTHORIZED,
                              "404": error_response("找不到该参保人")},
            }
        },
        "/api/v1/settlements": {
            "get": {
                "summary": "我绑定的参保人的结算记录（最新在前）",
                "tags": ["settlements"], "security": BEARER,
                "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                           "maximum": 100, "default": 20}}],
                "responses": {"200": json_body({"type": "object", "properties": {
                    "items": {"type": "array", "items": ref("Settlement")}}}),
                    "400": error_response("limit 不正确"), "401": _UNAUTHORIZED},
            }
        },
        "/api/v1/settlements/{settlement_id}": {
            "get": {
                "summary": "结算详情：费用构成与进度历史",
                "tags": ["settlements"], "security": BEARER,
                "parameters": [{"name": "settlement_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": json_body(ref("SettlementDetail")), "401": _UNAUTHORIZED,
                              "404": error_response("不存在或不属于我绑定的参保人")},
            }
        },
    },
    "schemas": {
        "InsuredIdentity": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                           "id_kind": {"type": "string", "enum": ["resident_id", "insurance_number"]},
                           "id_number_masked": {"type": "string", "example": "110105********002X"},
                           "created_at": {"type": "string", "format": "date-time"},
                           "matched_settlements": {"type": "integer"}},
        },
        "Settlement": {
            "type": "object",
            "properties": {
                "id": {"type": "string"}, "status": {"type": "string"}, "status_label": {"type": "string"},
                "insured": {"type": "object", "properties": {"binding_id": {"type": "string"},
                                                             "name": {"type": "string"},
                                                             "id_number_masked": {"type": "string"}}},
                "institution": {"type": "object", "properties": {"name": {"type": "string"}}},
                "visit": {"type": "object", "properties": {"type": {"type": "string"},
                                                           "type_label": {"type": "string"},
                                                           "admitted_on": {"type": "string"},
                                                           "discharged_on": {"type": "string", "nullable": True}}},
                "amounts": _AMOUNTS,
                "reason": {"type": "string", "nullable": True},
                "occurred_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
            },
        },
        "SettlementDetail": {
            "allOf": [ref("Settlement"), {"type": "object", "properties": {
                "breakdown": {"type": "array", "items": {"type": "object", "properties": {
                    "key": {"type": "string"}, "label": {"type": "string", "example": "基本医保统筹"},
                    "amount": {"type": "string"}}}},
                "history": {"type": "array", "items": {"type": "object", "properties": {
                    "sequence": {"type": "integer"}, "status": {"type": "string"},
                    "status_label": {"type": "string"}, "occurred_at": {"type": "string", "format": "date-time"},
                    "received_at": {"type": "string", "format": "date-time"},
                    "applied": {"type": "boolean", "description": "false：迟到事件，仅记入历史"},
                    "reason": {"type": "string", "nullable": True}}}},
            }}],
        },
    },
}
