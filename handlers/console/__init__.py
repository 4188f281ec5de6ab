"""The staff console under ``/console/``: server-rendered pages (Jinja2 through aiohttp-jinja2) in
Simplified Chinese, with a little own script for progressive enhancement; every action is a
plain form post too. Each module here is one group of screens; they parse and validate the form,
call the domain function the JSON API calls, and render."""

from __future__ import annotations

from aiohttp import web

from handlers.console import (
    accounts,
    auth,
    booking,
    calendar,
    daylist,
    gaps,
    handoffs,
    nurses,
    reports,
    workbench,
)
from handlers.console.base import setup

__all__ = ["routes", "setup"]

routes = web.RouteTableDef()
for _module in (auth, workbench, daylist, booking, nurses, accounts, handoffs, calendar, reports, gaps):
    routes._items.extend(_module.routes)
