"""FAQ gaps: the questions the FAQ could not answer, most frequent first, with counts (the FAQ
management work turns this into the full editor)."""

from __future__ import annotations

from aiohttp import web

from bot.keys import DB
from handlers.console.base import OFFICE_ROLES, page, render
from handlers.console.session import ConsoleSession
from knowledge import gaps

routes = web.RouteTableDef()
PAGE = 30
DECISIONS = {"decline": "未能回答", "suggest": "只给出了相近问题", "clarify": "请群众说得更具体"}


@routes.get("/console/gaps")
@page(*OFFICE_ROLES)
async def list_gaps(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    raw = request.query.get("page", "1")
    page_number = int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 10000 else 1
    db = request.app[DB]
    found = await gaps.list_gaps(db, limit=PAGE, skip=(page_number - 1) * PAGE)
    total = await gaps.count_gaps(db)
    return await render(request, "gaps.html", {
        "title": "问答缺口", "gaps": found, "total": total, "page": page_number, "pages": max(1, -(-total // PAGE)),
        "decisions": DECISIONS,
    }, s=s, active="gaps")
