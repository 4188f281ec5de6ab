"""The family's patients (就诊人): create, list, update, delete. Only the family itself reads them,
so phone and ID numbers are shown whole here."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from bot.endpoints import Api, Body
from bot.errors import bad_request
from bot.keys import DB
from bot.web import json_response
from handlers.auth import current_resident
from scheduling import patients

api = Api("patients")
routes = api.routes

_NOT_FOUND = "找不到该就诊人（或不属于当前账号）"


_PHONE = r"^[0-9 -]+$"


class GeoPoint(Body):
    latitude: float = Field(ge=-90, le=90, title="纬度")
    longitude: float = Field(ge=-180, le=180, title="经度")


class Address(Body):
    district: str = Field(min_length=1, max_length=30, title="区县", examples=["婺城区"])
    street: str = Field(min_length=1, max_length=30, title="街道/乡镇", examples=["城东街道"])
    detail: str = Field("", max_length=100, title="详细地址", examples=["八一北街 100 号 2 单元 301"])
    location: GeoPoint | None = Field(None, title="地图位置", description="小程序 wx.chooseLocation 选点（GCJ-02）")


class PatientFields(Body):
    name: str | None = Field(None, min_length=1, max_length=30, title="姓名")
    gender: Literal["男", "女"] | None = Field(None, title="性别")
    age: int | None = Field(None, ge=0, le=150, title="年龄")
    conditions: list[str] | str | None = Field(None, title="疾病情况", description="列表，或以逗号、顿号分隔的文字")
    phone: str | None = Field(None, min_length=7, max_length=20, pattern=_PHONE, title="联系电话",
                              description="手机号或带区号的固定电话")
    id_number: str | None = Field(None, max_length=18, title="身份证号", description="可选")
    address: Address | None = Field(None, title="地址")


class NewPatient(PatientFields):
    name: str = Field(min_length=1, max_length=30, title="姓名")
    gender: Literal["男", "女"] = Field(title="性别")
    age: int = Field(ge=0, le=150, title="年龄")
    phone: str = Field(min_length=7, max_length=20, pattern=_PHONE, title="联系电话",
                       description="手机号或带区号的固定电话")
    address: Address = Field(title="地址")


class Patient(BaseModel):
    """联系电话和身份证号只对本人账号和负责该预约的机构工作人员完整显示，其他情况脱敏"""

    id: str
    name: str | None
    gender: str | None
    age: int | None
    conditions: list[str]
    phone: str | None
    id_number: str | None
    address: Address | None


class PatientList(BaseModel):
    patients: list[Patient]


@api.schema
class BookingPatient(BaseModel):
    """预约时就诊人信息的快照（之后修改就诊人不影响已有预约），patient_id 为其来源；脱敏规则同 Patient"""

    patient_id: str
    name: str | None
    gender: str | None
    age: int | None
    conditions: list[str] | None = None
    phone: str | None
    id_number: str | None = None
    address: Address | None


class Deleted(BaseModel):
    ok: bool


@api.post("/api/v1/patients", summary="添加就诊人", body=NewPatient, response=Patient, status=201, auth=True,
          invalid_code="invalid_patient", errors={409: "就诊人数量已达上限"})
async def create_patient(request: web.Request, body: NewPatient) -> web.Response:
    openid = await current_resident(request)
    fields = patients.validate(body.model_dump(exclude_unset=True))
    document = await patients.create(request.app[DB], openid, fields)
    return json_response(patients.view(document, reveal=True), status=201)


@api.get("/api/v1/patients", summary="我的就诊人", response=PatientList, auth=True)
async def list_patients(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    found = await patients.list_for(request.app[DB], openid)
    return json_response({"patients": [patients.view(p, reveal=True) for p in found]})


@api.get("/api/v1/patients/{patient_id}", summary="就诊人详情", response=Patient, auth=True,
         errors={404: _NOT_FOUND})
async def get_patient(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    document = await patients.get(request.app[DB], openid, request.match_info["patient_id"])
    return json_response(patients.view(document, reveal=True))


@api.patch("/api/v1/patients/{patient_id}", summary="修改就诊人（只改提供的字段）", body=PatientFields,
           response=Patient, auth=True, invalid_code="invalid_patient", errors={404: _NOT_FOUND})
async def update_patient(request: web.Request, body: PatientFields) -> web.Response:
    openid = await current_resident(request)
    provided = body.model_dump(exclude_unset=True)
    if not provided:
        raise bad_request("nothing_to_update", "请至少提供一个要修改的字段")
    fields = patients.validate(provided, partial=True)
    document = await patients.update(request.app[DB], openid, request.match_info["patient_id"], fields)
    return json_response(patients.view(document, reveal=True))


@api.delete("/api/v1/patients/{patient_id}", summary="删除就诊人（已有预约保留当时的就诊人信息）", response=Deleted,
            auth=True, errors={404: _NOT_FOUND})
async def delete_patient(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    await patients.delete(request.app[DB], openid, request.match_info["patient_id"])
    return json_response({"ok": True})
