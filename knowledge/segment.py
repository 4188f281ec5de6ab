"""Chinese segmentation with jieba and the domain user dictionary, and the two kinds of index terms.

jieba's default dictionary is loaded once per process (``initialise``, called by the first engine build,
which the app's start-up step runs in a worker thread); domain words are added to it with ``add_words``
(idempotent, only ever adds, so a hot reload never removes a word a running engine relies on).

Terms (pure functions of the token list):
- ``word_terms``: the tokens without stop words, plus the dictionary sub-words of long tokens (as
  jieba's search mode does), so "异地就医备案" also matches a question that only says "备案"; question
  words are stop words, but each adds one marker of what is asked (where, when, how much, how, why,
  whether, what), which tells apart entries on the same subject ("生育津贴在哪领" / "生育津贴怎么算").
- ``char_terms``: characters and character bigrams inside runs of non-stop tokens. They survive
  segmentation differences ("在哪办" / "办理"), which matter most on short questions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path

import jieba

jieba.setLogLevel(logging.WARNING)

_lock = threading.Lock()
_initialised = False
_added: dict[str, int | None] = {}

# Question words → the marker of what is asked.
INTENT_MARKERS = {
    word: marker
    for marker, words in {
        "@where": "哪里 哪儿 在哪 在哪里 哪 哪个 哪家 何处 去哪 去哪里 哪些地方",
        "@when": "什么时候 几时 何时 多久 多长时间 几月 几月份 哪天 几天 多长",
        "@amount": "多少 多少钱 几",
        "@how": "怎么 怎样 如何 咋 怎么办 咋办 怎么样 怎么弄 咋弄",
        "@what": "什么 啥 什么样 啥子",
        "@why": "为什么 为啥 干嘛",
        "@whether": "能不能 可以 可不可以 能否 能 会不会 是否 吗 有没有 要不要 需不需要 可否 行不行",
    }.items()
    for word in words.split()
}

# Function words, pronouns, particles and question words: they say how something is asked, not what.
STOP_WORDS = frozenset(
    """
    的 地 得 了 着 过 吗 嘛 么 呢 吧 啊 呀 哦 噢 哟 啦 嘞 呗 哈 嗯 哎 唉 诶 喔 咯 哇 呐 滴 捏
    我 我们 俺 咱 咱们 你 你们 您 他 她 它 他们 她们 自己 人家 本人
    这 那 这个 那个 这些 那些 这样 那样 这种 那种 这么 那么 这边 那边 这儿 那儿 这里 那里 此 其
    是 不是 是不是 有 没 没有 有没有 在 和 与 及 以及 或 或者 还是 跟 同 就 都 也 还 又 再 才 只 并
    能 能不能 能否 可以 可不可以 可否 会 会不会 要 要不要 需要 需不需要 想 想要 应该 该 必须
    怎么 怎样 怎么样 怎么办 咋 咋办 咋样 如何 啥 什么 什么样 哪 哪个 哪些 哪里 哪儿 哪家 多少 几 为什么 为啥 干嘛
    一下 一下子 下 个 一个 些 一些 点 一点 一点儿 点儿 给 把 被 让 对 对于 从 到 去 来 上 中 里 后 前
    就是 但是 但 可是 不过 然后 而且 如果 要是 因为 所以 比如 比较 很 太 非常 特别 真 挺 最 更 已经 刚 刚刚
    问 问问 请 知道 了解 告诉 说 说明 一般 具体 具体点 情况 问题 事 事情 东西 方面 相关
    谁 啥子 好 好的 行不行 对不对 现在 目前 时候
    """.split()
) | frozenset(INTENT_MARKERS)


def initialise() -> None:
    """Load jieba's dictionary once per process (thread-safe; later calls return at once)."""
    global _initialised
    if _initialised:
        return
    with _lock:
        if not _initialised:
            jieba.initialize()
            _initialised = True


def add_words(words: Iterable[tuple[str, int | None]]) -> None:
    """Add domain words (word, frequency or None to let jieba keep it whole) to the dictionary."""
    initialise()
    with _lock:
        for word, freq in words:
            word = word.strip()
            if len(word) < 2 or _added.get(word, -1) == freq:
                continue
            jieba.add_word(word, freq)
            _added[word] = freq


def read_userdict(path: Path) -> list[tuple[str, int | None]]:
    """Parse a jieba user dictionary (``word [frequency] [tag]`` per line, ``#`` comments)."""
    words: list[tuple[str, int | None]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        freq = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        words.append((parts[0], freq))
    return words


def cut(text: str) -> list[str]:
    """jieba tokens of normalised text, spaces dropped. No HMM: unknown strings stay single characters,
    which keeps the corpus and the queries segmented alike and lets typo correction see them."""
    initialise()
    return [token for token in jieba.lcut(text, HMM=False) if not token.isspace()]


def _in_dictionary(word: str) -> bool:
    return bool(jieba.dt.FREQ.get(word))


def word_terms(tokens: list[str]) -> list[str]:
    terms: list[str] = []
    for token in tokens:
        if token in STOP_WORDS:
            marker = INTENT_MARKERS.get(token)
            if marker is not None:
                terms.append(marker)
            continue
        if len(token) > 2:
            for size in (2, 3):
                if len(token) > size:
                    terms.extend(
                        token[i : i + size]
                        for i in range(len(token) - size + 1)
                        if token[i : i + size] not in STOP_WORDS and _in_dictionary(token[i : i + size])
                    )
        terms.append(token)
    return terms


def content_runs(tokens: list[str]) -> list[str]:
    """Maximal runs of consecutive non-stop tokens, each joined into one string."""
    runs: list[str] = []
    current: list[str] = []
    for token in tokens:
        if token in STOP_WORDS:
            if current:
                runs.append("".join(current))
                current = []
        else:
            current.append(token)
    if current:
        runs.append("".join(current))
    return runs


def char_terms(tokens: list[str]) -> list[str]:
    terms: list[str] = []
    for run in content_runs(tokens):
        terms.extend(run)
        terms.extend(run[i : i + 2] for i in range(len(run) - 1))
    return terms
