"""HTTP edges. Each module has ``routes`` (an aiohttp RouteTableDef) and, when it serves the
JSON API, ``OPENAPI`` (its part of the OpenAPI document). Add new modules to ``MODULES``."""

from __future__ import annotations

from functools import cache
from typing import Any

from aiohttp import web

from bot.openapi import build_document
from handlers import (
    auth,
    bookings,
    catalogue,
    console,
    faq,
    health,
    inbox,
    patients,
    ratings,
    settlement_webhook,
    settlements,
    staff_auth,
    staff_bookings,
    visits,
    wechat,
    wechat_login,
)

MODULES = [health, auth, staff_auth, faq, catalogue, wechat, wechat_login, patients, bookings, staff_bookings,
           settlement_webhook, settlements, inbox, visits, ratings, console]


def setup_routes(app: web.Application) -> None:
    for module in MODULES:
        app.router.add_routes(module.routes)


@cache
def openapi_document() -> dict[str, Any]:
    return build_document(MODULES)
