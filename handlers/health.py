"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from bot import db as database
from bot.keys import DB, READINESS
from bot.openapi import json_body
from bot.web import json_response

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
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


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(REGISTRY))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    from handlers import openapi_document  # the package imports this module

    return json_response(openapi_document())


OPENAPI = {
    "paths": {
        "/api/v1/openapi.json": {
            "get": {
                "summary": "本接口文档（OpenAPI 3）",
                "tags": ["meta"],
                "responses": {"200": json_body({"type": "object"}, "OpenAPI document")},
            }
        }
    }
}
