"""Demo data of home visits (issue 16): a consent text per nursing category at the demo hospital
(published only when the category has none, so staff edits are kept) and credentials of its
nurses (licence and liability insurance valid for the demo)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from bot.config import Settings
from scheduling import consent, credentials, nurses
from scheduling.catalogue import NURSING_CATEGORIES
from scheduling.seed import HOSPITAL_ID

COMMON_RISKS = ["操作过程中可能出现疼痛、出血、感染等并发症，护士将按规范操作并及时处理",
                "患者病情可能突然变化，紧急情况下护士将协助拨打 120，并由家属决定送医",
                "家属须如实提供病情、过敏史和用药情况，隐瞒可能导致护理风险"]
NURSE_WILL = ["按预约项目提供上门护理操作，并进行护理评估和健康指导", "核对患者身份，记录护理过程和生命体征",
              "完成后告知注意事项和护理建议"]
NURSE_WILL_NOT = ["不开具处方、不诊断疾病", "不提供静脉输液、首次用药等高风险操作",
                  "不提供预约项目以外的服务、不代购药品",
                  "不接受红包礼品"]


async def seed_home_visit_demo(client: AsyncMongoClient, db: AsyncDatabase, settings: Settings) -> list[str]:
    published = 0
    for category in NURSING_CATEGORIES:
        scope = consent.category_scope(category)
        if not await consent.history(db, HOSPITAL_ID, scope):
            await consent.publish(db, HOSPITAL_ID, scope, {
                "title": f"{category}上门服务知情同意书", "risks": COMMON_RISKS, "nurse_will": NURSE_WILL,
                "nurse_will_not": NURSE_WILL_NOT}, published_by="seed-demo")
            published += 1
    today = datetime.now(UTC).date()
    for nurse in await nurses.list_nurses(db, HOSPITAL_ID):
        if await credentials.get(db, nurse["_id"]) is None:
            await credentials.put(db, HOSPITAL_ID, nurse["_id"], credentials.parse({
                "licence_number": f"DEMO{nurse['_id'][-6:].upper()}",
                "licence_valid_until": (today + timedelta(days=3 * 365)).isoformat(),
                "title": nurse["title"], "years_of_practice": nurse["years_of_practice"],
                "insurance": {"insurer": "演示保险公司", "policy_number": f"DEMO-{nurse['_id']}",
                              "valid_until": (today + timedelta(days=365)).isoformat()}}), by="seed-demo")
    return [f"上门护理知情同意书：新发布 {published} 个类别（预约时须带 consent_version）"]
