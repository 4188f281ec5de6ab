"""The one place where a console read of a resident's personal data is recorded. Today it writes
a structured log line (who, which booking, why; no personal data itself); the staff access log of
``bot.settlements`` hooks in here when it lands, and nothing else in the console needs to change."""

from __future__ import annotations

import logging

from bot.accounts.staff import StaffMember

log = logging.getLogger("console.access")

REASONS = ("审核申请需核对患者信息", "联系家属确认上门安排", "护士上门前核对地址", "家属来电咨询")


def note_personal_data_access(member: StaffMember, booking_id: str, reason: str) -> None:
    log.info("staff opened personal data", extra={"staff": member.username, "booking_id": booking_id,
                                                  "reason": reason[:200]})
