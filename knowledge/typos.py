"""Typo and homophone tolerance through pinyin: "异地就医备按" → "异地就医备案", "生育津帖" → "生育津贴".

Residents type with pinyin input methods, so their misspellings are mostly homophones of the word they
meant. The corrector knows the index vocabulary (and the synonym variants) by toneless pinyin. In a
query it looks at token-aligned windows of two to six characters that contain a lone non-stop
character — jieba (without HMM) emits every multi-character token from its dictionary, so an unknown
or misspelt word is what falls apart into single characters — and replaces a window whose pinyin
spells a known word it does not already equal. A window whose every character bigram occurs in the
corpus is attested text ("驻院" inside "医保驻院服务站"), not a typo, and is left alone; so are
pinyin keys shared by two different known words. Pure logic; pypinyin supplies the readings.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from functools import lru_cache

from pypinyin import Style, lazy_pinyin, pinyin

from knowledge.segment import STOP_WORDS

MAX_WORD = 6
_MAX_READINGS = 3
_MAX_KEYS = 32


def _is_hanzi(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf"


@lru_cache(maxsize=20000)
def _readings(char: str) -> tuple[str, ...]:
    """Toneless readings of one character (heteronyms included), or () for a non-Chinese character."""
    if not _is_hanzi(char):
        return ()
    return tuple(pinyin(char, style=Style.NORMAL, heteronym=True)[0][:_MAX_READINGS])


def word_key(word: str) -> tuple[str, ...]:
    return tuple(lazy_pinyin(word, style=Style.NORMAL))


class PinyinCorrector:
    def __init__(self, targets: Iterable[tuple[str, str]], known: set[str],
                 attested_bigrams: set[str] | frozenset[str] = frozenset()) -> None:
        """``targets``: (surface word, word to write instead) pairs; ``known``: the index vocabulary;
        ``attested_bigrams``: the character bigrams that occur in the corpus."""
        self.known = known
        self.attested_bigrams = attested_bigrams
        table: dict[tuple[str, ...], str | None] = {}
        for surface, replacement in targets:
            if not 2 <= len(surface) <= MAX_WORD or not all(map(_is_hanzi, surface)):
                continue
            key = word_key(surface)
            previous = table.get(key, replacement)
            # Two different words with the same pinyin: a typo could mean either, so correct to neither.
            table[key] = replacement if previous == replacement else None
        self.table = {key: word for key, word in table.items() if word is not None}

    @staticmethod
    def _suspicious(token: str) -> bool:
        return len(token) == 1 and token not in STOP_WORDS and _is_hanzi(token)

    def _attested(self, window: str) -> bool:
        return bool(self.attested_bigrams) and all(
            window[i : i + 2] in self.attested_bigrams for i in range(len(window) - 1))

    def _replacement(self, window: str) -> str | None:
        readings = [_readings(char) for char in window]
        if not all(readings):
            return None
        for count, key in enumerate(itertools.product(*readings)):
            if count >= _MAX_KEYS:
                break
            word = self.table.get(key)
            if word is not None and word != window:
                return word
        return None

    def correct(self, tokens: list[str]) -> tuple[list[str], bool]:
        """The tokens with misspelt words replaced (a replacement is one token), and whether any was."""
        if not self.table or not any(self._suspicious(token) for token in tokens):
            return tokens, False
        out: list[str] = []
        changed = False
        i = 0
        while i < len(tokens):
            best: tuple[int, str] | None = None
            length = 0
            for j in range(i, len(tokens)):
                length += len(tokens[j])
                if length > MAX_WORD:
                    break
                if length < 2:
                    continue
                window_tokens = tokens[i : j + 1]
                window = "".join(window_tokens)
                if (window in self.known or not any(map(self._suspicious, window_tokens))
                        or self._attested(window)):
                    continue
                word = self._replacement(window)
                if word is not None:
                    best = (j + 1, word)  # keep the longest window that spells a known word
            if best is None:
                out.append(tokens[i])
                i += 1
            else:
                out.append(best[1])
                changed = True
                i = best[0]
        return out, changed
