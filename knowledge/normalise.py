"""Text normalisation shared by the corpus and the queries (pure functions, no I/O).

``clean`` folds full-width to half-width (NFKC), traditional to simplified (OpenCC ``t2s``), lower-cases,
and turns punctuation, emoji, symbols and control characters into spaces. ``strip_politeness`` then drops
greetings and politeness ("你好，请问一下……谢谢") that carry no meaning for retrieval. ``normalise`` does both.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from opencc import OpenCC

_T2S = OpenCC("t2s")

# Letters and digits (Unicode categories L* and N*, exactly what ``\w`` keeps besides "_") stay; every run
# of anything else (punctuation, symbols and emoji, separators, controls, format characters such as ZWJ
# and variation selectors, combining marks, surrogates, private use) becomes one space, so it also
# separates words.
_NOT_WORD = re.compile(r"[\W_]+")
_SPACES = re.compile(r"\s+")

# Greetings, thanks and politeness formulas. Longer forms first so the regex removes them whole.
_POLITENESS = [
    "你们好", "大家好", "您好", "你好", "哈喽", "哈罗", "嗨", "早上好", "上午好", "中午好",
    "下午好", "晚上好", "在吗", "在不在", "在么", "有人吗", "有人在吗",
    "麻烦问一下", "麻烦问下", "麻烦您", "麻烦你", "麻烦了", "打扰一下", "打扰了", "打扰您",
    "请问一下", "请问下", "请问", "想问一下", "想问下", "问一下", "问下", "咨询一下", "请教一下", "请教",
    "谢谢你们", "谢谢您", "谢谢你", "谢谢啦", "谢谢了", "谢谢", "多谢", "感谢您", "感谢你", "感谢",
    "辛苦了", "辛苦啦", "不好意思", "劳驾",
]
_POLITENESS_RE = re.compile("|".join(re.escape(p) for p in sorted(_POLITENESS, key=len, reverse=True)))
# ASCII greetings only count as whole words ("hi" inside "ship" is not a greeting).
_ASCII_GREETING_RE = re.compile(r"(?<![a-z])(hello|hi)(?![a-z])")


@lru_cache(maxsize=65536)
def _traditional(char: str) -> bool:
    return _T2S.convert(char) != char


def to_simplified(text: str) -> str:
    """OpenCC t2s, skipped for text without a traditional character (its pure-Python conversion is the
    slowest step of building a large index)."""
    return _T2S.convert(text) if any(map(_traditional, text)) else text


@lru_cache(maxsize=4096)
def clean(text: str) -> str:
    """Width-folded, simplified, lower-case text with every non-word character turned into one space."""
    text = _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text))
    return to_simplified(text).lower().strip()


def strip_politeness(cleaned: str) -> str:
    """Remove greetings and politeness formulas from cleaned text."""
    text = _ASCII_GREETING_RE.sub(" ", cleaned)
    text = _POLITENESS_RE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def normalise(text: str) -> str:
    """The form used for matching, for the gap key and for duplicate checks."""
    return strip_politeness(clean(text))
