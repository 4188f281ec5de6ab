"""Ratings (好差评, issue 16), HTTP edges only: the resident rates a completed centre or nursing
visit; staff see the summaries and work the follow-up cases of bad ratings (JSON for the console)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from bot.accounts import staff
from bot.endpoints import Api, Body, Query
from bot.errors import ApiError
from bot.keys import DB
from bot.web import json_response
from handlers.auth import current_resident
from handlers.staff_auth import current_staff, institution_scope
from scheduling import ratings
from scheduling.calendar import SHANGHAI

api = Api("ratings")
routes = api.routes

_STAFF = (staff.ADMIN, staff.CENTRE_STAFF, staff.CLINIC_STAFF)


class RatingOptions(BaseModel):
    levels: list[str]
    tags: list[str]
    change_days: int


@api.get("/api/v1/ratings/options", summary="评价等级和可选标签", response=RatingOptions)
async def options(request: web.Request) -> web.Response:
    return json_response({"levels": list(ratings.LEVELS), "tags": list(ratings.TAGS),
                          "change_days": ratings.CHANGE_WINDOW.days})


class RatingIn(Body):
    level: Literal["非常满意", "满意", "基本满意", "不满意", "非常不满意"] = Field(title="评价等级")
    tags: list[str] = Field(default_factory=list, max_length=5, title="标签")
    comment: str = Field("", max_length=500, title="评价内容")


class Rating(BaseModel):
    """每笔预约一条评价，首次评价后 7 天内可修改；不满意、非常不满意将由机构在 15 个工作日内回访整改"""

    booking_id: str
    kind: str
    level: str
    score: int
    tags: list[str]
    comment: str
    first_rated_at: datetime
    rated_at: datetime
    changeable_until: datetime
    changeable: bool


@api.put("/api/v1/bookings/{booking_id}/rating", summary="评价已完成的服务（好差评；7 天内可修改）", body=RatingIn,
         response=Rating, auth=True, errors={404: "找不到该预约", 409: "服务未完成，或已超过修改期限"})
async def put_rating(request: web.Request, body: RatingIn) -> web.Response:
    openid = await current_resident(request)
    rating = await ratings.rate(request.app[DB], openid, request.match_info["booking_id"], level=body.level,
                                tags=body.tags, comment=body.comment)
    return json_response(ratings.rating_view(rating))


@api.get("/api/v1/bookings/{booking_id}/rating", summary="我对该预约的评价", response=Rating, auth=True,
         errors={404: "尚未评价"})
async def get_rating(request: web.Request) -> web.Response:
    openid = await current_resident(request)
    rating = await ratings.get_rating(request.app[DB], openid, request.match_info["booking_id"])
    if rating is None:
        raise ApiError(404, "rating_not_found", "尚未评价")
    return json_response(ratings.rating_view(rating))


class SummaryQuery(Query):
    by: Literal["service", "nurse", "month", "kind"] = Field("service", title="统计维度")
    institution_id: str | None = Field(None, max_length=64, title="机构编号")


class Summary(BaseModel):
    by: str
    groups: list[dict[str, Any]]


@api.get("/api/v1/staff/ratings/summary", summary="评价统计（按服务、护士、月份）", query=SummaryQuery,
         response=Summary, auth=True)
async def summary(request: web.Request, query: SummaryQuery) -> web.Response:
    member = await current_staff(request, *_STAFF)
    institution_id = institution_scope(member, query.institution_id)
    return json_response({"by": query.by, "groups": await ratings.summary(request.app[DB], institution_id, query.by)})


class CaseQuery(Query):
    status: Literal["open", "contacted", "resolved"] | None = Field(None, title="状态")
    institution_id: str | None = Field(None, max_length=64, title="机构编号")


class CaseList(BaseModel):
    cases: list[dict[str, Any]]
    overdue: int


def _today() -> Any:
    return datetime.now(UTC).astimezone(SHANGHAI).date()


@api.get("/api/v1/staff/follow-ups", summary="差评回访工单（含是否超期）", query=CaseQuery, response=CaseList,
         auth=True)
async def list_cases(request: web.Request, query: CaseQuery) -> web.Response:
    member = await current_staff(request, *_STAFF)
    institution_id = institution_scope(member, query.institution_id)
    db, today = request.app[DB], _today()
    found = await ratings.list_cases(db, institution_id, status=query.status)
    return json_response({"cases": [ratings.case_view(c, today) for c in found],
                          "overdue": await ratings.count_overdue(db, today, institution_id)})


class ContactIn(Body):
    note: str = Field(min_length=1, max_length=500, title="回访情况")


class ResolveIn(Body):
    fix: str = Field(min_length=1, max_length=500, title="整改措施")
    result: str = Field(min_length=1, max_length=500, title="告知群众的处理结果")


class Case(BaseModel):
    id: str
    booking_id: str
    status: str
    deadline: str
    overdue: bool
    contacts: list[dict[str, Any]]
    fix: str | None
    result: str | None


@api.post("/api/v1/staff/follow-ups/{case_id}/contacts", summary="记录与群众的联系（回访）", body=ContactIn,
          response=Case, status=201, auth=True, errors={404: "找不到该工单", 409: "已办结"})
async def add_contact(request: web.Request, body: ContactIn) -> web.Response:
    member = await current_staff(request, *_STAFF)
    case = await ratings.record_contact(request.app[DB], member, request.match_info["case_id"], body.note)
    return json_response(ratings.case_view(case, _today()), status=201)


@api.post("/api/v1/staff/follow-ups/{case_id}/resolve", summary="办结回访工单（整改措施，并告知群众处理结果）",
          body=ResolveIn, response=Case, auth=True, errors={404: "找不到该工单", 409: "未回访或已办结"})
async def resolve_case(request: web.Request, body: ResolveIn) -> web.Response:
    member = await current_staff(request, *_STAFF)
    case = await ratings.resolve(request.app[DB], member, request.match_info["case_id"], fix=body.fix,
                                 result=body.result)
    return json_response(ratings.case_view(case, _today()))
