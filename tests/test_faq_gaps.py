"""Knowledge gaps: declined and unsure questions, counted once per normalised question."""

from __future__ import annotations

import asyncio

from pymongo.asynchronous.database import AsyncDatabase

from knowledge import list_gaps, record_gap
from knowledge.engine import Answer, declined
from knowledge.gaps import COLLECTION, gap_key

UNSURE = Answer(answered=False, score=0.4, message="您是不是想问：",
                suggestions=[{"faq_id": "a", "question": "问题甲？"}, {"faq_id": "b", "question": "问题乙？"}])


async def test_the_same_question_counts_once_with_a_count(db: AsyncDatabase) -> None:
    await record_gap(db, "医院招聘护士吗？", declined(score=0.1))
    await record_gap(db, "你好，醫院招聘護士嗎", declined(score=0.1))  # same after normalisation
    await record_gap(db, "我想买商业保险", UNSURE)
    gaps = await list_gaps(db)
    assert [(g["key"], g["count"]) for g in gaps] == [("医院招聘护士吗", 2), ("我想买商业保险", 1)]
    first = gaps[0]
    assert first["first_seen"] <= first["last_seen"] and first["decision"] == "decline"
    assert first["question"] == "你好，醫院招聘護士嗎"  # the latest wording
    assert gaps[1]["suggestions"] == UNSURE.suggestions and gaps[1]["decision"] == "suggest"


async def test_concurrent_identical_questions_are_all_counted(db: AsyncDatabase) -> None:
    await asyncio.gather(*(record_gap(db, "银行卡丢了怎么办", declined()) for _ in range(25)))
    documents = await db[COLLECTION].find({}).to_list()
    assert len(documents) == 1 and documents[0]["count"] == 25


async def test_answers_and_non_questions_are_not_gaps(db: AsyncDatabase) -> None:
    await record_gap(db, "家庭共济怎么开通", Answer(answered=True, faq_id="x", question="q", answer="a", score=0.9))
    await record_gap(db, "", declined("empty"))
    await record_gap(db, "😀", declined("no_content"))
    await record_gap(db, "你好", declined("greeting"))
    assert await list_gaps(db) == []


async def test_personal_numbers_are_masked_before_storage(db: AsyncDatabase) -> None:
    await record_gap(db, "我的电话13812345678，身份证110101199003071234，报销到哪一步了", declined())
    (gap,) = await list_gaps(db)
    for text in (gap["key"], gap["question"]):
        assert "13812345678" not in text and "110101199003071234" not in text
    assert gap["key"] == gap_key("我的电话13812345678，身份证110101199003071234，报销到哪一步了")


async def test_most_frequent_first_with_paging(db: AsyncDatabase) -> None:
    for question, times in (("问题一", 1), ("问题三", 3), ("问题二", 2)):
        for _ in range(times):
            await record_gap(db, question, declined())
    assert [g["key"] for g in await list_gaps(db)] == ["问题三", "问题二", "问题一"]
    assert [g["key"] for g in await list_gaps(db, limit=1, skip=1)] == ["问题二"]
