"""Demo data of the settlement capability (``python -m bot seed-demo``): the demo resident has bound
a demo insured identity with two settlements on record, so the mini-program's 结算查询 and the
chat's 结算进度 menu show something. The binding is verified by the development verifier, which
exists only in development mode: seeded into a production database (``WECHAT_APP_ID`` set) it stays
unverified and shows nothing. Idempotent: events are deduplicated by id, binding is too."""

from __future__ import annotations

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from bot.config import Settings
from bot.settlements import store as settlements
from bot.settlements.id_numbers import check_character, parse
from bot.settlements.identities import DEVELOPMENT
from bot.settlements.identity_key import IdentityKeyError, resolve
from bot.settlements.rules import parse_event
from bot.settlements.verification import Verification

DEMO_OPENID = "demo-resident"
_FIRST17 = "33070219560315002"  # not a real person: a made-up number with a valid check character
DEMO_ID_NUMBER = _FIRST17 + check_character(_FIRST17)
DEMO_NAME = "张秀英"

_EVENTS = [
    {"event_id": "demo-js-1-1", "settlement_id": "DEMO-JS-0001", "sequence": 1, "status": "settled",
     "occurred_at": "2026-11-18T16:20:00+08:00", "institution": {"name": "金华市中心医院"},
     "visit": {"type": "inpatient", "admitted_on": "2026-11-08", "discharged_on": "2026-11-18"},
     "amounts": {"total": "12860.40", "basic_insurance": "8420.30", "critical_illness": "1650.00",
                 "medical_assistance": "600.00", "other_funds": "0.00", "self_pay": "2190.10"}},
    {"event_id": "demo-js-2-1", "settlement_id": "DEMO-JS-0002", "sequence": 1, "status": "submitted",
     "occurred_at": "2026-11-20T10:05:00+08:00", "institution": {"name": "上海市第六人民医院（异地就医）"},
     "visit": {"type": "outpatient", "admitted_on": "2026-11-12"},
     "amounts": {"total": "2380.00", "basic_insurance": "1190.00", "critical_illness": "0.00",
                 "medical_assistance": "0.00", "other_funds": "0.00", "self_pay": "1190.00"}},
    {"event_id": "demo-js-2-2", "settlement_id": "DEMO-JS-0002", "sequence": 2, "status": "reviewing",
     "occurred_at": "2026-11-21T09:00:00+08:00", "institution": {"name": "上海市第六人民医院（异地就医）"},
     "visit": {"type": "outpatient", "admitted_on": "2026-11-12"},
     "amounts": {"total": "2380.00", "basic_insurance": "1190.00", "critical_illness": "0.00",
                 "medical_assistance": "0.00", "other_funds": "0.00", "self_pay": "1190.00"}},
]


async def seed_settlement_demo(client: AsyncMongoClient, db: AsyncDatabase, settings: Settings) -> list[str]:
    try:
        key = resolve(settings)
    except IdentityKeyError as exc:
        return [f"结算演示数据未写入：{exc}"]
    proof = None if settings.wechat_configured else Verification(DEVELOPMENT, {"note": "seed-demo（开发环境核验）"})
    binding, _ = await settlements.bind_identity(client, db, key, DEMO_OPENID, DEMO_NAME, parse(DEMO_ID_NUMBER),
                                                 proof)
    for body in _EVENTS:
        await settlements.ingest(client, db, key, parse_event({**body, "insured_id_number": DEMO_ID_NUMBER,
                                                               "insured_name": DEMO_NAME}))
    state = "已核验（开发环境）" if binding.get("verified") else "未核验（正式环境不使用开发核验）"
    masked = parse(DEMO_ID_NUMBER).masked
    return [f"结算演示：{DEMO_OPENID} 已绑定参保人 {DEMO_NAME}（{masked}，{state}），2 笔结算记录"]
