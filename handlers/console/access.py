"""The one place where a console read of a resident's personal data is recorded: an entry of the
staff access log (``bot.settlements.access_log``: who, when, what, why), which the family lists at
``GET /api/v1/me/access-log``, and a structured log line without the personal data itself."""

from __future__ import annotations

import logging
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from bot.accounts.staff import StaffMember
from bot.settlements import access_log

log = logging.getLogger("console.access")

REASONS = ("审核申请需核对患者信息", "联系家属确认上门安排", "护士上门前核对地址", "家属来电咨询")


async def note_personal_data_access(db: AsyncDatabase, member: StaffMember, booking: dict[str, Any],
                                    reason: str) -> None:
    reason = reason[:200]
    log.info("staff opened personal data", extra={"staff": member.username, "booking_id": booking["_id"],
                                                  "reason": reason})
    if booking.get("openid"):  # a booking staff made for a visitor without an account has no subject
        await access_log.record(db, staff=member.username, role=member.role, what=access_log.BOOKING_PERSONAL_DATA,
                                why=reason, openid=booking["openid"], target={"booking_ids": [booking["_id"]]})
