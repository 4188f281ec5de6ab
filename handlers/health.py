"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel, ConfigDict

from bot import db as database
from bot.endpoints import Api
from bot.keys import DB, READINESS
from bot.web import json_response

api = Api("meta")
routes = api.routes


class Alive(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    """ready 时为 200；starting（pending 为未完成的启动步骤）、failed（failed 为失败的步骤及原因）或
    unavailable（数据库无响应）时为 503。detail 为各功能附加的说明（如缺少节假日数据的年份）"""

    model_config = ConfigDict(extra="allow")

    status: Literal["ready", "starting", "failed", "unavailable"]
    pending: list[str] | None = None
    failed: dict[str, str] | None = None
    reason: str | None = None
    detail: dict[str, Any] | None = None


class OpenApiDocument(BaseModel):
    model_config = ConfigDict(extra="allow")

    openapi: str


@api.get("/healthz", summary="存活检查（进程在运行）", response=Alive)
async def healthz(request: web.Request) -> dict:
    return {"status": "ok"}


@api.get("/readyz", summary="就绪检查：数据库可用且启动工作全部完成", response=Ready,
         errors={503: "尚未就绪（见 status 与 pending/failed/reason）"}, error_models={503: Ready})
async def readyz(request: web.Request) -> web.Response:
    readiness = request.app[READINESS]
    body: dict = {"detail": readiness.detail} if readiness.detail else {}
    if readiness.failed:
        return json_response({"status": "failed", "failed": readiness.failed, **body}, status=503)
    if readiness.pending:
        return json_response({"status": "starting", "pending": sorted(readiness.pending), **body}, status=503)
    if not await database.ping(request.app[DB]):
        return json_response({"status": "unavailable", "reason": "database does not answer", **body}, status=503)
    return json_response({"status": "ready", **body})


@routes.get("/metrics")  # Prometheus text format, not JSON: outside the OpenAPI document
async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(REGISTRY))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


@api.get("/api/v1/openapi.json", summary="本接口文档（OpenAPI 3.1）", response=OpenApiDocument)
async def openapi(request: web.Request) -> dict:
    from handlers import openapi_document  # the package imports this module

    return openapi_document()
