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
(CSC ``data``/``indices``/``indptr``), which is exactly an inverted index. A query reads only the
postings of its own terms; postings are kept best-first and at most ``max_postings`` of them are read
per term (impact-ordered early termination: beyond that a term is so common that its weight is small;
the cut-off only applies to very large corpora), so the scoring work is bounded whatever the corpus
size. The postings are then summed per document with one ``np.bincount`` and reduced to the best
document per entry with one ``np.maximum.reduceat`` (an entry's documents are contiguous): two C-speed
sweeps over a float array (about a millisecond at 100,000 entries), never a pass over documents' text.
bm25s's own ``get_scores`` would add every term's postings into a dense array with ``np.add.at``, which
is many times slower; that read, the normalisation and the fusion below are the hand-written part.

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
from array import array
from collections import Counter
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
    max_postings: int = 2048

    def field_weight(self, field: str) -> float:
        return {"question": 1.0, "entry": self.entry_weight, "answer": self.answer_weight}[field]


class TermIds:
    """Documents of one channel as compact arrays of term ids, with the vocabulary that numbers them
    (a large corpus's term lists would otherwise take gigabytes as Python strings and lists)."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.docs: list[array[int]] = []

    def add(self, terms: list[str]) -> None:
        vocab = self.vocab
        self.docs.append(array("i", [vocab.setdefault(term, len(vocab)) for term in terms]))


class Documents:
    """The documents of one field: the entry each belongs to and its terms in both channels."""

    def __init__(self) -> None:
        self.entries = array("i")
        self.words = TermIds()
        self.chars = TermIds()

    def add(self, entry: int, words: list[str], chars: list[str]) -> None:
        if words or chars:
            self.entries.append(entry)
            self.words.add(words)
            self.chars.add(chars)


def empty_documents() -> dict[str, Documents]:
    return {field: Documents() for field in FIELDS}


@dataclass(frozen=True)
class QueryTerms:
    words: Counter[str]
    n_words: int
    chars: Counter[str]
    n_chars: int


class Channel:
    """One BM25 index over one kind of term."""

    def __init__(self, terms: TermIds, params: IndexParams) -> None:
        self.k1, self.b = params.k1, params.b
        self.oov_factor = params.oov_factor
        self.max_postings = params.max_postings
        self.vocab = terms.vocab
        ids = terms.docs  # bm25s reads each document with len(), set() and Counter(): arrays will do
        self.n_docs = len(ids)
        self.avg_len = max(sum(map(len, ids)) / max(self.n_docs, 1), 1.0)
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

    def self_score(self, counts: Counter[str], length: int) -> float:
        """BM25 of the query against a document identical to it (``counts``: the query's term counts)."""
        if not counts:
            return 0.0
        norm = self.k1 * (1 - self.b + self.b * length / self.avg_len)
        total = 0.0
        for term, tf in counts.items():
            tid = self.vocab.get(term)
            weight = self.idf[tid] if tid is not None else self.max_idf * self.oov_factor
            total += weight * tf / (tf + norm)  # bm25s's lucene variant: no (k1 + 1) factor
        return total

    def postings(self, counts: Counter[str], docs: list[np.ndarray], weights: list[np.ndarray]) -> None:
        """Append the documents and BM25 weights of each query term's postings (best first, at most
        ``max_postings``) to ``docs`` and ``weights``."""
        for term in counts:
            tid = self.vocab.get(term)
            if tid is None:
                continue
            start = self.indptr[tid]
            end = min(self.indptr[tid + 1], start + self.max_postings)
            docs.append(self.indices[start:end])
            weights.append(self.data[start:end])

    def nbytes(self) -> int:
        return self.data.nbytes + self.indices.nbytes + self.indptr.nbytes


class Field:
    def __init__(self, documents: Documents, params: IndexParams, n_positions: int) -> None:
        self.word_weight = params.word_weight
        self.doc_entry = np.asarray(documents.entries, dtype=np.int32)
        if np.any(np.diff(self.doc_entry) < 0):
            raise ValueError("documents must be added entry by entry")
        # The documents of one entry are contiguous: entry e owns [offsets[i], offsets[i + 1]) where
        # owners[i] == e, so the best document per entry is one np.maximum.reduceat.
        self.owners, self.offsets = np.unique(self.doc_entry, return_index=True)
        self.n_positions = n_positions
        self.words = Channel(documents.words, params)
        self.chars = Channel(documents.chars, params)

    @property
    def n_docs(self) -> int:
        return len(self.doc_entry)

    def best_per_entry(self, query: QueryTerms) -> np.ndarray | None:
        """Each entry's best document score (zero for entries without a matching document), or None if no
        document contains a query term."""
        docs: list[np.ndarray] = []
        weights: list[np.ndarray] = []
        word_self = self.words.self_score(query.words, query.n_words)
        if word_self > 0:
            self.words.postings(query.words, docs, weights)
        n_word_lists = len(docs)
        char_self = self.chars.self_score(query.chars, query.n_chars)
        if char_self > 0:
            self.chars.postings(query.chars, docs, weights)
        if not docs:
            return None
        word_scale = self.word_weight / word_self if word_self > 0 else 0.0
        char_scale = (1 - self.word_weight) / char_self if char_self > 0 else 0.0
        all_weights = np.concatenate([w * (word_scale if i < n_word_lists else char_scale)
                                      for i, w in enumerate(weights)])
        # One C pass sums the postings per document; then one sweep takes the best document per entry.
        fused = np.bincount(np.concatenate(docs), weights=all_weights, minlength=self.n_docs)
        best = np.zeros(self.n_positions, dtype=np.float64)
        best[self.owners] = np.maximum.reduceat(fused, self.offsets)
        return best

    def nbytes(self) -> int:
        return (self.words.nbytes() + self.chars.nbytes() + self.doc_entry.nbytes + self.owners.nbytes
                + self.offsets.nbytes)


@dataclass(frozen=True)
class SearchResult:
    ranked: list[tuple[int, float]]  # (entry position, score), best first
    best_phrasing: float  # the best question-field score of any entry
    out_of_scope: float  # the best question-field score of any out-of-scope phrasing
    out_of_scope_topic: int | None = None  # which topic that phrasing belongs to
    # per ranked entry: its (question, entry, answer) field scores, the calibration model's features
    field_scores: list[tuple[float, float, float]] | None = None


NO_RESULT = SearchResult([], 0.0, 0.0)


class FaqIndex:
    """Entries ranked by the weighted sum of their field scores. Question-field documents may belong to
    positions ``n_entries`` and above: those are the out-of-scope phrasings."""

    def __init__(self, n_entries: int, documents: dict[str, Documents], params: IndexParams,
                 n_out_of_scope: int = 0) -> None:
        self.params = params
        self.n_entries = n_entries
        self.n_out_of_scope = n_out_of_scope
        self.fields = {name: Field(documents[name], params, n_entries + n_out_of_scope) for name in FIELDS
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
        query = QueryTerms(Counter(words), len(words), Counter(chars), len(chars))
        combined = np.zeros(self.n_entries, dtype=np.float64)
        per_field: dict[str, np.ndarray] = {}
        best_phrasing = out_of_scope = 0.0
        topic: int | None = None
        matched = False
        for name, field in self.fields.items():
            best = field.best_per_entry(query)
            if best is None:
                continue
            matched = True
            per_field[name] = best
            combined += best[: self.n_entries] * (self.params.field_weight(name) / self._norm)
            if name == "question":
                best_phrasing = float(best[: self.n_entries].max(initial=0.0))
                if self.n_out_of_scope:
                    topic = int(best[self.n_entries :].argmax())
                    out_of_scope = float(best[self.n_entries + topic])
        if not matched:
            return NO_RESULT
        candidates = np.flatnonzero(combined > 0)
        values = combined[candidates]
        if len(values) > k:
            top = np.argpartition(-values, k - 1)[:k]
            candidates, values = candidates[top], values[top]
        order = np.lexsort((candidates, -values))  # best first, ties by corpus order
        ranked = [(int(candidates[i]), float(values[i])) for i in order]
        scores = [tuple(float(per_field[name][position]) if name in per_field else 0.0 for name in FIELDS)
                  for position, _ in ranked]
        return SearchResult(ranked, best_phrasing, out_of_scope, topic if out_of_scope > 0 else None,
                            scores)  # type: ignore[arg-type]

    def nbytes(self) -> int:
        return sum(field.nbytes() for field in self.fields.values())
