"""Decisions with two thresholds, related questions, bad input, search and the public API."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import knowledge
from knowledge.engine import DEFAULT_PARAMS, Answer, Engine, Params, decide
from tests.faq_support import ENTRIES, write_corpus

PARAMS = dataclasses.replace(DEFAULT_PARAMS, answer_threshold=0.6, suggest_threshold=0.3, margin=0.05)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return Engine.build(write_corpus(tmp_path_factory.mktemp("corpus")), PARAMS)


def test_decide_uses_both_thresholds_and_the_margin() -> None:
    params = Params(answer_threshold=0.6, suggest_threshold=0.3, margin=0.1)
    assert decide(0.9, 0.2, params) == "answer"
    assert decide(0.9, 0.85, params) == "suggest"  # too close to the runner-up to be sure
    assert decide(0.6, 0.0, params) == "answer"
    assert decide(0.59, 0.0, params) == "suggest"
    assert decide(0.3, 0.0, params) == "suggest"
    assert decide(0.29, 0.0, params) == "decline"


def test_a_clear_question_is_answered_with_its_entry(engine: Engine) -> None:
    answer = engine.answer("家庭共济怎么开通")
    assert answer.answered and answer.faq_id == "t-family-pool"
    assert answer.question == "家庭共济怎么开通？"
    assert answer.answer.startswith("在医保APP")
    assert 0.6 <= answer.score <= 1.0
    assert answer.reason is None and answer.message is None
    assert all(s["faq_id"] != "t-family-pool" for s in answer.suggestions)


def test_answers_offer_related_questions_of_the_same_category(engine: Engine) -> None:
    answer = engine.answer("异地就医备案在哪里办理")
    assert answer.answered and answer.faq_id == "t-remote-filing"
    assert {"faq_id": "t-remote-effective", "question": "异地就医备案多久生效？"} in answer.suggestions
    assert len(answer.suggestions) <= 3


def test_a_question_closer_to_an_out_of_scope_phrasing_is_declined(engine: Engine) -> None:
    # "挂失" and "卡" also match the FAQ entry on losing the medical-insurance card
    assert engine.rank("银行卡丢了怎么挂失")[0].entry.id == "t-card-lost"
    answer = engine.answer("银行卡丢了怎么挂失")
    assert not answer.answered and answer.suggestions == []
    assert engine.explain("银行卡丢了怎么挂失")["out_of_scope_topic"] == "银行卡"
    assert engine.answer("医保卡丢了怎么挂失").faq_id == "t-card-lost"


def test_a_bare_topic_word_matching_two_entries_is_not_answered_directly() -> None:
    params = Params(answer_threshold=0.3, suggest_threshold=0.2, margin=0.0)
    assert decide(0.9, 0.5, params, bare_topic=True) == "suggest"
    assert decide(0.9, 0.1, params, bare_topic=True) == "answer"  # only one entry is about it
    assert decide(0.9, 0.0, params, one_character=True) == "suggest"
    assert decide(0.9, 0.5, params, out_of_scope_lead=0.05) == "decline"
    assert decide(0.9, 0.5, params, out_of_scope_lead=-0.5) == "answer"


def test_a_bare_topic_suggests_the_what_is_entry_first(tmp_path: Path) -> None:
    what_is = {"id": "t-family-what", "category": "结算", "question": "什么是家庭共济？",
               "paraphrases": ["个人账户给家人用的政策", "职工账户给亲属花是怎么回事", "我的账户余额让家里人用叫什么"],
               "answer": "家庭共济是职工医保个人账户可以给近亲属使用。", "keywords": ["家庭共济", "个人账户"]}
    engine = Engine.build(write_corpus(tmp_path, [*ENTRIES, what_is]), PARAMS)
    for topic in ("共济", "家庭共济"):
        assert engine.rank(topic)[0].entry.id == "t-family-pool"  # by score alone, the how-to entry leads
        answer = engine.answer(topic)
        assert answer.decision == "suggest"
        assert [s["faq_id"] for s in answer.suggestions][:2] == ["t-family-what", "t-family-pool"]
    asked_how = engine.answer("家庭共济怎么弄")  # a question word other than "what": the scores decide
    assert [s["faq_id"] for s in asked_how.suggestions][:2] == ["t-family-pool", "t-family-what"]


def test_a_single_character_is_never_answered_directly(engine: Engine) -> None:
    assert not engine.answer("卡").answered


def test_explain_shows_the_analysis(engine: Engine) -> None:
    explained = engine.explain("異地就醫備按怎麼辦理")
    assert explained["corrected"] is True and "异地就医备案" in explained["text"]
    assert explained["ranked"][0]["faq_id"] == "t-remote-filing"
    assert engine.explain("")["reason"] == "empty"


def test_an_ambiguous_question_offers_both_readings_in_the_first_reply(engine: Engine) -> None:
    answer = engine.answer("异地备案")  # both filing entries match it
    offered = [answer.faq_id, *(s["faq_id"] for s in answer.suggestions)]
    assert {"t-remote-filing", "t-remote-effective"} <= set(offered) and len(answer.suggestions) <= 3
    if answer.kind == "answer":  # the likelier one answered, the sibling offered next to it
        assert answer.message in ("您可能还想问：", None)
    else:
        assert answer.kind == "clarify" and answer.message == "您是不是想问：" and answer.answer is None


def test_a_tie_is_never_answered(engine: Engine) -> None:
    found = engine.lookup("异地备案")
    if len(found.probabilities) > 1 and found.probabilities[1] >= found.probabilities[0] - 0.02:
        assert engine.answer("异地备案").kind != "answer"


def test_an_out_of_domain_question_is_declined_with_a_fallback(engine: Engine) -> None:
    answer = engine.answer("明天去北京的火车票怎么买")
    assert answer == Answer(answered=False, score=answer.score, message=answer.message,
                            confidence=answer.confidence)
    assert answer.kind == "decline" and 0 <= answer.confidence < 0.5
    assert answer.suggestions == [] and answer.score < PARAMS.suggest_threshold
    assert "12393" in answer.message


@pytest.mark.parametrize(("question", "reason"), [
    ("", "empty"), ("   \n\t ", "empty"), ("医保" * 251, "too_long"), ("😀🎉👍", "no_content"),
    ("\x00\x01\x1b\x7f\u200b", "no_content"), ("你好！", "greeting"), ("谢谢😊", "greeting"), (None, "empty"),
])
def test_bad_input_is_declined_with_a_reason_never_an_exception(engine: Engine, question: object,
                                                                   reason: str) -> None:
    answer = engine.answer(question)  # type: ignore[arg-type]
    assert not answer.answered and answer.suggestions == [] and answer.reason == reason and answer.message


@pytest.mark.parametrize("question", ["\ud800医保", "医保\ufffe\uffff", "𠀀𠀁医保卡", "a" * 500, "?" * 10, "1" * 499])
def test_odd_strings_never_raise(engine: Engine, question: str) -> None:
    assert isinstance(engine.answer(question), Answer)
    assert isinstance(knowledge.answer(question), Answer)


def test_five_hundred_characters_are_still_a_question(engine: Engine) -> None:
    question = "医保卡丢了怎么挂失" + "。" * 491
    assert len(question) == 500 and engine.answer(question).faq_id == "t-card-lost"


def test_search_returns_ranked_entries_without_thresholds(engine: Engine) -> None:
    results = engine.search("备案")
    assert [r["faq_id"] for r in results][:2] == ["t-remote-filing", "t-remote-effective"] or \
        {r["faq_id"] for r in results[:2]} == {"t-remote-filing", "t-remote-effective"}
    assert set(results[0]) == {"faq_id", "question", "category", "score"}
    assert engine.search("") == [] and engine.search("火车票") == []


def test_entry_by_id(engine: Engine) -> None:
    entry = engine.entry("t-hotline")
    assert entry is not None and entry.category == "服务渠道" and entry.answer == "全国医保服务热线是12393。"
    assert engine.entry("nope") is None


def test_public_api_uses_the_real_corpus() -> None:
    engine = knowledge.current_engine()
    assert len(engine.corpus.entries) >= 100
    first = engine.corpus.entries[0]
    assert knowledge.entry(first.id) == first
    assert knowledge.entry(123) is None  # type: ignore[arg-type]
    answer = knowledge.answer(first.question)
    assert answer.answered and answer.faq_id == first.id
    assert set(answer.to_dict()) == {"answered", "faq_id", "question", "answer", "score", "suggestions",
                                     "reason", "message", "kind", "confidence"}
    assert answer.kind == "answer" and 0.5 <= answer.confidence <= 1
