"""The evidence of issue 3: retrieval quality on the TEST half (never used for tuning), and evaluation
questions that are really unseen (none copied from the corpus or the out-of-scope phrasings)."""

from __future__ import annotations

import pytest

from knowledge.corpus import EVAL_HALVES, load_eval, load_out_of_scope, read_raw_entries
from knowledge.engine import Engine
from knowledge.evaluate import HalfReport, evaluate
from knowledge.lint import corpus_phrasings, eval_overlaps
from knowledge.normalise import normalise

FIRST_REPLY_RIGHT, WRONG_DIRECT, OUT_OF_DOMAIN_DECLINED = 0.92, 0.03, 0.95


@pytest.fixture(scope="module")
def test_report() -> HalfReport:
    """The test half of both sets (issue 13). Failing checks print only the figures, never the questions."""
    return evaluate(Engine.build(), load_eval("test", eval_set="all"), "test")


def _figures(report: HalfReport) -> dict:
    return {key: value for key, value in report.metrics().items() if key != "counts"}


def test_the_evaluation_sets_are_large_enough() -> None:
    old = [item for half in EVAL_HALVES for item in load_eval(half)]
    assert sum(item.faq_id is not None for item in old) >= 300
    assert sum(item.faq_id is None for item in old) >= 60
    fresh = [item for half in EVAL_HALVES for item in load_eval(half, eval_set="fresh")]
    assert len(fresh) >= 200 and all(load_eval(half, eval_set="fresh") for half in EVAL_HALVES)


@pytest.mark.xfail(strict=True, reason="issue 13: 0.826 on the test half (target 0.92), README-tuning.md")
def test_first_reply_right_on_the_test_half(test_report: HalfReport) -> None:
    assert test_report.first_reply_right >= FIRST_REPLY_RIGHT, _figures(test_report)


@pytest.mark.xfail(strict=True, reason="issue 13: 5.7% on the test half (target 3%), see README-tuning.md")
def test_wrong_direct_answers_on_the_test_half(test_report: HalfReport) -> None:
    assert test_report.wrong_direct <= WRONG_DIRECT, _figures(test_report)


def test_out_of_domain_questions_are_declined_or_referred_on_the_test_half(test_report: HalfReport) -> None:
    assert test_report.ood_declined_or_referred >= OUT_OF_DOMAIN_DECLINED, _figures(test_report)


def test_no_evaluation_question_appears_in_the_corpus() -> None:
    owners = corpus_phrasings(read_raw_entries())
    for half in EVAL_HALVES:
        assert eval_overlaps(owners, load_eval(half, eval_set="all")) == [], half


def test_no_evaluation_question_appears_among_the_out_of_scope_phrasings() -> None:
    examples = {normalise(example) for topic in load_out_of_scope() for example in topic.examples}
    for half in EVAL_HALVES:
        assert [item.q for item in load_eval(half, eval_set="all") if normalise(item.q) in examples] == [], half
