"""Normalisation, segmentation with the user dictionary, synonyms and pinyin typo tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest

import knowledge
from knowledge import segment
from knowledge.engine import Engine
from knowledge.normalise import clean, normalise
from knowledge.synonyms import SynonymError, Synonyms
from knowledge.typos import PinyinCorrector
from tests.faq_support import write_corpus


@pytest.fixture(scope="module")
def small_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return Engine.build(write_corpus(tmp_path_factory.mktemp("corpus")))


@pytest.mark.parametrize(("raw", "expected"), [
    ("ＡＢＣ１２３　医保", "abc123 医保"),  # full width → half width, lower case
    ("異地就醫備案怎麼辦理", "异地就医备案怎么办理"),  # traditional → simplified
    ("你好，请问一下异地就医备案怎么办？谢谢😀🙏", "异地就医备案怎么办"),  # greetings, politeness, emoji
    ("您好！麻烦问一下，家庭共济……多谢啦~~", "家庭共济 啦"),
    ("共济\u200d\x00\x07\u2028", "共济"),  # control and format characters
    ("hi，ship 的 hello", "ship 的"),  # ASCII greetings only as whole words
    ("👍👍🎉", ""),
])
def test_normalise(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


def test_clean_keeps_politeness_but_folds_noise() -> None:
    assert clean("你好！！医保卡？") == "你好 医保卡"


def test_user_dictionary_keeps_domain_words_whole(small_engine: Engine) -> None:
    assert "异地就医备案" in segment.cut("异地就医备案怎么办理")
    assert "家庭共济" in segment.cut("家庭共济怎么开通")


def test_word_terms_add_sub_words_and_drop_stop_words() -> None:
    terms = segment.word_terms(["异地就医备案", "怎么", "办理"])
    assert {"异地就医备案", "异地", "就医", "备案", "办理"} <= set(terms)
    assert "怎么" not in terms


def test_question_words_become_markers_of_what_is_asked() -> None:
    assert segment.word_terms(["生育津贴", "在哪里", "领"])[-2:] == ["@where", "领"]
    assert "@amount" in segment.word_terms(["报销", "多少"])


def test_characters_and_bigrams_stay_inside_runs_of_content_words() -> None:
    assert segment.char_terms(["医保卡", "的", "挂失"]) == ["医", "保", "卡", "医保", "保卡", "挂", "失", "挂失"]
    assert segment.char_terms(["药"]) == ["药"]


def test_synonyms_rewrite_to_the_canonical_word_without_touching_longer_canonicals() -> None:
    synonyms = Synonyms([["医保卡", "社保卡"], ["医保电子凭证", "电子凭证"], ["生育", "生孩子", "生娃"]])
    assert synonyms.rewrite("社保卡丢了") == "医保卡丢了"
    assert synonyms.rewrite("生娃的费用") == "生育的费用"
    assert synonyms.rewrite("电子凭证和医保电子凭证") == "医保电子凭证和医保电子凭证"


def test_a_word_in_two_synonym_groups_is_an_error() -> None:
    with pytest.raises(SynonymError):
        Synonyms([["报销", "结算"], ["结算", "付费"]])


def test_synonyms_make_variant_questions_match(small_engine: Engine) -> None:
    assert small_engine.rank("社保卡掉了")[0].entry.id == "t-card-lost"
    assert small_engine.rank("生娃的津贴怎么领")[0].entry.id == "t-maternity-allowance"
    assert small_engine.analyse("去外地看病").text == small_engine.analyse("去异地看病").text


@pytest.mark.parametrize(("typed", "meant"), [("备按", "备案"), ("津帖", "津贴")])
def test_pinyin_corrects_homophone_typos(typed: str, meant: str) -> None:
    corrector = PinyinCorrector([(meant, meant), ("生育津贴", "生育津贴"), ("异地就医备案", "异地就医备案")],
                                known={meant, "生育津贴", "异地就医备案"})
    tokens, changed = corrector.correct(list(typed))
    assert changed and "".join(tokens) == meant


def test_typo_tolerance_in_the_engine(small_engine: Engine) -> None:
    analysis = small_engine.analyse("异地就医备按怎么办理")
    assert analysis.corrected and "异地就医备案" in analysis.text
    assert small_engine.rank("异地就医备按怎么办理")[0].entry.id == "t-remote-filing"
    assert small_engine.rank("生育津帖去哪里申请")[0].entry.id == "t-maternity-allowance"


def test_correct_queries_are_not_rewritten(small_engine: Engine) -> None:
    for question in ("异地就医备案怎么办理", "医保卡丢了怎么挂失", "今天天气怎么样"):
        assert not small_engine.analyse(question).corrected


def test_homophones_in_the_vocabulary_are_not_guessed() -> None:
    corrector = PinyinCorrector([("报销", "报销"), ("包销", "包销")], known={"报销", "包销"})
    assert corrector.correct(["抱", "消"]) == (["抱", "消"], False)


def test_real_corpus_tolerates_the_typos_of_the_issue() -> None:
    engine = knowledge.current_engine()
    assert "备案" in engine.analyse("异地就医备按要去哪里办").text
    assert "津贴" in engine.analyse("生育津帖在哪领").text


def test_corpus_files_are_found_next_to_the_package() -> None:
    assert (Path(knowledge.__file__).parent / "data" / "faq").is_dir()
