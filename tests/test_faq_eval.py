"""The evidence of issue 3: retrieval quality on the TEST half (never used for tuning), and evaluation
questions that are really unseen (none copied from the corpus or the out-of-scope phrasings)."""

from __future__ import annotations

import pytest

from knowledge.corpus import EVAL_HALVES, load_eval, load_out_of_scope, read_raw_entries
from knowledge.engine import Engine
from knowledge.evaluate import HalfReport, evaluate
from knowledge.lint import corpus_phrasings, eval_overlaps
from knowledge.normalise import normalise

TOP1, RECALL_AT_3, OUT_OF_DOMAIN_DECLINED = 0.92, 0.98, 0.95


@pytest.fixture(scope="module")
def test_report() -> HalfReport:
    return evaluate(Engine.build(), load_eval("test"), "test")


def test_the_evaluation_set_is_large_enough() -> None:
    items = [item for half in EVAL_HALVES for item in load_eval(half)]
    assert sum(item.faq_id is not None for item in items) >= 300
    assert sum(item.faq_id is None for item in items) >= 60


def test_recall_at_3_on_the_test_half(test_report: HalfReport) -> None:
    assert test_report.recall_at_3 >= RECALL_AT_3, test_report.failures


def test_out_of_domain_questions_are_declined_on_the_test_half(test_report: HalfReport) -> None:
    assert test_report.ood_declined >= OUT_OF_DOMAIN_DECLINED, test_report.failures


def test_top1_on_the_test_half(test_report: HalfReport) -> None:
    assert test_report.top1 >= TOP1, test_report.failures


def test_no_evaluation_question_appears_in_the_corpus() -> None:
    owners = corpus_phrasings(read_raw_entries())
    for half in EVAL_HALVES:
        assert eval_overlaps(owners, load_eval(half)) == [], half


def test_no_evaluation_question_appears_among_the_out_of_scope_phrasings() -> None:
    examples = {normalise(example) for topic in load_out_of_scope() for example in topic.examples}
    for half in EVAL_HALVES:
        assert [item.q for item in load_eval(half) if normalise(item.q) in examples] == [], half
