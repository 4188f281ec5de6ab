"""The inverted index: BM25 over words fused with BM25 over character bigrams.

Every question of an entry (the canonical one and each paraphrase) and its keyword list are separate
documents; an entry scores as its best document (max-pooling), since a resident's question resembles
one phrasing, not the union of all of them.

bm25s computes the BM25 weight of every (term, document) posting and stores them column-wise per term
(CSC ``data``/``indices``/``indptr``), which is exactly an inverted index. Its own ``get_scores``
allocates and fills a dense array over all documents per term with ``np.add.at``; we instead read the
postings of the query's terms only, so a query costs in proportion to the postings it touches. That
sparse read, the normalisation and the fusion below are the hand-written part.

Scores are made comparable across queries and channels by dividing a document's BM25 score by the
query's *self-score* — the BM25 score the query would get against a document identical to itself —
so 1.0 means "this document says exactly what the query says". Query terms outside the vocabulary
count in the self-score with the weight of the rarest known term (times ``oov_factor``): an
out-of-domain question is mostly made of words the corpus never uses, and that lowers its score.
The fused score is ``word_weight * words + (1 - word_weight) * bigrams``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import bm25s
import numpy as np

logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG


@dataclass(frozen=True)
class IndexParams:
    k1: float = 1.2
    b: float = 0.75
    word_weight: float = 0.5
    oov_factor: float = 1.0


class Channel:
    """One BM25 index over one kind of term."""

    def __init__(self, docs: list[list[str]], params: IndexParams) -> None:
        self.k1, self.b = params.k1, params.b
        self.oov_factor = params.oov_factor
        self.vocab: dict[str, int] = {}
        ids = [[self.vocab.setdefault(term, len(self.vocab)) for term in doc] for doc in docs]
        self.n_docs = len(docs)
        self.avg_len = max(sum(map(len, docs)) / max(self.n_docs, 1), 1.0)
        if not self.vocab:
            self.data = np.zeros(0, np.float32)
            self.indices = np.zeros(0, np.int32)
            self.indptr = np.zeros(1, np.int64)
        else:
            model = bm25s.BM25(k1=params.k1, b=params.b, method="lucene")
            model.index((ids, self.vocab), create_empty_token=False, show_progress=False)
            self.data = model.scores["data"]
            self.indices = model.scores["indices"]
            self.indptr = model.scores["indptr"]
        df = np.diff(self.indptr).astype(np.float64)
        # Lucene's idf, as bm25s uses it (method="lucene").
        self.idf = np.log1p((self.n_docs - df + 0.5) / (df + 0.5))
        self.max_idf = float(self.idf.max()) if len(self.idf) else math.log1p(self.n_docs + 0.5)

    def self_score(self, terms: list[str]) -> float:
        """BM25 of the query against a document identical to it (each distinct term counted once)."""
        if not terms:
            return 0.0
        norm = self.k1 * (1 - self.b + self.b * len(terms) / self.avg_len)
        total = 0.0
        for term in set(terms):
            tf = terms.count(term)
            tid = self.vocab.get(term)
            weight = self.idf[tid] if tid is not None else self.max_idf * self.oov_factor
            total += weight * tf / (tf + norm)  # bm25s's lucene variant: no (k1 + 1) factor
        return total

    def accumulate(self, terms: list[str], scale: float, into: np.ndarray, touched: list[np.ndarray]) -> None:
        """Add ``scale`` times the BM25 score of every document containing a query term to ``into``."""
        for term in set(terms):
            tid = self.vocab.get(term)
            if tid is None:
                continue
            start, end = self.indptr[tid], self.indptr[tid + 1]
            docs = self.indices[start:end]
            into[docs] += self.data[start:end] * scale  # docs are distinct within one posting list
            touched.append(docs)

    def nbytes(self) -> int:
        return self.data.nbytes + self.indices.nbytes + self.indptr.nbytes


class FaqIndex:
    """Documents grouped by entry; ``search`` ranks entries by their best document's fused score."""

    def __init__(self, doc_entries: list[int], word_docs: list[list[str]], bigram_docs: list[list[str]],
                 params: IndexParams) -> None:
        self.params = params
        self.doc_entry = np.asarray(doc_entries, dtype=np.int32)
        self.words = Channel(word_docs, params)
        self.bigrams = Channel(bigram_docs, params)

    @property
    def n_docs(self) -> int:
        return len(self.doc_entry)

    def word_vocabulary(self) -> set[str]:
        return set(self.words.vocab)

    def search(self, words: list[str], bigrams: list[str], k: int = 10) -> list[tuple[int, float]]:
        """The best ``k`` entries as (entry position, fused score), best first; only entries that share a
        term with the query."""
        weight = self.params.word_weight
        word_self, bigram_self = self.words.self_score(words), self.bigrams.self_score(bigrams)
        if word_self <= 0 and bigram_self <= 0:
            return []
        # np.zeros of a large array maps zero pages lazily: the cost follows the pages touched.
        fused = np.zeros(self.n_docs, dtype=np.float32)
        touched: list[np.ndarray] = []
        if word_self > 0:
            self.words.accumulate(words, weight / word_self, fused, touched)
        if bigram_self > 0:
            self.bigrams.accumulate(bigrams, (1 - weight) / bigram_self, fused, touched)
        if not touched:
            return []
        candidates = np.concatenate(touched)  # a document appears once per matching term
        values = fused[candidates]
        # Each document repeats at most once per distinct query term, so this many best postings hold
        # at least ``limit`` distinct documents.
        distinct_terms = len(set(words)) + len(set(bigrams))
        limit = max(k * 16, 64) * distinct_terms
        if len(values) > limit:
            top = np.argpartition(-values, limit - 1)[:limit]
            candidates, values = candidates[top], values[top]
        order = np.argsort(-values, kind="stable")
        ranked: list[tuple[int, float]] = []
        seen: set[int] = set()
        for position in order:
            entry = int(self.doc_entry[candidates[position]])
            if entry in seen:
                continue
            seen.add(entry)
            ranked.append((entry, float(values[position])))
            if len(ranked) == k:
                break
        return ranked

    def nbytes(self) -> int:
        return self.words.nbytes() + self.bigrams.nbytes() + self.doc_entry.nbytes
