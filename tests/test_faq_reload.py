"""Hot reload: a new engine is built fully and swapped in atomically, on a file change or a version bump."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo.asynchronous.database import AsyncDatabase

import knowledge
from knowledge.engine import Engine
from knowledge.reload import Reloader, bump_version, read_version
from tests.faq_support import ENTRIES, write_corpus

QUESTION = "热线电话是多少"


def _version_of(entries: list[dict], tag: str) -> list[dict]:
    """The corpus with the hotline entry's question and answer both marked ``tag``."""
    return [({**e, "question": f"医保服务热线是多少？（{tag}）", "answer": f"{tag}：12393"}
             if e["id"] == "t-hotline" else e) for e in entries]


@pytest.fixture(autouse=True)
def restore_engine() -> Iterator[None]:
    before = knowledge.installed_engine()
    yield
    knowledge._engine = before


def _touch(root: Path) -> None:
    """Move every corpus file's modification time forward so the change is seen even on coarse clocks."""
    for path in root.rglob("*"):
        if path.is_file():
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def test_concurrent_answers_never_see_a_half_built_index(tmp_path: Path) -> None:
    old = write_corpus(tmp_path / "old", _version_of(ENTRIES, "旧"))
    extra = {**ENTRIES[0], "id": "t-extra", "question": "新增的问题怎么问？",
             "paraphrases": ["新增一", "新增二", "新增三"], "keywords": ["新增"]}
    new = write_corpus(tmp_path / "new", [*_version_of(ENTRIES, "新"), extra])
    knowledge.install(Engine.build(old))
    stop = threading.Event()
    problems: list[str] = []
    seen: set[str] = set()

    def ask() -> None:
        while not stop.is_set():
            answer = knowledge.answer(QUESTION)
            if answer.reason is not None or not answer.answered or answer.faq_id != "t-hotline":
                problems.append(f"unexpected answer {answer}")
                return
            tag = answer.answer.split("：")[0]
            if f"（{tag}）" not in answer.question:  # question and answer from two different corpora
                problems.append(f"mixed versions {answer.question} / {answer.answer}")
                return
            seen.add(tag)

    readers = [threading.Thread(target=ask) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        for i in range(30):
            knowledge.install(Engine.build(new if i % 2 == 0 else old))
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert problems == []
    assert seen == {"旧", "新"}


async def test_reloader_rebuilds_on_file_change_and_version_bump_and_survives_a_broken_corpus(
        tmp_path: Path, db: AsyncDatabase) -> None:
    root = write_corpus(tmp_path / "corpus", _version_of(ENTRIES, "一"))
    knowledge._engine = None
    reloader = Reloader(db, root)
    assert await reloader.check() is True
    assert knowledge.answer(QUESTION).answer == "一：12393"
    assert await reloader.check() is False  # nothing changed

    write_corpus(root, _version_of(ENTRIES, "二"))
    _touch(root)
    assert await reloader.check() is True
    assert knowledge.answer(QUESTION).answer == "二：12393"

    before = knowledge.installed_engine()
    assert await read_version(db) == 0
    assert await bump_version(db) == 1
    assert await reloader.check() is True
    assert knowledge.installed_engine() is not before and knowledge.installed_engine().db_version == 1

    (root / "faq" / "entries.yaml").write_text("- id: [unclosed\n", encoding="utf-8")  # saved half-way
    _touch(root)
    in_use = knowledge.installed_engine()
    assert await reloader.check() is False
    assert await reloader.check() is False  # the same broken corpus is not retried every poll
    assert knowledge.installed_engine() is in_use and knowledge.answer(QUESTION).answer == "二：12393"

    write_corpus(root, _version_of(ENTRIES, "三"))
    _touch(root)
    assert await reloader.check() is True
    assert knowledge.answer(QUESTION).answer == "三：12393"


async def test_watcher_loop_picks_up_a_change(tmp_path: Path, db: AsyncDatabase) -> None:
    root = write_corpus(tmp_path / "corpus", _version_of(ENTRIES, "甲"))
    knowledge._engine = None
    reloader = Reloader(db, root)
    await reloader.check()
    task = asyncio.create_task(reloader.run(interval=0.05))
    try:
        write_corpus(root, _version_of(ENTRIES, "乙"))
        _touch(root)
        async with asyncio.timeout(20):
            while knowledge.answer(QUESTION).answer != "乙：12393":
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_broken_corpus_without_an_engine_in_use_fails_loudly(tmp_path: Path, db: AsyncDatabase) -> None:
    root = tmp_path / "empty"
    (root / "faq").mkdir(parents=True)
    knowledge._engine = None
    with pytest.raises(knowledge.CorpusError):
        await Reloader(db, root).check()
