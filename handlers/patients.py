"""The family's patients (就诊人): create, list, update, delete. Only the family itself reads them,
so phone and ID numbers are shown whole here."""

from __future__ import annotations

from aiohttp import web

from bot.errors import bad_request
from bot.keys import DB
from bot.openapi import BEARER, error_response, json_body, ref
from bot.web import json_response, read_json
from handlers.auth import current_resident
from scheduling import patients

routes = web.RouteTableDef()

_FIELDS = {"name", "gender", "age", "conditions", "phone", "id_number", "address"}


def _known_fields(body: dict) -> dict:
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise bad_request("unknown_fields", f"不支持的字段：{'、'.join(unknown)}")
    return body


@routes.post("/api/v1/patients")
async def create_patient(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    fields = patients.validate(_known_fields(await read_json(request)))
    document = await patients.create(request.app[DB], openid, fields)
    return json_response(patients.view(document, reveal=True), status=201)


@routes.get("/api/v1/patients")
async def list_patients(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    found = await patients.list_for(request.app[DB], openid)
    return json_response({"patients": [patients.view(p, reveal=True) for p in found]})


@routes.get("/api/v1/patients/{patient_id}")
async def get_patient(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    document = await patients.get(request.app[DB], openid, request.match_info["patient_id"])
    return json_response(patients.view(document, reveal=True))


@routes.patch("/api/v1/patients/{patient_id}")
async def update_patient(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    body = _known_fields(await read_json(request))
    if not body:
        raise bad_request("nothing_to_update", "请至少提供一个要修改的字段")
    fields = patients.validate(body, partial=True)
    document = await patients.update(request.app[DB], openid, request.match_info["patient_id"], fields)
    return json_response(patients.view(document, reveal=True))


@routes.delete("/api/v1/patients/{patient_id}")
async def delete_patient(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    await patients.delete(request.app[DB], openid, request.match_info["patient_id"])
    return json_response({"ok": True})


_ADDRESS = {
    "type": "object", "required": ["district", "street"],
    "properties": {"district": {"type": "string", "example": "婺城区"},
                   "street": {"type": "string", "example": "城东街道"},
                   "detail": {"type": "string", "example": "八一北街 100 号 2 单元 301"}},
}
_PATIENT_FIELDS = {
    "name": {"type": "string", "maxLength": 30},
    "gender": {"type": "string", "enum": list(patients.GENDERS)},
    "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "conditions": {"type": "array", "items": {"type": "string"}, "description": "疾病情况"},
    "phone": {"type": "string", "description": "联系电话"},
    "id_number": {"type": "string", "nullable": True, "description": "身份证号（可选）"},
    "address": ref("Address"),
}
_ID = {"name": "patient_id", "in": "path", "required": True, "schema": {"type": "string"}}
_NOT_FOUND = error_response("找不到该就诊人（或不属于当前账号）")
_UNAUTHORIZED = error_response("未登录")

OPENAPI = {
    "paths": {
        "/api/v1/patients": {
            "post": {
                "summary": "添加就诊人", "tags": ["patients"], "security": BEARER,
                "requestBody": json_body({"type": "object", "required": ["name", "gender", "age", "phone", "address"],
                                          "properties": _PATIENT_FIELDS}),
                "responses": {"201": json_body(ref("Patient"), "已添加"), "400": error_response("字段有误"),
                              "401": _UNAUTHORIZED, "409": error_response("就诊人数量已达上限")},
            },
            "get": {
                "summary": "我的就诊人", "tags": ["patients"], "security": BEARER,
                "responses": {"200": json_body({"type": "object", "properties": {
                    "patients": {"type": "array", "items": ref("Patient")}}}, "就诊人列表"),
                    "401": _UNAUTHORIZED},
            },
        },
        "/api/v1/patients/{patient_id}": {
            "get": {"summary": "就诊人详情", "tags": ["patients"], "security": BEARER, "parameters": [_ID],
                    "responses": {"200": json_body(ref("Patient")), "401": _UNAUTHORIZED, "404": _NOT_FOUND}},
            "patch": {
                "summary": "修改就诊人（只改提供的字段）", "tags": ["patients"], "security": BEARER,
                "parameters": [_ID],
                "requestBody": json_body({"type": "object", "properties": _PATIENT_FIELDS}),
                "responses": {"200": json_body(ref("Patient")), "400": error_response("字段有误"),
                              "401": _UNAUTHORIZED, "404": _NOT_FOUND},
            },
            "delete": {
                "summary": "删除就诊人（已有预约保留当时的就诊人信息）", "tags": ["patients"], "security": BEARER,
                "parameters": [_ID],
                "responses": {"200": json_body({"type": "object"}, "已删除"), "401": _UNAUTHORIZED, "404": _NOT_FOUND},
            },
        },
    },
    "schemas": {
        "Address": _ADDRESS,
        "Patient": {
            "type": "object",
            "description": "联系电话和身份证号只对本人账号和负责该预约的机构工作人员完整显示，其他情况脱敏",
            "properties": {"id": {"type": "string"}, **_PATIENT_FIELDS},
        },
        "BookingPatient": {
            "type": "object",
            "description": ("预约时就诊人信息的快照（之后修改就诊人不影响已有预约），patient_id 为其来源；"
                            "脱敏规则同 Patient"),
            "properties": {"patient_id": {"type": "string"}, **_PATIENT_FIELDS},
        },
    },
}
