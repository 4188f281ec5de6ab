"""Child process of tests/test_alarms.py's crash test: raises an alarm through the product's own
path (``bot.notify.alarms.raise_alarm``), but the send step is replaced by a hang, so the parent
can SIGKILL this process after the write and before the send. Not a test module."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from bot import db as database
from bot.accounts.staff import StaffMember
from bot.notify import alarms as delivery


async def main(uri: str, db_name: str, booking_id: str) -> None:
    client = database.connect(uri)
    db = client[db_name]

    async def hang(*_args, **_kwargs) -> int:
        print("written", flush=True)  # the alarm is in the database; the send would start now
        await asyncio.sleep(3600)
        return 0

    delivery.deliver = hang  # the moment between write and send, held open for the kill
    member = StaffMember("lvli", "nurse", "test-clinic", "吕丽", nurse_id="nurse-lvli")
    await delivery.raise_alarm(db, None, member, booking_id,  # type: ignore[arg-type]
                               location={"latitude": 29.079, "longitude": 119.647}, note="家属情绪激动",
                               escalation=timedelta(minutes=3))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
