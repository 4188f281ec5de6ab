"""``python -m bot faq lint``: every rule the corpus and the evaluation set must keep.

Corpus: readable files, every field present, unique ids, at least three paraphrases, answers of at most
300 characters, a valid ``updated`` date, no question or paraphrase that equals (after normalisation)
one of another entry, a consistent synonym table, readable out-of-scope phrasings. Evaluation: known
ids, no question that is also in the corpus or among the out-of-scope phrasings, no question in both
halves.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

from knowledge.corpus import (
    DATA_DIR,
    EVAL_DIR,
    EVAL_HALVES,
    EVAL_SETS,
    REQUIRED_FIELDS,
    CorpusError,
    EvalItem,
    eval_path,
    load_eval,
    load_out_of_scope,
    load_synonyms,
    load_userdict,
    read_raw_entries,
)
from knowledge.normalise import normalise

MIN_PARAPHRASES = 3
MAX_ANSWER_CHARS = 300


def _phrasings(item: dict[str, Any]) -> list[str]:
    paraphrases = item.get("paraphrases")
    texts = [item.get("question"), *(paraphrases if isinstance(paraphrases, list) else [])]
    return [str(text) for text in texts if text]


def corpus_phrasings(raw: list[tuple[str, int, dict[str, Any]]]) -> dict[str, set[str]]:
    """Normalised question or paraphrase → ids of the entries that use it."""
    owners: dict[str, set[str]] = defaultdict(set)
    for _, _, item in raw:
        for text in _phrasings(item):
            key = normalise(text)
            if key:
                owners[key].add(str(item.get("id")))
    return owners


def eval_overlaps(owners: dict[str, set[str]], items: list[EvalItem]) -> list[str]:
    """Evaluation questions that also appear in the corpus after normalisation."""
    return [item.q for item in items if normalise(item.q) in owners]


def _check_entry(file: str, position: int, item: dict[str, Any]) -> list[str]:
    where = f"{file} 第 {position} 条（{item.get('id', '?')}）"
    problems = [f"{where}：缺少字段 {name}" for name in REQUIRED_FIELDS
                if item.get(name) in (None, "", [])]
    paraphrases = item.get("paraphrases")
    if paraphrases is not None and not isinstance(paraphrases, list):
        problems.append(f"{where}：paraphrases 应为列表")
    elif isinstance(paraphrases, list) and len([p for p in paraphrases if p]) < MIN_PARAPHRASES:
        problems.append(f"{where}：说法少于 {MIN_PARAPHRASES} 条（{len(paraphrases)}）")
    keywords = item.get("keywords")
    if keywords is not None and not isinstance(keywords, list):
        problems.append(f"{where}：keywords 应为列表")
    answer = str(item.get("answer") or "").strip()
    if len(answer) > MAX_ANSWER_CHARS:
        problems.append(f"{where}：答案 {len(answer)} 字，超过 {MAX_ANSWER_CHARS} 字")
    updated = item.get("updated")
    if updated is not None and not isinstance(updated, date):
        try:
            date.fromisoformat(str(updated))
        except ValueError:
            problems.append(f"{where}：updated 不是日期（YYYY-MM-DD）：{updated}")
    seen: set[str] = set()
    for text in _phrasings(item):
        key = normalise(text)
        if key in seen:
            problems.append(f"{where}：说法重复：{text}")
        seen.add(key)
    return problems


def _check_eval_set(eval_set: str, eval_dir: Path, ids: dict[str, str], owners: dict[str, set[str]],
                    out_of_scope: set[str]) -> list[str]:
    problems: list[str] = []
    halves: dict[str, list[EvalItem]] = {}
    for half in EVAL_HALVES:
        path = eval_path(half, eval_set, eval_dir)
        if not path.exists():
            if eval_set == "old":  # the first set is required; a later one is checked when present
                problems.append(f"{path}：评测集不存在")
            continue
        try:
            halves[half] = load_eval(half, eval_dir, eval_set)
        except CorpusError as exc:
            problems.append(str(exc))
            continue
        for item in halves[half]:
            if item.faq_id is not None and item.faq_id not in ids:
                problems.append(f"eval/{path.name}：未知的 faq_id {item.faq_id}（{item.q}）")
        problems.extend(f"eval/{path.name}：评测问题与语料中的说法相同：{q}"
                        for q in eval_overlaps(owners, halves[half]))
        problems.extend(f"eval/{path.name}：评测问题与拒答示例相同：{item.q}"
                        for item in halves[half] if normalise(item.q) in out_of_scope)
    if len(halves) == 2:
        dev_keys = {normalise(item.q) for item in halves["dev"]}
        problems.extend(f"eval（{eval_set}）：问题同时出现在 dev 和 test 中：{item.q}"
                        for item in halves["test"] if normalise(item.q) in dev_keys)
    return problems


def lint(data_dir: Path = DATA_DIR, eval_dir: Path = EVAL_DIR) -> list[str]:
    problems: list[str] = []
    try:
        raw = read_raw_entries(data_dir)
    except CorpusError as exc:
        return [str(exc)]
    if not raw:
        problems.append(f"{data_dir / 'faq'}：没有任何 FAQ 条目")
    ids: dict[str, str] = {}
    for file, position, item in raw:
        problems.extend(_check_entry(file, position, item))
        entry_id = str(item.get("id", ""))
        if entry_id and entry_id in ids:
            problems.append(f"{file} 第 {position} 条：id {entry_id} 与 {ids[entry_id]} 重复")
        ids.setdefault(entry_id, file)
    owners = corpus_phrasings(raw)
    for key, entry_ids in sorted(owners.items()):
        if len(entry_ids) > 1:
            problems.append(f"说法在多个条目中重复（{', '.join(sorted(entry_ids))}）：{key}")
    try:
        out_of_scope = {normalise(example) for topic in load_out_of_scope(data_dir) for example in topic.examples}
    except CorpusError as exc:
        problems.append(str(exc))
        out_of_scope = set()
    for loader in (load_synonyms, load_userdict):
        try:
            loader(data_dir)
        except CorpusError as exc:
            problems.append(str(exc))
    for eval_set in EVAL_SETS:
        problems.extend(_check_eval_set(eval_set, eval_dir, ids, owners, out_of_scope))
    return problems
