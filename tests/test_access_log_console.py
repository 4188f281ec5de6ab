"""A console read of a booking's personal data is an entry of the resident's access log."""

from __future__ import annotations

from bot.accounts.staff import CLINIC_STAFF, StaffMember
from bot.settlements import access_log
from handlers.console.access import note_personal_data_access


async def test_opening_a_patient_with_a_reason_is_listed_for_the_family(db):
    member = StaffMember(username="desk-1", role=CLINIC_STAFF, institution_id="clinic", name="护理部", nurse_id=None)
    booking = {"_id": "b-1", "openid": "family-1"}
    await note_personal_data_access(db, member, booking, "联系家属确认上门安排")
    await note_personal_data_access(db, member, {"_id": "b-2", "openid": None}, "窗口代办")  # no account: no subject

    entries = await access_log.entries_for(db, "family-1", [])
    assert len(entries) == 1
    view = access_log.entry_view(entries[0])
    assert (view["staff"], view["what"], view["why"], view["booking_ids"]) == (
        "desk-1", access_log.BOOKING_PERSONAL_DATA, "联系家属确认上门安排", ["b-1"])
    assert view["what_label"] == "查看预约中的就诊人个人信息（未脱敏）"
    assert await access_log.entries_for(db, "someone-else", []) == []
