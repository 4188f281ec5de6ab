"""The FAQ corpus on disk: entries (``data/faq/*.yaml``), the jieba user dictionary (``data/userdict.txt``),
the synonym table (``data/synonyms.yaml``), the out-of-scope phrasings (``data/out_of_scope.yaml``) and
the labelled evaluation halves (``eval/dev.yaml``,
``eval/test.yaml``).

``load_corpus`` is strict about what the engine cannot work without (ids, questions, answers, unique ids,
parseable files) and raises ``CorpusError``; style rules (paraphrase count, answer length, collisions)
are the linter's job, so a hot reload is only refused for a corpus that cannot be served.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from knowledge.normalise import clean
from knowledge.segment import read_userdict
from knowledge.synonyms import SynonymError, Synonyms

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
EVAL_DIR = PACKAGE_DIR / "eval"
EVAL_HALVES = ("dev", "test")
# Evaluation sets: "old" (written with the corpus, issue 3: eval/dev.yaml, eval/test.yaml) and "fresh"
# (issue 13, from other angles: eval/fresh-dev.yaml, eval/fresh-test.yaml). Both are split into halves.
EVAL_SETS = ("old", "fresh")
REQUIRED_FIELDS = ("id", "category", "question", "paraphrases", "answer", "keywords", "source", "updated")


class CorpusError(ValueError):
    pass


@dataclass(frozen=True)
class Entry:
    id: str
    category: str
    question: str
    answer: str
    paraphrases: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    source: str = ""
    updated: str = ""
    file: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "category": self.category, "question": self.question, "answer": self.answer,
                "paraphrases": list(self.paraphrases), "keywords": list(self.keywords),
                "source": self.source, "updated": self.updated}


@dataclass(frozen=True)
class OutOfScope:
    """A kind of question the service does not answer, with example phrasings."""

    topic: str
    examples: tuple[str, ...]
    # A neighbouring service's topic: instead of declining, the reply ``refer`` names its hotline and
    # channel; ``keywords`` also refer a question the FAQ cannot answer confidently ("公积金", "失业金").
    refer: str = ""
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class Corpus:
    entries: tuple[Entry, ...]
    synonyms: Synonyms
    userdict: tuple[tuple[str, int | None], ...]
    fingerprint: str
    out_of_scope: tuple[OutOfScope, ...] = ()
    data_dir: str = ""  # where it was read from
    by_id: dict[str, Entry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", {entry.id: entry for entry in self.entries})

    def categories(self) -> list[dict[str, Any]]:
        """Categories in corpus order with their entry counts."""
        counts: dict[str, int] = {}
        for entry in self.entries:
            counts[entry.category] = counts.get(entry.category, 0) + 1
        return [{"category": name, "count": count} for name, count in counts.items()]


@dataclass(frozen=True)
class EvalItem:
    q: str
    faq_id: str | None


def faq_files(data_dir: Path) -> list[Path]:
    folder = data_dir / "faq"
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []


def _support_files(data_dir: Path) -> list[Path]:
    return [data_dir / "userdict.txt", data_dir / "synonyms.yaml", data_dir / "out_of_scope.yaml"]


def fingerprint(data_dir: Path = DATA_DIR) -> str:
    """A cheap digest of the corpus files' names, sizes and modification times (no content is read)."""
    digest = hashlib.sha256()
    for path in [*faq_files(data_dir), *_support_files(data_dir)]:
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CorpusError(f"{path.name}: 无法读取（{type(exc).__name__}: {exc}）") from None


def read_raw_entries(data_dir: Path = DATA_DIR) -> list[tuple[str, int, dict[str, Any]]]:
    """(file name, position, mapping) of every entry as written; raises CorpusError on unreadable files."""
    raw: list[tuple[str, int, dict[str, Any]]] = []
    for path in faq_files(data_dir):
        data = _yaml(path)
        if data is None:
            continue
        if isinstance(data, dict) and isinstance(data.get("entries"), list):
            data = data["entries"]
        if not isinstance(data, list):
            raise CorpusError(f"{path.name}: 顶层应为条目列表")
        for position, item in enumerate(data, start=1):
            if not isinstance(item, dict):
                raise CorpusError(f"{path.name} 第 {position} 条：条目应为映射")
            raw.append((path.name, position, item))
    return raw


def _text(value: Any) -> str:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return "" if value is None else str(value).strip()


def _texts(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return ()
    return tuple(text for text in (_text(item) for item in value) if text)


def to_entry(file: str, position: int, item: dict[str, Any]) -> Entry:
    entry = Entry(id=_text(item.get("id")), category=_text(item.get("category")),
                  question=_text(item.get("question")), answer=_text(item.get("answer")),
                  paraphrases=_texts(item.get("paraphrases")), keywords=_texts(item.get("keywords")),
                  source=_text(item.get("source")), updated=_text(item.get("updated")), file=file)
    for name in ("id", "question", "answer"):
        if not getattr(entry, name):
            raise CorpusError(f"{file} 第 {position} 条：缺少 {name}")
    return entry


def load_synonyms(data_dir: Path = DATA_DIR) -> Synonyms:
    path = data_dir / "synonyms.yaml"
    if not path.exists():
        return Synonyms()
    data = _yaml(path)
    if isinstance(data, dict):
        data = data.get("groups", [])
    if data is None:
        data = []
    if not isinstance(data, list) or not all(isinstance(group, list) for group in data):
        raise CorpusError("synonyms.yaml：应为同义词组的列表（每组是词的列表，第一个为规范词）")
    try:
        return Synonyms([[clean(str(word)) for word in group if word is not None] for group in data])
    except SynonymError as exc:
        raise CorpusError(f"synonyms.yaml：{exc}") from None


def load_userdict(data_dir: Path = DATA_DIR) -> tuple[tuple[str, int | None], ...]:
    path = data_dir / "userdict.txt"
    try:
        return tuple(read_userdict(path)) if path.exists() else ()
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"userdict.txt：无法读取（{exc}）") from None


def load_out_of_scope(data_dir: Path = DATA_DIR) -> tuple[OutOfScope, ...]:
    path = data_dir / "out_of_scope.yaml"
    data = _yaml(path) if path.exists() else None
    if data is None:
        return ()
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise CorpusError("out_of_scope.yaml：应为 {topic, examples} 的列表")
    return tuple(OutOfScope(_text(item.get("topic")), _texts(item.get("examples")), _text(item.get("refer")),
                            _texts(item.get("keywords"))) for item in data)


def load_corpus(data_dir: Path = DATA_DIR) -> Corpus:
    stamp = fingerprint(data_dir)  # taken first: a change made while reading triggers another reload
    entries = [to_entry(file, position, item) for file, position, item in read_raw_entries(data_dir)]
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise CorpusError(f"{entry.file}：条目 id 重复：{entry.id}")
        seen.add(entry.id)
    if not entries:
        raise CorpusError(f"{data_dir}：没有任何 FAQ 条目")
    return Corpus(entries=tuple(entries), synonyms=load_synonyms(data_dir), userdict=load_userdict(data_dir),
                  fingerprint=stamp, out_of_scope=load_out_of_scope(data_dir), data_dir=str(data_dir))


def eval_path(half: str, eval_set: str = "old", eval_dir: Path = EVAL_DIR) -> Path:
    return eval_dir / (f"{half}.yaml" if eval_set == "old" else f"{eval_set}-{half}.yaml")


def load_eval(half: str, eval_dir: Path = EVAL_DIR, eval_set: str = "old") -> list[EvalItem]:
    """One half of one evaluation set (``eval_set="all"``: both sets' questions of that half)."""
    if eval_set == "all":
        return [item for name in EVAL_SETS for item in load_eval(half, eval_dir, name)]
    path = eval_path(half, eval_set, eval_dir)
    if not path.exists():
        return []
    data = _yaml(path)
    if isinstance(data, dict):
        data = data.get("items", data.get("questions", []))
    if not isinstance(data, list):
        raise CorpusError(f"{path.name}：应为 {{q, faq_id}} 的列表")
    items: list[EvalItem] = []
    for position, item in enumerate(data, start=1):
        if not isinstance(item, dict) or not _text(item.get("q")):
            raise CorpusError(f"{path.name} 第 {position} 项：缺少 q")
        faq_id = _text(item.get("faq_id")) or None
        items.append(EvalItem(q=_text(item.get("q")), faq_id=faq_id))
    return items
