"""Policy FAQ: corpus, segmentation, index, retrieval, knowledge gaps and evaluation.

Public API (other parts of the product rely on these names):

- ``answer(question) -> Answer``: never raises; declined answers carry a ``reason`` for input that is
  not a question (empty, too long, emoji only, a bare greeting).
- ``entry(faq_id) -> Entry | None``: an entry by id (the chat resolves numbered replies with it).
- ``await record_gap(db, question, result)``: store a declined or low-confidence question.
- ``current_engine()`` / ``install(engine)``: the engine in use. It is built on first use (so the CLI and
  tests need no set-up); the app builds it eagerly at start-up and the hot-reload watcher swaps a fully
  built replacement in by assigning one reference, so a request never sees a half-built index.
"""

from __future__ import annotations

import logging
import threading

from prometheus_client import Counter

from knowledge.corpus import DATA_DIR, CorpusError, Entry
from knowledge.engine import MAX_QUESTION_CHARS, Answer, Engine, declined
from knowledge.gaps import list_gaps, record_gap

__all__ = ["DATA_DIR", "MAX_QUESTION_CHARS", "Answer", "CorpusError", "Engine", "Entry", "answer",
           "current_engine", "entry", "install", "installed_engine", "list_gaps", "record_gap", "search"]

log = logging.getLogger(__name__)

ANSWERS = Counter("faq_answers_total", "FAQ questions by decision (answer, suggest, decline)", ["decision"])

_engine: Engine | None = None
_build_lock = threading.Lock()


def current_engine() -> Engine:
    """The engine in use, built from ``knowledge/data`` on first use."""
    engine = _engine
    if engine is not None:
        return engine
    with _build_lock:
        if _engine is None:
            install(Engine.build(db_version=0))  # version 0: as if the counter was never bumped
        assert _engine is not None
        return _engine


def installed_engine() -> Engine | None:
    """The engine in use, or None before the first build (identity changes on every hot reload)."""
    return _engine


def install(engine: Engine) -> None:
    """Make ``engine`` (fully built) the one every following call uses."""
    global _engine
    _engine = engine


def answer(question: str) -> Answer:
    try:
        result = current_engine().answer(question)
    except Exception:
        log.exception("FAQ engine failed")
        result = declined("unavailable")
    ANSWERS.labels(result.decision).inc()
    return result


def entry(faq_id: str) -> Entry | None:
    return current_engine().entry(faq_id) if isinstance(faq_id, str) else None


def search(query: str, k: int = 10) -> list[dict]:
    return current_engine().search(query, k)
