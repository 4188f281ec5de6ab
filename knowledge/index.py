"""The inverted index: BM25 over words fused with BM25 over characters and character bigrams, per field.

Three fields, each its own BM25 index (its own document population and idf):
- ``question``: every phrasing of an entry as a separate document — the canonical question, each
  paraphrase, and the question followed by the keywords; the entry scores as its best phrasing
  (max-pooling), since a resident's question resembles one phrasing, not the union of them;
- ``entry``: one document per entry with all its phrasings and keywords, which rewards an entry whose
  phrasings together cover the question;
- ``answer``: the answer text, weak evidence that still separates entries on the same subject.
An entry's score is ``(question + entry_weight * entry + answer_weight * answer) / (1 + weights)``.
Out-of-scope phrasings ("decline" examples) are documents of the question field that belong to no
entry; a search also reports how well the best of them matched, next to the best FAQ phrasing.

bm25s computes the BM25 weight of every (term, document) posting and stores them column-wise per term
(CSC ``data``/``indices``/``indptr``), which is exactly an inverted index. Its own ``get_scores`` fills
a dense array over all documents for every query; we read only the postings of the query's terms, so a
query costs in proportion to the postings it touches. Postings of a term are kept best-first and at
most ``max_postings`` of them are read (impact-ordered early termination): beyond that a term is so
common that its weight is small, and the cut-off only ever applies to very large corpora. That sparse
read, the normalisation and the fusion below are the hand-written part.

Scores are made comparable across queries, channels and fields by dividing a document's BM25 score by
the query's *self-score* — the BM25 score the query would get against a document identical to itself —
so 1.0 means "this document says exactly what the query says". Query terms outside the vocabulary count
in the self-score with the weight of the rarest known term (times ``oov_factor``): an out-of-domain
question is mostly made of words the corpus never uses, and that lowers its score. In each field the
fused score is ``word_weight * words + (1 - word_weight) * characters``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import bm25s
import numpy as np

logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG

FIELDS = ("question", "entry", "answer")


@dataclass(frozen=True)
class IndexParams:
    k1: float = 1.2
    b: float = 0.5
    word_weight: float = 0.5
    oov_factor: float = 1.0
    entry_weight: float = 1.0
    answer_weight: float = 0.3
    max_postings: int = 4096

    def field_weight(self, field: str) -> float:
        return {"question": 1.0, "entry": self.entry_weight, "answer": self.answer_weight}[field]


@dataclass
class Documents:
    """The documents of one field: the entry each belongs to and its terms in both channels."""

    entries: list[int]
    words: list[list[str]]
    chars: list[list[str]]

    def add(self, entry: int, words: list[str], chars: list[str]) -> None:
        if words or chars:
            self.entries.append(entry)
            self.words.append(words)
            self.chars.append(chars)


def empty_documents() -> dict[str, Documents]:
    return {field: Documents([], [], []) for field in FIELDS}


class Channel:
    """One BM25 index over one kind of term."""

    def __init__(self, docs: list[list[str]], params: IndexParams) -> None:
        self.k1, self.b = params.k1, params.b
        self.oov_factor = params.oov_factor
        self.max_postings = params.max_postings
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
            self._order_long_postings()
        df = np.diff(self.indptr).astype(np.float64)
        # Lucene's idf, as bm25s uses it (method="lucene").
        self.idf = np.log1p((self.n_docs - df + 0.5) / (df + 0.5))
        self.max_idf = float(self.idf.max()) if len(self.idf) else math.log1p(self.n_docs + 0.5)

    def _order_long_postings(self) -> None:
        """Put the highest weights first in every posting list longer than the cut-off."""
        lengths = np.diff(self.indptr)
        for tid in np.flatnonzero(lengths > self.max_postings):
            start, end = self.indptr[tid], self.indptr[tid + 1]
            order = np.argsort(-self.data[start:end], kind="stable")
            self.data[start:end] = self.data[start:end][order]
            self.indices[start:end] = self.indices[start:end][order]

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
            end = min(end, start + self.max_postings)
            docs = self.indices[start:end]
            into[docs] += self.data[start:end] * scale  # docs are distinct within one posting list
            touched.append(docs)

    def nbytes(self) -> int:
        return self.data.nbytes + self.indices.nbytes + self.indptr.nbytes


class Field:
    def __init__(self, documents: Documents, params: IndexParams) -> None:
        self.word_weight = params.word_weight
        self.doc_entry = np.asarray(documents.entries, dtype=np.int32)
        self.words = Channel(documents.words, params)
        self.chars = Channel(documents.chars, params)

    @property
    def n_docs(self) -> int:
        return len(self.doc_entry)

    def best_per_entry(self, words: list[str], chars: list[str], into: np.ndarray) -> np.ndarray | None:
        """Write each touched entry's best document score into ``into``; returns the touched entries."""
        word_self, char_self = self.words.self_score(words), self.chars.self_score(chars)
        # np.zeros of a large array maps zero pages lazily: the cost follows the pages touched.
        fused = np.zeros(self.n_docs, dtype=np.float32)
        touched: list[np.ndarray] = []
        if word_self > 0:
            self.words.accumulate(words, self.word_weight / word_self, fused, touched)
        if char_self > 0:
            self.chars.accumulate(chars, (1 - self.word_weight) / char_self, fused, touched)
        if not touched:
            return None
        docs = np.concatenate(touched)
        entries = self.doc_entry[docs]
        np.maximum.at(into, entries, fused[docs])
        return entries

    def nbytes(self) -> int:
        return self.words.nbytes() + self.chars.nbytes() + self.doc_entry.nbytes


@dataclass(frozen=True)
class SearchResult:
    ranked: list[tuple[int, float]]  # (entry position, score), best first
    best_phrasing: float  # the best question-field score of any entry
    out_of_scope: float  # the best question-field score of any out-of-scope phrasing
    out_of_scope_topic: int | None = None  # which topic that phrasing belongs to


NO_RESULT = SearchResult([], 0.0, 0.0)


class FaqIndex:
    """Entries ranked by the weighted sum of their field scores. Question-field documents may belong to
    positions ``n_entries`` and above: those are the out-of-scope phrasings."""

    def __init__(self, n_entries: int, documents: dict[str, Documents], params: IndexParams,
                 n_out_of_scope: int = 0) -> None:
        self.params = params
        self.n_entries = n_entries
        self.n_out_of_scope = n_out_of_scope
        self.fields = {name: Field(documents[name], params) for name in FIELDS
                       if params.field_weight(name) > 0}
        self._norm = sum(params.field_weight(name) for name in self.fields)

    @property
    def n_docs(self) -> int:
        return sum(field.n_docs for field in self.fields.values())

    def word_vocabulary(self) -> set[str]:
        return {term for field in self.fields.values() for term in field.words.vocab if not term.startswith("@")}

    def bigram_vocabulary(self) -> set[str]:
        return {term for field in self.fields.values() for term in field.chars.vocab if len(term) == 2}

    def search(self, words: list[str], chars: list[str], k: int = 10) -> SearchResult:
        """The best ``k`` entries (only entries sharing a term with the query) and the phrasing scores."""
        size = self.n_entries + self.n_out_of_scope
        combined = np.zeros(size, dtype=np.float32)
        touched: list[np.ndarray] = []
        best_phrasing = out_of_scope = 0.0
        topic: int | None = None
        for name, field in self.fields.items():
            best_field = np.zeros(size, dtype=np.float32)
            entries = field.best_per_entry(words, chars, best_field)
            if entries is None:
                continue
            # Duplicated indices assign the same value once, so each entry gets its field score once.
            combined[entries] += best_field[entries] * (self.params.field_weight(name) / self._norm)
            touched.append(entries)
            if name == "question":
                best_phrasing = float(best_field[entries].max(initial=0.0, where=entries < self.n_entries))
                if self.n_out_of_scope:
                    topic = int(best_field[self.n_entries:].argmax())
                    out_of_scope = float(best_field[self.n_entries + topic])
        if not touched:
            return NO_RESULT
        seen = np.zeros(size, dtype=bool)
        seen[np.concatenate(touched)] = True
        candidates = np.flatnonzero(seen[: self.n_entries])
        values = combined[candidates]
        if len(values) > k:
            top = np.argpartition(-values, k - 1)[:k]
            candidates, values = candidates[top], values[top]
        order = np.lexsort((candidates, -values))  # best first, ties by corpus order
        ranked = [(int(candidates[i]), float(values[i])) for i in order]
        return SearchResult(ranked, best_phrasing, out_of_scope, topic if out_of_scope > 0 else None)

    def nbytes(self) -> int:
        return sum(field.nbytes() for field in self.fields.values())
