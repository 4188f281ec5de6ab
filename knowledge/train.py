"""``python -m bot faq tune``: learn the calibration model (``knowledge/calibration.py``) and its thresholds
on the DEVELOPMENT halves only, and write ``data/calibration.json``.

Training questions, each giving one row per candidate among the best ``CANDIDATES`` (label: the
candidate is the right entry; every candidate of an out-of-domain question is a negative — the hard
negatives are the siblings the engine ranks next to the right entry):

1. **Held-out paraphrases.** The corpus is split in two folds: each entry's paraphrases alternate between
   them (the canonical question stays in both), and so do the out-of-scope phrasings. For each fold an
   index is built without it and its phrasings are asked against that index, so no question finds
   itself.
2. **The development halves** (old and fresh sets), asked against the full index, counted twice: they are
   the residents' own words.

The model is scikit-learn's ``LogisticRegression`` on standardised features. Its thresholds are chosen
on out-of-fold probabilities of the development questions (5 folds grouped by question), replaying the
engine's decision, by

    J = first reply right - 4 * wrong direct answers - 2 * out-of-domain not declined or referred
        + 0.3 * in-domain questions clarified with the right entry in the list

(rates over in-domain and out-of-domain questions): a list with the right entry is a detour, a decline
of an in-domain question the end of the conversation. The point chosen is the one with the most right
first replies (plus 0.3 x clarified with the right entry listed) among those with at most 2% wrong direct
answers and at least 96% out-of-domain questions declined or referred — the targets, with room.
The test halves are never read here.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from knowledge import calibration
from knowledge.calibration import CANDIDATES, FEATURES, Model, Thresholds
from knowledge.corpus import DATA_DIR, Corpus, EvalItem, load_corpus, load_eval
from knowledge.engine import BARE_TOPIC_FLOOR, DEFAULT_PARAMS, TIE, Engine
from knowledge.evaluate import short_keyword

DEV_WEIGHT = 2.0
MAX_WRONG = 0.02  # target on test: 0.03
MIN_OOD = 0.96  # target on test: 0.95
SIBLING = 0.3  # a runner-up at least this probable is offered as "您可能还想问" (a choice, not tuned)
ANSWER_GRID = np.arange(0.30, 0.951, 0.025)
CLARIFY_GRID = np.arange(0.02, 0.601, 0.02)


@dataclass
class Question:
    """One training or development question, as the engine sees it."""

    gold: str | None
    ids: list[str]  # the best CANDIDATES entries, by fused score
    x: list[list[float]]
    forced: str | None  # "decline"/"refer" when the out-of-scope rule decides, else None
    named: bool  # names a neighbouring service (refer instead of clarify or decline)
    one_character: bool
    bare_topic: bool
    short: bool  # a bare keyword of at most four characters
    dev: bool


def _question(engine: Engine, item: EvalItem, dev: bool) -> Question | None:
    if engine._check_input(item.q) is not None:
        return None
    found = engine.retrieve(item.q)
    ranked = found.ranked[:CANDIDATES]
    forced = None
    if ranked and found.out_of_scope_lead > -engine.params.out_of_scope_margin:
        topic = engine.corpus.out_of_scope[found.result.out_of_scope_topic or 0]
        forced = "refer" if topic.refer else "decline"
    return Question(item.faq_id, [r.entry.id for r in ranked], engine.features(found) if ranked else [], forced,
                    engine.referral_named(found.analysis) is not None, found.analysis.one_character,
                    found.analysis.bare_topic, short_keyword(item.q), dev)


def _fold(corpus: Corpus, fold: int) -> tuple[Corpus, list[EvalItem]]:
    """The corpus without the paraphrases and out-of-scope phrasings of ``fold``, and those as questions."""
    held: list[EvalItem] = []
    entries = []
    for entry in corpus.entries:
        keep = [p for i, p in enumerate(entry.paraphrases) if i % 2 != fold]
        held += [EvalItem(p, entry.id) for i, p in enumerate(entry.paraphrases) if i % 2 == fold]
        entries.append(dataclasses.replace(entry, paraphrases=tuple(keep)))
    topics = []
    for topic in corpus.out_of_scope:
        keep = [e for i, e in enumerate(topic.examples) if i % 2 != fold]
        held += [EvalItem(e, None) for i, e in enumerate(topic.examples) if i % 2 == fold]
        topics.append(dataclasses.replace(topic, examples=tuple(keep or topic.examples[:1])))
    return dataclasses.replace(corpus, entries=tuple(entries), out_of_scope=tuple(topics)), held


def questions(data_dir: Path = DATA_DIR) -> list[Question]:
    corpus = load_corpus(data_dir)
    found: list[Question | None] = []
    for fold in (0, 1):
        reduced, held = _fold(corpus, fold)
        engine = Engine(reduced, DEFAULT_PARAMS, model=calibration.FALLBACK)
        found += [_question(engine, item, False) for item in held]
    engine = Engine(corpus, DEFAULT_PARAMS, model=calibration.FALLBACK)
    found += [_question(engine, item, True) for item in load_eval("dev", eval_set="all")]
    return [q for q in found if q is not None]


def _rows(qs: list[Question]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y, w, group = [], [], [], []
    for n, q in enumerate(qs):
        for entry_id, row in zip(q.ids, q.x, strict=True):
            x.append(row)
            y.append(1 if entry_id == q.gold else 0)
            w.append(DEV_WEIGHT if q.dev else 1.0)
            group.append(n)
    return np.array(x, dtype=float), np.array(y), np.array(w), np.array(group)


def _fit(x: np.ndarray, y: np.ndarray, w: np.ndarray):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(x), y, sample_weight=w)
    return scaler, model


def replay(q: Question, p: list[float], t: Thresholds) -> tuple[str, str | None]:
    """The engine's decision for one question with candidate probabilities ``p`` (kind, first entry)."""
    if not q.ids:
        return ("refer" if q.named else "decline"), None
    if q.forced:
        return q.forced, None
    order = sorted(range(len(p)), key=lambda i: (-p[i], i))
    best = p[order[0]]
    first = q.ids[order[0]]
    second = p[order[1]] if len(order) > 1 else 0.0
    tied = second >= best - TIE
    runner_up = q.x[1][0] if len(q.x) > 1 else 0.0  # the second fused score
    subject = q.bare_topic and (second >= t.sibling or runner_up >= DEFAULT_PARAMS.suggest_threshold)
    if best >= t.answer and not q.one_character and not tied and not subject:
        return "answer", first
    if q.named:
        return "refer", None
    unknown = q.x[0][FEATURES.index("unknown_words")] if q.x else 1.0
    clarify = best >= t.clarify or (q.bare_topic and unknown == 0 and best >= BARE_TOPIC_FLOOR)
    return ("clarify", first) if clarify else ("decline", None)


def score(qs: list[Question], probabilities: list[list[float]], t: Thresholds) -> dict[str, float]:
    inside = [(q, p) for q, p in zip(qs, probabilities, strict=True) if q.gold is not None]
    outside = [(q, p) for q, p in zip(qs, probabilities, strict=True) if q.gold is None]
    right = wrong = ood_ok = listed = 0
    for q, p in inside:
        kind, first = replay(q, p, t)
        right += first == q.gold and (kind == "answer" or (kind == "clarify" and q.short))
        wrong += kind == "answer" and first != q.gold
        top3 = [q.ids[i] for i in sorted(range(len(p)), key=lambda i: (-p[i], i))[:3]]
        listed += kind == "clarify" and q.gold in top3
    for q, p in outside:
        ood_ok += replay(q, p, t)[0] in ("decline", "refer")
    n, m = max(len(inside), 1), max(len(outside), 1)
    metrics = {"first_reply_right": right / n, "wrong_direct": wrong / n, "ood_declined_or_referred": ood_ok / m,
               "clarified_in_list": listed / n}
    metrics["J"] = (metrics["first_reply_right"] - 4 * metrics["wrong_direct"]
                    - 2 * (1 - metrics["ood_declined_or_referred"]) + 0.3 * metrics["clarified_in_list"])
    return metrics


def _probabilities(qs: list[Question], scaler, model) -> list[list[float]]:
    return [list(model.predict_proba(scaler.transform(np.array(q.x)))[:, 1]) if q.x else [] for q in qs]


def train(data_dir: Path = DATA_DIR, write: bool = True) -> list[str]:
    from sklearn.model_selection import GroupKFold

    qs = questions(data_dir)
    dev = [i for i, q in enumerate(qs) if q.dev]
    lines = [f"training questions: {len(qs) - len(dev)} held-out phrasings, {len(dev)} development questions "
             f"({sum(qs[i].gold is None for i in dev)} out of domain)"]
    x, y, w, group = _rows(qs)
    # Out-of-fold probabilities for the development questions: the thresholds must not see their own fit.
    oof: dict[int, list[float]] = {}
    for train_rows, held_rows in GroupKFold(n_splits=5).split(x, y, group):
        scaler, model = _fit(x[train_rows], y[train_rows], w[train_rows])
        held = sorted(set(group[held_rows]) & set(dev))
        for i, p in zip(held, _probabilities([qs[i] for i in held], scaler, model), strict=True):
            oof[i] = p
    dev_qs = [qs[i] for i in dev]
    dev_p = [oof[i] for i in dev]
    points = []
    for answer, clarify in itertools.product(ANSWER_GRID, CLARIFY_GRID):
        if clarify >= answer:
            continue
        t = Thresholds(round(float(answer), 3), round(float(clarify), 3), SIBLING)
        points.append((score(dev_qs, dev_p, t), t))
    # the targets' priorities: as many right first replies as possible while wrong direct answers stay
    # within MAX_WRONG and out-of-domain questions are declined or referred at MIN_OOD (both with room
    # under the targets); among the points that keep both, the best J; if none does, the best J overall
    feasible = [pair for pair in points if pair[0]["wrong_direct"] <= MAX_WRONG
                and pair[0]["ood_declined_or_referred"] >= MIN_OOD]
    points = feasible or points
    points.sort(key=lambda pair: (-(pair[0]["first_reply_right"] + 0.3 * pair[0]["clarified_in_list"]),
                                  -pair[0]["J"], -pair[1].answer))
    lines.append("best thresholds on dev (out-of-fold probabilities):")
    for metrics, t in points[:5]:
        lines.append(f"  answer={t.answer:.3f} clarify={t.clarify:.3f} "
                     + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    chosen_metrics, chosen = points[0]
    scaler, model = _fit(x, y, w)
    result = Model(mean=tuple(float(v) for v in scaler.mean_), scale=tuple(float(v) or 1.0 for v in scaler.scale_),
                   coef=tuple(float(v) for v in model.coef_[0]), intercept=float(model.intercept_[0]),
                   thresholds=chosen,
                   trained={"date": date.today().isoformat(), "questions": len(qs), "development": len(dev),
                            "rows": len(y),
                            "dev_out_of_fold": {k: round(v, 4) for k, v in chosen_metrics.items()}})
    lines.append("coefficients (standardised features): "
                 + ", ".join(f"{name} {coef:+.2f}" for name, coef in zip(FEATURES, result.coef, strict=True)))
    if write:
        path = data_dir / calibration.MODEL_FILE
        calibration.save(result, path)
        lines.append(f"written: {path}")
    return lines
