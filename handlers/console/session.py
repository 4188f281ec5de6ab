"""The console's session: an opaque token in an HttpOnly, SameSite=Strict cookie (Secure behind
HTTPS), stored hashed in ``sessions`` (kind ``console``) with its CSRF token, its last activity
(idle time-out) and a one-shot flash message. The staff member and role are re-read on every
request, so a disabled account or a changed role takes effect at once."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from bot.accounts import sessions, staff
from bot.keys import DB

KIND = "console"
COOKIE = "console_session"
IDLE_TIMEOUT = timedelta(minutes=30)
LIFETIME = timedelta(hours=12)
_TOUCH_EVERY = timedelta(minutes=1)  # last activity is written at most this often
CSRF_FIELD = "_csrf"


@dataclass
class ConsoleSession:
    token: str
    document: dict[str, Any]
    member: staff.StaffMember

    @property
    def csrf(self) -> str:
        return self.document["csrf"]


def _secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


async def start(request: web.Request, response: web.StreamResponse, member: staff.StaffMember) -> None:
    now = datetime.now(UTC)
    token, _ = await sessions.issue(request.app[DB], KIND, member.username, LIFETIME,
                                    csrf=secrets.token_urlsafe(24), last_seen=now)
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=_secure(request), path="/console",
                        max_age=int(LIFETIME.total_seconds()))


async def end(request: web.Request, response: web.StreamResponse) -> None:
    token = request.cookies.get(COOKIE)
    if token:
        await sessions.revoke(request.app[DB], token)
    response.del_cookie(COOKIE, path="/console")


async def current(request: web.Request) -> ConsoleSession | None:
    """The live session of this request (idle time-out applied), or None."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    db = request.app[DB]
    document = await sessions.resolve(db, token, KIND)
    if document is None:
        return None
    now = datetime.now(UTC)
    last_seen = document.get("last_seen", document["created_at"]).replace(tzinfo=UTC)
    if now - last_seen > IDLE_TIMEOUT:
        await sessions.revoke(db, token)
        return None
    member = await staff.find(db, document["subject"])
    if member is None:  # disabled meanwhile
        await sessions.revoke(db, token)
        return None
    if now - last_seen > _TOUCH_EVERY:
        await db[sessions.COLLECTION].update_one({"_id": document["_id"]}, {"$set": {"last_seen": now}})
    return ConsoleSession(token, document, member)


async def flash(request: web.Request, session: ConsoleSession, message: str) -> None:
    await request.app[DB][sessions.COLLECTION].update_one({"_id": session.document["_id"]},
                                                          {"$set": {"flash": message}})


async def take_flash(request: web.Request, session: ConsoleSession) -> str | None:
    message = session.document.get("flash")
    if message:
        await request.app[DB][sessions.COLLECTION].update_one({"_id": session.document["_id"]},
                                                              {"$unset": {"flash": ""}})
    return message


async def add_reveal(request: web.Request, session: ConsoleSession, booking_id: str) -> None:
    """Remember that this session opened ``booking_id``'s personal data with a stated reason."""
    await request.app[DB][sessions.COLLECTION].update_one({"_id": session.document["_id"]},
                                                          {"$addToSet": {"revealed": booking_id}})


def revealed(session: ConsoleSession, booking_id: str) -> bool:
    return booking_id in (session.document.get("revealed") or [])


def csrf_ok(session: ConsoleSession, form: Any) -> bool:
    sent = form.get(CSRF_FIELD, "") if form is not None else ""
    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), session.csrf.encode())


Page = Callable[[web.Request, ConsoleSession], Awaitable[web.StreamResponse]]
