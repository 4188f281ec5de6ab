"""FAQ engine benchmark: latency of ``answer()``, index build time and memory, on the real corpus and on
synthetic corpora of 10,000 and 100,000 entries.

Synthetic entries recombine the real corpus's vocabulary: each phrasing joins a leading run of tokens
of one real phrasing with a trailing run of another, keywords are drawn from the real keywords and
answers join token runs of three real answer sentences, so term frequencies look like the real
corpus's, only scaled, and no text repeats. Queries are the labelled evaluation questions (dev and
test), i.e. real residents' wording.

Run: ``.venv/bin/python bench/faq.py`` (about a minute and a half on two cores; ``--real-only`` skips
the synthetic corpora). ``answer()`` includes the calibrated confidence (the model's coefficients applied
to each of the best five candidates in plain Python). Prints p50/p99 per
corpus size, how latency grows against corpus size (an index grows sub-linearly; a scan would grow
10x per 10x), build time, index size and resident memory.
"""

from __future__ import annotations

import gc
import itertools
import os
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import quantile
from knowledge import segment
from knowledge.corpus import EVAL_HALVES, Corpus, Entry, load_corpus, load_eval
from knowledge.engine import Engine

SIZES = (10_000, 100_000)
SEED = 20261123
_SENTENCE_END = re.compile(r"(?<=[。；！？\n])")


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB, from /proc/self/status."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, amount, _ = line.split()
            values[key] = int(amount) / 1024
    return values.get("VmRSS:", 0.0), values.get("VmHWM:", 0.0)


def synthetic_corpus(real: Corpus, size: int, rng: random.Random) -> Corpus:
    phrasings = [segment.cut(text) for e in real.entries for text in (e.question, *e.paraphrases)]
    phrasings = [tokens for tokens in phrasings if len(tokens) >= 2]
    keywords = sorted({k for e in real.entries for k in e.keywords})
    sentences = [segment.cut(s) for e in real.entries for s in _SENTENCE_END.split(e.answer) if len(s) > 4]
    categories = sorted({e.category for e in real.entries})

    def phrasing() -> str:
        head, tail = rng.choice(phrasings), rng.choice(phrasings)
        return "".join(head[: rng.randint(1, len(head) - 1)] + tail[rng.randint(1, len(tail) - 1):])

    def answer() -> str:
        parts = []
        for tokens in rng.sample(sentences, 3):
            start = rng.randrange(len(tokens))
            parts.append("".join(tokens[start : start + rng.randint(5, 15)]))
        return "；".join(parts) + "。"

    entries = list(real.entries)
    for number in range(size - len(entries)):
        entries.append(Entry(
            id=f"syn-{number:06d}", category=rng.choice(categories), question=phrasing() + "？",
            paraphrases=tuple(phrasing() for _ in range(3)), keywords=tuple(rng.sample(keywords, 3)),
            answer=answer(), source="synthetic", updated="2026-01-01"))
    return Corpus(entries=tuple(entries), synonyms=real.synonyms, userdict=real.userdict,
                  fingerprint=f"synthetic-{size}", out_of_scope=real.out_of_scope)


def latencies(engine: Engine, questions: list[str], rounds: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (this thread) milliseconds per ``answer()``; on a busy machine the wall clock
    also counts time the process waited for a core."""
    for question in questions[:50]:
        engine.answer(question)  # warm caches (normalisation, pinyin readings)
    wall, cpu = [], []
    for _ in range(rounds):
        for question in questions:
            start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
            engine.answer(question)
            cpu.append((time.thread_time_ns() - start_cpu) / 1e6)
            wall.append((time.perf_counter_ns() - start) / 1e6)
    return wall, cpu


def report(name: str, entries: int, engine: Engine, build_s: float,
           samples: tuple[list[float], list[float]]) -> tuple[float, float]:
    wall, cpu = samples
    rss, peak = rss_mib()
    print(f"{name:<16} {entries:>7,} entries {engine.index.n_docs:>8,} docs  build {build_s:6.2f} s  "
          f"index {engine.index.nbytes() / 2**20:6.1f} MiB  RSS {rss:5.0f} MiB (peak {peak:.0f})\n"
          f"{'':<16} answer(): wall p50 {quantile(wall, 0.5):6.3f} ms  p99 {quantile(wall, 0.99):6.3f} ms"
          f"  |  CPU p50 {quantile(cpu, 0.5):6.3f} ms  p99 {quantile(cpu, 0.99):6.3f} ms  "
          f"({len(wall)} calls)")
    return quantile(wall, 0.5), quantile(cpu, 0.5)


def main() -> None:
    started = time.perf_counter()
    start = time.perf_counter()
    segment.initialise()
    print(f"jieba.initialize(): {time.perf_counter() - start:.2f} s, RSS {rss_mib()[0]:.0f} MiB")
    questions = [item.q for half in EVAL_HALVES for item in load_eval(half, eval_set="all")]
    print(f"queries: {len(questions)} evaluation questions (dev + test, old and fresh sets)")

    start = time.perf_counter()
    real = load_corpus()
    engine = Engine(real)
    build = time.perf_counter() - start
    medians = {len(real.entries): report("real corpus", len(real.entries), engine, build,
                                         latencies(engine, questions, rounds=10))}
    # what the calibrated decision adds: answer() against retrieval alone, interleaved so machine load
    # affects both alike
    answer_cpu, retrieve_cpu = [], []
    for question in questions * 3:
        start = time.thread_time_ns()
        engine.answer(question)
        middle = time.thread_time_ns()
        engine.retrieve(question)
        answer_cpu.append((middle - start) / 1e6)
        retrieve_cpu.append((time.thread_time_ns() - middle) / 1e6)
    print(f"{'':<16} CPU p50 answer() {quantile(answer_cpu, 0.5):.3f} ms vs retrieval alone "
          f"{quantile(retrieve_cpu, 0.5):.3f} ms (features, model and decision: "
          f"{quantile(answer_cpu, 0.5) - quantile(retrieve_cpu, 0.5):+.3f} ms)")
    rng = random.Random(SEED)
    for size in () if "--real-only" in sys.argv else SIZES:
        engine = None
        gc.collect()
        corpus = synthetic_corpus(real, size, rng)
        start = time.perf_counter()
        engine = Engine(corpus)
        build = time.perf_counter() - start
        medians[size] = report(f"synthetic {size // 1000}k", size, engine, build,
                               latencies(engine, questions, rounds=2 if size < 50_000 else 1))
    sizes = sorted(medians)
    for small, large in itertools.pairwise(sizes):
        (wall_small, cpu_small), (wall_large, cpu_large) = medians[small], medians[large]
        print(f"growth {small:>7,} → {large:>7,} entries (x{large / small:.0f}): "
              f"p50 wall x{wall_large / wall_small:.2f}, CPU x{cpu_large / cpu_small:.2f}")
    print(f"total benchmark time {time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
