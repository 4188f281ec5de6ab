"""The FAQ engine: one immutable object holding a corpus and its index, answering questions.

A question goes through normalisation → synonym rewriting → jieba → pinyin typo correction → terms for
both index channels → ranked entries → a calibrated probability per candidate (``knowledge.calibration``)
→ a reply of one of four kinds:

- ``refer``: a neighbouring service's question (养老保险、失业、工伤、公积金、社保卡的金融功能): a short
  referral with its hotline and channel, when one of that topic's phrasings matches about as well as
  the best FAQ evidence, or when it names the topic and no FAQ entry is likely right;
- ``decline``: another out-of-scope phrasing ("银行卡丢了怎么挂失") matches about as well as the best
  FAQ evidence, or no candidate reaches the clarify threshold: a helpful fallback (rephrase, a person,
  the 12393 hotline); the caller records the question as a knowledge gap;
- ``answer``: the most probable entry reaches the answer threshold (never for a single character);
  siblings that are also plausible are offered as "您可能还想问", else up to three related questions;
- ``clarify``: between the two thresholds, the three most probable entries ("您是不是想问"; for a bare
  topic, the "what is" entry first when it scores near the best).

The retrieval parameters were tuned on the development half of the evaluation set only, the model and
its thresholds are learned on it; see ``knowledge/README-tuning.md``.
An engine is never modified after ``__init__``, so a hot reload builds a
new one and swaps a single reference.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from knowledge import calibration, segment
from knowledge.calibration import CANDIDATES, Model
from knowledge.corpus import DATA_DIR, Corpus, Entry, OutOfScope, load_corpus
from knowledge.index import Documents, FaqIndex, IndexParams, SearchResult, empty_documents
from knowledge.normalise import clean, strip_politeness
from knowledge.typos import PinyinCorrector

MAX_QUESTION_CHARS = 500
SUGGESTIONS = 3
RELATED = 3
# A bare topic ("共济", "两病是什么") asks about the subject as a whole: among the entries scoring within
# this fraction of the best one, those whose canonical question asks what something is ("什么是…",
# "…是什么") are suggested first. Only the order of suggestions changes, never a decision.
OVERVIEW_WINDOW = 0.1
TIE = 0.02  # two candidates this close in probability are indistinguishable: never answer one of them
BARE_TOPIC_FLOOR = 0.02  # a bare topic of corpus words is clarified, not declined, down to this probability
_WHAT_IS = {("什么", "是"), ("是", "什么"), ("是", "啥")}

FALLBACK_MESSAGE = ("抱歉，这个问题我暂时还答不上来。您可以换个说法再问一次，或转人工服务，"
                    "也可以拨打 12393 医保服务热线咨询。")
SUGGEST_MESSAGE = "您是不是想问："
SIBLINGS_MESSAGE = "您可能还想问："
REASON_MESSAGES = {
    "empty": "请输入您想咨询的医保问题。",
    "too_long": f"问题太长了，请精简到 {MAX_QUESTION_CHARS} 字以内再问。",
    "no_content": "没有看懂您的问题，请用文字描述您想咨询的医保问题。",
    "greeting": "您好！我是医保小助手，请问有什么医保问题可以帮您？",
    "unavailable": "问答服务暂时不可用，请稍后再试，或拨打 12393 医保服务热线咨询。",
}
KINDS = ("answer", "clarify", "refer", "decline")


@dataclass(frozen=True)
class Params:
    index: IndexParams = field(default_factory=IndexParams)
    answer_threshold: float = 0.45
    suggest_threshold: float = 0.3
    margin: float = 0.1
    # Decline when an out-of-scope phrasing scores higher than the best FAQ evidence minus this.
    out_of_scope_margin: float = 0.1


DEFAULT_PARAMS = Params()


@dataclass
class Answer:
    answered: bool
    faq_id: str | None = None
    question: str | None = None  # the matched canonical question
    answer: str | None = None
    score: float = 0.0
    suggestions: list[dict[str, str]] = field(default_factory=list)
    reason: str | None = None  # input that is not a question (empty, too_long, no_content, greeting …), or refer
    message: str | None = None  # what to say besides an answer: the fallback, "您是不是想问：", a referral …
    kind: str = ""  # answer | clarify | refer | decline (when not given: from answered and suggestions)
    confidence: float = 0.0  # calibrated probability that the first entry offered is the one asked about

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = "answer" if self.answered else ("clarify" if self.suggestions else "decline")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def decision(self) -> str:
        """The older name of the kind (metrics and knowledge gaps): answer, suggest, refer or decline."""
        return "suggest" if self.kind == "clarify" else self.kind


def declined(reason: str | None = None, score: float = 0.0, confidence: float = 0.0) -> Answer:
    message = REASON_MESSAGES.get(reason, FALLBACK_MESSAGE) if reason else FALLBACK_MESSAGE
    return Answer(answered=False, score=score, reason=reason, message=message, confidence=confidence)


def referred(topic: OutOfScope, score: float = 0.0, confidence: float = 0.0) -> Answer:
    """A neighbouring service's question: its hotline and channel (reason "refer": not a knowledge gap)."""
    return Answer(answered=False, score=score, reason="refer", message=topic.refer, kind="refer",
                  confidence=confidence)


@dataclass(frozen=True)
class Analysis:
    text: str  # normalised and rewritten to canonical synonyms (and typo-corrected for queries)
    words: list[str]
    chars: list[str]
    corrected: bool = False
    content_tokens: int = 0  # tokens that are not stop words

    content_chars: int = 0
    content: tuple[str, ...] = ()  # those tokens

    @property
    def bare_topic(self) -> bool:
        return self.content_tokens <= 1

    @property
    def one_character(self) -> bool:
        return self.content_chars <= 1


@dataclass(frozen=True)
class Ranked:
    entry: Entry
    score: float


@dataclass(frozen=True)
class Lookup:
    ranked: list[Ranked]
    result: SearchResult
    analysis: Analysis
    probabilities: list[float] = field(default_factory=list)  # calibrated, for ranked[:CANDIDATES] (reordered)

    @property
    def runner_up(self) -> float:
        return self.ranked[1].score if len(self.ranked) > 1 else 0.0

    @property
    def out_of_scope_lead(self) -> float:
        """How much better the best out-of-scope phrasing matched than the strongest FAQ evidence (the best
        phrasing, or the best entry's fused score); minus infinity when none matched at all."""
        if self.result.out_of_scope <= 0:
            return -math.inf
        best = max(self.result.best_phrasing, self.ranked[0].score if self.ranked else 0.0)
        return self.result.out_of_scope - best


def decide(best: float, runner_up: float, params: Params, out_of_scope_lead: float = -math.inf,
           bare_topic: bool = False, one_character: bool = False) -> str:
    """The two-threshold decision from the best and second-best entry scores. ``out_of_scope_lead``: how
    much better the best out-of-scope phrasing matched than the best FAQ evidence. ``bare_topic``: the
    question is a single word ("共济"), a subject rather than a question, so when another entry is also
    a plausible reading the resident chooses. ``one_character``: too little to answer on ("卡")."""
    if out_of_scope_lead > -params.out_of_scope_margin:
        return "decline"
    ambiguous_topic = one_character or (bare_topic and runner_up >= params.suggest_threshold)
    if best >= params.answer_threshold and best - runner_up >= params.margin and not ambiguous_topic:
        return "answer"
    return "suggest" if best >= params.suggest_threshold else "decline"


def _confidence(score: float) -> float:
    return round(min(max(score, 0.0), 1.0), 4)


class Engine:
    def __init__(self, corpus: Corpus, params: Params = DEFAULT_PARAMS, db_version: int | None = None, *,
                 keep_documents: bool = False, model: Model | None = None) -> None:
        """``keep_documents``: keep the analysed documents so ``with_params`` can rebuild the index (tuning)."""
        self.corpus = corpus
        self.params = params
        self.db_version = db_version
        self.fingerprint = corpus.fingerprint
        self.synonyms = corpus.synonyms
        segment.add_words([*corpus.userdict, *((word, None) for word in self.synonyms.canonical_words())])
        self._documents = empty_documents()
        overviews: set[str] = set()
        # per entry, for the calibration model's features: the question types of its canonical question,
        # the content words of all its texts, and its keywords as rewritten text
        self._types: dict[str, frozenset[str]] = {}
        self._vocab: dict[str, frozenset[str]] = {}
        self._keywords: dict[str, tuple[str, ...]] = {}
        for position, entry in enumerate(corpus.entries):
            phrasings = [self._tokens_of(text) for text in (entry.question, *entry.paraphrases)]
            if any(pair in _WHAT_IS for pair in itertools.pairwise(phrasings[0])):
                overviews.add(entry.id)
            keywords = self._tokens_of(" ".join(entry.keywords))
            for parts in [*([tokens] for tokens in phrasings), [phrasings[0], keywords]]:
                self._add(self._documents["question"], position, parts)
            self._add(self._documents["entry"], position, [*phrasings, keywords])
            answer_tokens = self._tokens_of(entry.answer)
            self._add(self._documents["answer"], position, [answer_tokens])
            self._types[entry.id] = frozenset(segment.INTENT_MARKERS[t] for t in phrasings[0]
                                              if t in segment.INTENT_MARKERS)
            self._vocab[entry.id] = frozenset(t for tokens in (*phrasings, keywords, answer_tokens) for t in tokens
                                              if t not in segment.STOP_WORDS)
            self._keywords[entry.id] = tuple(k for k in ("".join(self._tokens_of(w)) for w in entry.keywords) if k)
        first = len(corpus.entries)
        for offset, topic in enumerate(corpus.out_of_scope):
            for example in topic.examples:
                self._add(self._documents["question"], first + offset, [self._tokens_of(example)])
        self.overviews = frozenset(overviews)  # entries whose canonical question asks what something is
        self.model: Model = model if model is not None else calibration.load(_model_path(corpus))
        self.referrals = [(topic, tuple(k for k in ("".join(self._tokens_of(w)) for w in topic.keywords) if k))
                          for topic in corpus.out_of_scope if topic.refer]
        self.index = self._new_index(params)
        vocabulary = self.index.word_vocabulary()
        targets = [(word, word) for word in vocabulary if len(word) >= 2]
        targets += list(self.synonyms.variants().items())
        self.corrector = PinyinCorrector(targets, known=vocabulary | set(self.synonyms.canonical),
                                         attested_bigrams=self.index.bigram_vocabulary())
        self.vocabulary = frozenset(vocabulary)
        if not keep_documents:
            self._documents = None  # the index holds all it needs; the term lists are large

    @staticmethod
    def _add(documents: Documents, position: int, parts: list[list[str]]) -> None:
        """One document made of several texts (terms never span two of them)."""
        documents.add(position, [term for tokens in parts for term in segment.word_terms(tokens)],
                      [term for tokens in parts for term in segment.char_terms(tokens)])

    def with_params(self, params: Params) -> Engine:
        """The same corpus under other parameters (tuning): analysis is reused, the index is rebuilt only
        if its own parameters differ."""
        engine = copy.copy(self)
        engine.params = params
        if params.index != self.params.index:
            if self._documents is None:
                raise ValueError("engine built without keep_documents=True")
            engine.index = self._new_index(params)
        return engine

    def _new_index(self, params: Params) -> FaqIndex:
        assert self._documents is not None
        return FaqIndex(len(self.corpus.entries), self._documents, params.index,
                        n_out_of_scope=len(self.corpus.out_of_scope))

    def with_model(self, model: Model) -> Engine:
        """The same index under another calibration model (training)."""
        engine = copy.copy(self)
        engine.model = model
        return engine

    @classmethod
    def build(cls, data_dir: Path = DATA_DIR, params: Params = DEFAULT_PARAMS,
              db_version: int | None = None, *, keep_documents: bool = False, model: Model | None = None) -> Engine:
        return cls(load_corpus(data_dir), params, db_version, keep_documents=keep_documents, model=model)

    # -- analysis ---------------------------------------------------------------------------------

    def _tokens_of(self, text: str) -> list[str]:
        """Normalised, synonym-rewritten jieba tokens (no typo correction: used for the corpus)."""
        rewritten = self.synonyms.rewrite(strip_politeness(clean(text)))
        return [self.synonyms.canonical_token(token) for token in segment.cut(rewritten)]

    def analyse(self, text: str) -> Analysis:
        tokens, corrected = self.corrector.correct(self._tokens_of(text))
        content = [token for token in tokens if token not in segment.STOP_WORDS]
        return Analysis(text="".join(tokens), words=segment.word_terms(tokens), chars=segment.char_terms(tokens),
                        corrected=corrected, content_tokens=len(content), content_chars=sum(map(len, content)),
                        content=tuple(content))

    # -- retrieval --------------------------------------------------------------------------------

    def lookup(self, question: str, k: int = 10) -> Lookup:
        """The ranking, its best ``CANDIDATES`` reordered by calibrated probability (which ``probabilities``
        holds, best first)."""
        found = self.retrieve(question, k)
        ranked, result, analysis = found.ranked, found.result, found.analysis
        if not ranked:
            return found
        model = self.model
        scored = sorted(zip((model.probability(x) for x in self.features(found)), range(len(ranked)), strict=False),
                        key=lambda pair: (-pair[0], pair[1]))
        head = [ranked[i] for _, i in scored]
        return Lookup(head + ranked[len(head):], result, analysis, [p for p, _ in scored])

    def retrieve(self, question: str, k: int = 10) -> Lookup:
        """The ranking by fused score alone (no calibration)."""
        analysis = self.analyse(question)
        result = self.index.search(analysis.words, analysis.chars, k)
        entries = self.corpus.entries
        return Lookup([Ranked(entries[position], score) for position, score in result.ranked], result, analysis)

    def referral_named(self, analysis: Analysis) -> OutOfScope | None:
        """The neighbouring service whose keyword the question contains, if any."""
        for topic, keywords in self.referrals:
            if any(keyword in analysis.text for keyword in keywords):
                return topic
        return None

    def features(self, found: Lookup) -> list[list[float]]:
        """The model's features (``calibration.FEATURES``) of each of the best ``CANDIDATES`` entries."""
        a = found.analysis
        ranked = found.ranked[:CANDIDATES]
        fields = found.result.field_scores or [(0.0, 0.0, 0.0)] * len(ranked)
        types = {w for w in a.words if w.startswith("@")}
        content = a.content
        n_content = len(content)
        unknown = sum(1 for t in content if t not in self.vocabulary) / n_content if n_content else 0.0
        lead = found.out_of_scope_lead
        lead = -1.0 if lead == -math.inf else max(-1.0, min(1.0, lead))
        referral = 1.0 if self.referral_named(a) is not None else 0.0
        scores = [r.score for r in ranked]
        length = math.log1p(n_content)
        rows = []
        for i, item in enumerate(ranked):
            entry_id = item.entry.id
            others = max((s for j, s in enumerate(scores) if j != i), default=0.0)
            entry_types = self._types[entry_id]
            vocab = self._vocab[entry_id]
            covered = sum(1 for t in content if t in vocab)
            hits = sum(1 for keyword in self._keywords[entry_id] if keyword in a.text)
            q, e, ans = fields[i]
            rows.append([
                item.score, item.score - others, 1.0 if i == 0 else 0.0, q, e, ans, lead,
                1.0 if types & entry_types else 0.0, 1.0 if types and not types & entry_types else 0.0,
                covered / n_content if n_content else 1.0, float(min(n_content - covered, 5)), unknown,
                float(min(hits, 3)), float(a.bare_topic), float(a.one_character), float(a.corrected), length, referral,
            ])
        return rows

    def rank(self, question: str, k: int = 10) -> list[Ranked]:
        return self.lookup(question, k).ranked

    def _check_input(self, question: object) -> Answer | None:
        if not isinstance(question, str):
            return declined("empty")
        stripped = question.strip()
        if not stripped:
            return declined("empty")
        if len(stripped) > MAX_QUESTION_CHARS:
            return declined("too_long")
        cleaned = clean(stripped)
        if not cleaned:
            return declined("no_content")
        if not strip_politeness(cleaned):
            return declined("greeting")
        return None

    def respond(self, question: str) -> tuple[Answer, list[Ranked]]:
        """The reply and the ranking it was made from (the evaluation reads both)."""
        rejected = self._check_input(question)
        if rejected is not None:
            return rejected, []
        found = self.lookup(question)
        ranked, analysis = found.ranked, found.analysis
        named = self.referral_named(analysis)
        if not ranked:
            return (referred(named) if named else declined()), []
        best = ranked[0]
        score = _confidence(best.score)
        p = found.probabilities[0]
        confidence = round(p, 4)
        if found.out_of_scope_lead > -self.params.out_of_scope_margin:
            topic = self.corpus.out_of_scope[found.result.out_of_scope_topic or 0]
            if topic.refer:
                return referred(topic, score, confidence), ranked
            return declined(score=score, confidence=confidence), ranked
        thresholds = self.model.thresholds
        second = found.probabilities[1] if len(found.probabilities) > 1 else 0.0
        tied = second >= p - TIE
        # a bare topic ("共济") with another plausible entry names a subject, not one question: a list
        runner_up = found.result.ranked[1][1] if len(found.result.ranked) > 1 else 0.0  # second fused score
        subject = analysis.bare_topic and (second >= thresholds.sibling or runner_up >= self.params.suggest_threshold)
        if p >= thresholds.answer and not analysis.one_character and not tied and not subject:
            siblings = [item for item, q in zip(ranked[1:], found.probabilities[1:], strict=False)
                        if q >= thresholds.sibling]
            if siblings:
                offered, message = siblings, SIBLINGS_MESSAGE
            else:
                floor = self.params.suggest_threshold
                offered = [item for item in ranked[1:] if item.score >= floor
                           and (item.entry.category == best.entry.category or item.score >= 0.8 * best.score)]
                message = None
            return Answer(answered=True, faq_id=best.entry.id, question=best.entry.question,
                          answer=best.entry.answer, score=score, message=message, kind="answer",
                          confidence=confidence,
                          suggestions=[_suggestion(item.entry) for item in offered[:RELATED]]), ranked
        if named is not None:
            return referred(named, score, confidence), ranked
        # a bare topic ("医保", "两病") names a subject: a list of its entries is the useful reply
        known_topic = analysis.bare_topic and all(t in self.vocabulary for t in analysis.content)
        if p >= thresholds.clarify or (known_topic and p >= BARE_TOPIC_FLOOR):
            if analysis.bare_topic and {w for w in analysis.words if w.startswith("@")} <= {"@what"}:
                ranked = self._overviews_first(ranked)
            return Answer(answered=False, score=score, message=SUGGEST_MESSAGE, kind="clarify", confidence=confidence,
                          suggestions=[_suggestion(item.entry) for item in ranked[:SUGGESTIONS]]), ranked
        return declined(score=score, confidence=confidence), ranked

    def _overviews_first(self, ranked: list[Ranked]) -> list[Ranked]:
        """For a bare topic: the "what is" entries among those near the best score come first."""
        near = ranked[0].score * (1 - OVERVIEW_WINDOW)
        first = [item for item in ranked if item.score >= near and item.entry.id in self.overviews]
        return first + [item for item in ranked if item not in first]

    def answer(self, question: str) -> Answer:
        return self.respond(question)[0]

    def explain(self, question: str) -> dict[str, Any]:
        """How a question was analysed and scored (for editors tuning the corpus)."""
        answer, _ = self.respond(question)
        if answer.reason is not None:
            return {"decision": answer.decision, "reason": answer.reason}
        found = self.lookup(question, 5)
        analysis, ranked, result = found.analysis, found.ranked, found.result
        topic = result.out_of_scope_topic
        return {
            "decision": answer.decision, "text": analysis.text, "corrected": analysis.corrected,
            "kind": answer.kind, "confidence": answer.confidence,
            "words": analysis.words, "ranked": [{"faq_id": r.entry.id, "question": r.entry.question,
                                                 "score": round(r.score, 4),
                                                 "probability": round(p, 4) if p is not None else None}
                                                for r, p in itertools.zip_longest(ranked, found.probabilities)],
            "best_phrasing": round(result.best_phrasing, 4), "out_of_scope": round(result.out_of_scope, 4),
            "out_of_scope_topic": self.corpus.out_of_scope[topic].topic if topic is not None else None,
        }

    def search(self, query: str, k: int = 10) -> list[dict[str, Any]]:
        """The best ``k`` entries for a search box, thresholds aside."""
        if self._check_input(query) is not None:
            return []
        return [{**_suggestion(item.entry), "category": item.entry.category, "score": _confidence(item.score)}
                for item in self.rank(query, k)]

    def entry(self, faq_id: str) -> Entry | None:
        return self.corpus.by_id.get(faq_id)


def _model_path(corpus: Corpus) -> Path:
    """The corpus's own model file (``data/calibration.json``), else the product's."""
    own = Path(corpus.data_dir) / calibration.MODEL_FILE if corpus.data_dir else None
    return own if own is not None and own.exists() else DATA_DIR / calibration.MODEL_FILE


def _suggestion(entry: Entry) -> dict[str, str]:
    return {"faq_id": entry.id, "question": entry.question}
