"""The synonym table: groups of words that mean the same here; the first word of a group is canonical.

Both the corpus and the queries are rewritten to canonical words before segmentation, so "社保卡丢了"
and "医保卡丢了" produce the same terms in both index channels. Canonical words are matched too (and
map to themselves), so a variant that is part of a longer canonical word ("电子凭证" inside
"医保电子凭证") is never rewritten inside it: the regex takes the leftmost, then longest, match. A
one-character synonym is only rewritten where jieba leaves it as a token of its own (``canonical_token``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class SynonymError(ValueError):
    pass


class Synonyms:
    def __init__(self, groups: Iterable[Iterable[str]] = ()) -> None:
        self.canonical: dict[str, str] = {}
        self.groups: list[list[str]] = []
        for group in groups:
            words = [str(word).strip() for word in group if str(word).strip()]
            if len(words) < 2:
                continue
            self.groups.append(words)
            for word in words:
                known = self.canonical.get(word)
                if known is not None and known != words[0]:
                    raise SynonymError(f"同义词“{word}”同时属于“{known}”组和“{words[0]}”组")
                self.canonical[word] = words[0]
        # Single characters are rewritten per jieba token only ("交" alone, never inside "交通").
        ordered = sorted((word for word in self.canonical if len(word) > 1), key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def rewrite(self, text: str) -> str:
        """Text with every synonym replaced by its canonical word."""
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self.canonical[m.group(0)], text)

    def canonical_token(self, token: str) -> str:
        return self.canonical.get(token, token)

    def canonical_words(self) -> list[str]:
        return [group[0] for group in self.groups]

    def variants(self) -> dict[str, str]:
        """Every non-canonical word and its canonical word."""
        return {word: canon for word, canon in self.canonical.items() if word != canon}
