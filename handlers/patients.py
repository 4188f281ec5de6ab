"""The family's patients (就诊人): create, list, update, delete. Only the family itself reads them,
so phone and ID numbers are shown whole here."""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from bot.endpoints import Api, Body
from bot.errors import ApiError, bad_request
from bot.keys import DB
from bot.web import json_response
from handlers.auth import current_resident
from scheduling import patients

api = Api("patients")
routes = api.routes

_NOT_FOUND = "找不到该就诊人（或不属于当前账号）"


# The domain's rules (scheduling.patients.validate), stated so the document says them too: a mobile
# number or a landline with its area code, spaces allowed anywhere; an 18-character resident ID
# number (its check character is verified too: format ``cn-resident-id``).
_PHONE = r"^(?:1 *[3-9](?: *[0-9]){9}|0(?: *[0-9]){2,3} *-? *[0-9](?: *[0-9]){6,7})$"
_ID_NUMBER = r"^(?:[0-9]{17}[0-9Xx])?$"


def _python_strip(value: object) -> object:
    """Strip as the domain does (``str.strip``, which also removes \x1c-\x1f), before the limits apply."""
    return value.strip() if isinstance(value, str) else value


Text = Annotated[str, BeforeValidator(_python_strip)]
Condition = Annotated[Text, Field(min_length=1, max_length=50)]
# pydantic leaves a constraint behind a validator out of the schema: state the pattern there too
IdNumber = Annotated[Text, Field(max_length=18, pattern=_ID_NUMBER,
                                 json_schema_extra={"pattern": _ID_NUMBER, "format": "cn-resident-id"})]
# A list, or text the domain splits at commas, 顿号 and spaces: 40 characters hold at most 20 items.
Conditions = Annotated[list[Condition], Field(max_length=20)] | Annotated[Text, Field(max_length=40)]


class GeoPoint(Body):
    latitude: float = Field(ge=-90, le=90, title="纬度")
    longitude: float = Field(ge=-180, le=180, title="经度")


class Address(Body):
    district: Text = Field(min_length=1, max_length=30, title="区县", examples=["婺城区"])
    street: Text = Field(min_length=1, max_length=30, title="街道/乡镇", examples=["城东街道"])
    detail: Text = Field("", max_length=100, title="详细地址", examples=["八一北街 100 号 2 单元 301"])
    location: GeoPoint | None = Field(None, title="地图位置", description="小程序 wx.chooseLocation 选点（GCJ-02）")


def _patch_schema(schema: dict) -> None:
    """At least one field; a left-out field is simply not changed, so the schema shows no ``null``
    default for a field that may not be null."""
    schema["minProperties"] = 1
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None and prop.get("type") != "null" and "anyOf" not in prop:
            del prop["default"]


class PatientFields(Body):
    """只改提供的字段（至少一个）；姓名、性别、年龄、电话、地址一经填写不能清空（不能为 null）"""

    model_config = ConfigDict(json_schema_extra=_patch_schema)

    name: Text = Field(None, min_length=1, max_length=30, title="姓名")  # type: ignore[assignment]
    gender: Literal["男", "女"] = Field(None, title="性别")  # type: ignore[assignment]
    age: int = Field(None, ge=0, le=150, title="年龄")  # type: ignore[assignment]
    conditions: Conditions | None = Field(
        None, title="疾病情况", description="最多 20 项、每项不超过 50 字的列表，或以逗号、顿号分隔的文字（≤ 40 字）")
    phone: Text = Field(None, min_length=7, max_length=20, pattern=_PHONE, title="联系电话",  # type: ignore[assignment]
                        description="手机号或带区号的固定电话")
    id_number: IdNumber | None = Field(None, title="身份证号",
                                       description="可选；18 位居民身份证号，校验位须正确；空字符串或 null 为清除")
    address: Address = Field(None, title="地址")  # type: ignore[assignment]


class NewPatient(PatientFields):
    name: Text = Field(min_length=1, max_length=30, title="姓名")
    gender: Literal["男", "女"] = Field(title="性别")
    age: int = Field(ge=0, le=150, title="年龄")
    phone: Text = Field(min_length=7, max_length=20, pattern=_PHONE, title="联系电话",
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


def _check_id_number(body: PatientFields) -> None:
    """The one rule the schema cannot state: a 422, so a 400 always means the schema was not met."""
    if body.id_number and not patients.valid_id_number(body.id_number.upper()):
        raise ApiError(422, "invalid_id_number", "身份证号码校验位不正确，请核对", field="id_number")


_ID_CHECK_FAILED = {422: "身份证号码校验位不正确"}


@api.post("/api/v1/patients", summary="添加就诊人", body=NewPatient, response=Patient, status=201, auth=True,
          invalid_code="invalid_patient", errors={409: "就诊人数量已达上限", **_ID_CHECK_FAILED})
async def create_patient(request: web.Request, body: NewPatient) -> web.Response:
    openid = await current_resident(request)
    _check_id_number(body)
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
           response=Patient, auth=True, invalid_code="invalid_patient", errors={404: _NOT_FOUND, **_ID_CHECK_FAILED})
async def update_patient(request: web.Request, body: PatientFields) -> web.Response:
    openid = await current_resident(request)
    provided = body.model_dump(exclude_unset=True)
    if not provided:
        raise bad_request("nothing_to_update", "请至少提供一个要修改的字段")
    _check_id_number(body)
    fields = patients.validate(provided, partial=True)
    document = await patients.update(request.app[DB], openid, request.match_info["patient_id"], fields)
    return json_response(patients.view(document, reveal=True))


@api.delete("/api/v1/patients/{patient_id}", summary="删除就诊人（已有预约保留当时的就诊人信息）", response=Deleted,
            auth=True, errors={404: _NOT_FOUND})
async def delete_patient(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    await patients.delete(request.app[DB], openid, request.match_info["patient_id"])
    return json_response({"ok": True})
