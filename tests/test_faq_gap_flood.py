"""Issue 18, finding 7: the public /faq/ask cannot drown the staff's gap list."""

from __future__ import annotations

from knowledge import list_gaps, record_gap
from knowledge.engine import declined
from knowledge.gaps import gap_volume

ADMIN = "admin-token-for-tests-0123456789"


async def test_one_address_adds_at_most_its_daily_quota(make_client, db):
    client = await make_client(faq_gaps_per_address_per_day=5, admin_token=ADMIN)
    for number in range(12):
        # declined (not referred elsewhere, as the calibrated engine does with "火星上的医保…"), so each is a gap
        response = await client.post("/api/v1/faq/ask", json={"question": f"我家第{number}只猫能不能用医保"})
        assert response.status == 200
    gaps = await list_gaps(db)
    assert len(gaps) == 5  # the rest are counted, not listed
    (today,) = await gap_volume(db)
    assert (today["recorded"], today["over_quota"], today["capped_sources"]) == (5, 7, 1)
    # the staff list is still there and readable
    listed = await client.get("/api/v1/staff/faq/gaps", headers={"Authorization": f"Bearer {ADMIN}"})
    assert listed.status == 200 and (await listed.json())["total"] == 5


async def test_repeats_count_and_each_asker_has_its_own_quota(db):
    for _ in range(3):
        assert await record_gap(db, "火星医保怎么办", declined(), source="10.0.0.1", daily_limit=3)
    assert not await record_gap(db, "火星医保怎么办", declined(), source="10.0.0.1", daily_limit=3)
    assert await record_gap(db, "火星医保怎么办", declined(), source="10.0.0.2", daily_limit=3)
    (gap,) = await list_gaps(db)
    assert gap["count"] == 4
    (today,) = await gap_volume(db)
    assert (today["recorded"], today["over_quota"], today["capped_sources"]) == (4, 1, 1)
    addresses = [d["_id"] async for d in db["faq_gap_quota"].find({})]
    assert all("10.0.0" not in value for value in addresses)  # addresses are not stored in clear


async def test_without_a_source_nothing_is_capped(db):
    """The chat path: WeChat users, known by openid, are not capped by address."""
    for _ in range(30):
        await record_gap(db, "火星医保", declined(), daily_limit=1)
    (gap,) = await list_gaps(db)
    assert gap["count"] == 30
