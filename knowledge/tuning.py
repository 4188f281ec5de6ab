"""``python -m bot faq tune``: the search that chose the engine's parameters, on the DEV half only.

For every combination of index parameters (BM25 k1 and b, the word/bigram fusion weight, the weight of
out-of-vocabulary query terms) each dev question is ranked once; the three decision parameters
(answer threshold, suggest threshold, margin) are then swept over those cached rankings with numpy.
Each point is scored by

    J = top-1 + recall@3 + out-of-domain declined + 0.5 * answered-right
        - 2 * answered-wrong - 2 * out-of-domain answered

(in-domain rates over in-domain questions, out-of-domain rates over out-of-domain questions): a wrong
direct answer costs far more than a "您是不是想问" detour. The best points are printed; the chosen values
are written into ``DEFAULT_PARAMS`` by hand, with the reasoning in ``knowledge/README-tuning.md``.
The test half is never read here.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from knowledge.corpus import EvalItem, load_eval
from knowledge.engine import DEFAULT_PARAMS, Engine, Params
from knowledge.index import IndexParams

INDEX_GRID = {
    "k1": (0.8, 1.2, 1.6),
    "b": (0.3, 0.5, 0.75),
    "word_weight": (0.3, 0.4, 0.5, 0.6, 0.7),
    "oov_factor": (0.5, 1.0, 1.5),
}
ANSWER_GRID = np.round(np.arange(0.30, 0.951, 0.025), 3)
SUGGEST_GRID = np.round(np.arange(0.10, 0.601, 0.025), 3)
MARGIN_GRID = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15)


@dataclass
class Rankings:
    best: np.ndarray
    second: np.ndarray
    right_first: np.ndarray
    right_in_3: np.ndarray
    rank: np.ndarray  # rank of the right entry in the top 10, 0 when absent
    ood: np.ndarray


def rankings(engine: Engine, items: list[EvalItem]) -> Rankings:
    best, second, first, in3, rank = [], [], [], [], []
    for item in items:
        ranked = engine.rank(item.q) if engine._check_input(item.q) is None else []
        ids = [r.entry.id for r in ranked]
        best.append(ranked[0].score if ranked else 0.0)
        second.append(ranked[1].score if len(ranked) > 1 else 0.0)
        first.append(bool(ids) and ids[0] == item.faq_id)
        in3.append(item.faq_id in ids[:3])
        rank.append(ids.index(item.faq_id) + 1 if item.faq_id in ids else 0)
    ood = np.array([item.faq_id is None for item in items])
    return Rankings(np.array(best), np.array(second), np.array(first), np.array(in3), np.array(rank), ood)


def sweep(r: Rankings) -> list[tuple[float, dict[str, float]]]:
    """Every decision-parameter point with its objective and metrics, best first."""
    inside = ~r.ood
    n_in, n_out = max(int(inside.sum()), 1), max(int(r.ood.sum()), 1)
    results = []
    for answer_t, suggest_t, margin in itertools.product(ANSWER_GRID, SUGGEST_GRID, MARGIN_GRID):
        if suggest_t > answer_t:
            continue
        answered = (r.best >= answer_t) & (r.best - r.second >= margin)
        shown = answered | (r.best >= suggest_t)
        m = {
            "answer_threshold": float(answer_t), "suggest_threshold": float(suggest_t), "margin": float(margin),
            "top1": (shown & r.right_first & inside).sum() / n_in,
            "recall_at_3": (shown & r.right_in_3 & inside).sum() / n_in,
            "answered_right": (answered & r.right_first & inside).sum() / n_in,
            "answered_wrong": (answered & ~r.right_first & inside).sum() / n_in,
            "ood_declined": (~shown & r.ood).sum() / n_out,
            "ood_answered": (answered & r.ood).sum() / n_out,
        }
        objective = (m["top1"] + m["recall_at_3"] + m["ood_declined"] + 0.5 * m["answered_right"]
                     - 2 * m["answered_wrong"] - 2 * m["ood_answered"])
        results.append((float(objective), m))
    results.sort(key=lambda pair: -pair[0])
    return results


def tune(top: int = 5) -> list[str]:
    dev = load_eval("dev")
    base = Engine.build()
    lines = [f"tuning on dev: {len(dev)} questions ({sum(i.faq_id is None for i in dev)} out of domain)"]
    candidates = []
    keys = list(INDEX_GRID)
    for values in itertools.product(*INDEX_GRID.values()):
        index_params = IndexParams(**dict(zip(keys, values, strict=True)))
        engine = base.with_params(Params(index=index_params))
        r = rankings(engine, dev)
        mrr = float(np.mean([1 / k if k else 0 for k in r.rank[~r.ood]]))
        objective, metrics = sweep(r)[0]
        candidates.append((objective, mrr, index_params, metrics))
    candidates.sort(key=lambda c: (-c[0], -c[1]))
    for objective, mrr, index_params, m in candidates[:top]:
        lines.append(f"J={objective:.4f} MRR={mrr:.4f} {index_params} "
                     + " ".join(f"{k}={v:.3f}" for k, v in m.items()))
    current = base.with_params(DEFAULT_PARAMS)
    r = rankings(current, dev)
    for objective, m in sweep(r)[:top]:
        lines.append(f"thresholds for the current index params: J={objective:.4f} "
                     + " ".join(f"{k}={v:.3f}" for k, v in m.items()))
    return lines
