"""``python -m bot faq ask|lint`` as a resident or an editor runs them, and the linter's rules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from knowledge.lint import lint
from tests.faq_support import ENTRIES, write_corpus

ROOT = Path(__file__).resolve().parent.parent


def _bot(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, input=stdin, capture_output=True,
                          timeout=120, check=False)


def test_ask_prints_one_json_object() -> None:
    result = _bot("faq", "ask", "異地就醫備案怎麼辦理")
    assert result.returncode == 0, result.stderr.decode()
    (line,) = result.stdout.decode().splitlines()
    answer = json.loads(line)
    assert set(answer) >= {"answered", "faq_id", "question", "answer", "score", "suggestions"}
    assert answer["answered"] or answer["suggestions"]


def test_ask_reads_one_question_per_line_from_stdin() -> None:
    lines = ["家庭共济怎么开通", "", "😀", "今天股票会涨吗", "医保" * 300, "\xff\xfe坏字节"]
    stdin = "\n".join(lines[:5]).encode() + b"\n\xff\xfe\xe5\x9d\x8f\n"  # the last line is not valid UTF-8
    result = _bot("faq", "ask", stdin=stdin)
    assert result.returncode == 0, result.stderr.decode()
    answers = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(answers) == len(lines)
    assert answers[0]["answered"] is True
    assert [a["reason"] for a in answers[1:3]] == ["empty", "no_content"]
    assert answers[3]["answered"] is False
    assert answers[4]["reason"] == "too_long"
    assert answers[5]["answered"] is False


def test_lint_accepts_a_clean_corpus_and_reports_every_problem(tmp_path: Path) -> None:
    data, evaluation = write_corpus(tmp_path / "data"), tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "dev.yaml").write_text(yaml.safe_dump([{"q": "热线号码", "faq_id": "t-hotline"},
                                                         {"q": "买车险", "faq_id": None}], allow_unicode=True))
    (evaluation / "test.yaml").write_text(yaml.safe_dump([{"q": "丢了医保卡", "faq_id": "t-card-lost"}],
                                                         allow_unicode=True))
    assert lint(data, evaluation) == []

    broken = [dict(entry) for entry in ENTRIES]
    broken[1]["id"] = broken[0]["id"]  # duplicate id
    broken[2]["paraphrases"] = ["只有一个说法"]
    broken[3]["answer"] = "长" * 301
    broken[4]["paraphrases"] = [*broken[4]["paraphrases"], "12393是什麼電話？"]  # another entry's paraphrase
    del broken[5]["keywords"]
    write_corpus(data, broken)
    (evaluation / "test.yaml").write_text(yaml.safe_dump([{"q": "丢了医保卡", "faq_id": "gone"},
                                                          {"q": "異地就醫備案在哪裡辦？", "faq_id": None},
                                                          {"q": "热线号码", "faq_id": "t-hotline"}],
                                                         allow_unicode=True))
    problems = "\n".join(lint(data, evaluation))
    for expected in ("重复", "说法少于 3 条", "超过 300 字", "说法在多个条目中重复", "缺少字段 keywords",
                     "未知的 faq_id gone", "评测问题与语料中的说法相同：異地就醫備案在哪裡辦？",
                     "同时出现在 dev 和 test 中：热线号码"):
        assert expected in problems, expected


def test_lint_command_exit_status_follows_the_problems() -> None:
    result = _bot("faq", "lint")
    output = result.stdout.decode()
    assert result.returncode == (0 if output.strip().endswith("FAQ lint: ok") else 1), output


def test_eval_prints_the_three_measures_for_each_set() -> None:
    # the development half only: a failing check must not print test-half figures (README-tuning.md)
    result = _bot("faq", "eval", "--half", "dev")
    assert result.returncode == 0, result.stderr.decode()
    output = result.stdout.decode()
    for name in ("[dev/old]", "[dev/fresh]", "[dev/both]"):
        assert name in output
    assert "[test" not in output
    for metric in ("first reply right", "wrong direct answers", "OOD declined or referred", "recall@3", "MRR"):
        assert output.count(metric) == 3, metric


def test_explain_prints_the_analysis() -> None:
    result = _bot("faq", "explain", "生育津帖去哪里领")
    assert result.returncode == 0, result.stderr.decode()
    explained = json.loads(result.stdout.decode())
    assert "津贴" in explained["text"] and explained["ranked"]
