"""``python -m bot faq tune``: the search that chose the engine's parameters, on the DEV half only.

Stage 1: for every combination of index parameters (BM25 k1 and b, the word/character fusion weight,
the weight of out-of-vocabulary query terms, the weights of the entry and answer fields) each dev
question is looked up once, and the decision parameters are swept over a coarse grid on those cached
results. Stage 2: the decision parameters of the best index combination are swept over a fine grid.
The decision parameters are the answer threshold, the suggest threshold, the margin over the runner-up
and the out-of-scope margin. Each point is scored by

    J = top-1 + recall@3 + out-of-domain declined + 0.5 * answered-right
        - 5 * answered-wrong - 5 * out-of-domain answered

(in-domain rates over in-domain questions, out-of-domain rates over out-of-domain questions): a wrong
direct answer costs as much as ten right ones, since a "您是不是想问" detour costs a resident one tap
while a wrong answer about, say, 异地就医备案 costs real money. The chosen values are written into
``DEFAULT_PARAMS`` by hand, with the reasoning in ``knowledge/README-tuning.md``. The test half is
never read here.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np

from knowledge.corpus import EvalItem, load_eval
from knowledge.engine import DEFAULT_PARAMS, Engine, Params
from knowledge.index import IndexParams

INDEX_GRID = {
    "k1": (0.8, 1.2, 1.6),
    "b": (0.3, 0.5, 0.75),
    "word_weight": (0.3, 0.5, 0.7),
    "oov_factor": (1.0, 1.5),
    "entry_weight": (0.3, 0.6, 1.0),
    "answer_weight": (0.15, 0.3, 0.5),
}
COARSE = {"answer": np.arange(0.40, 0.91, 0.05), "suggest": np.arange(0.20, 0.56, 0.05),
          "margin": (0.0, 0.05, 0.1), "out_of_scope": (-0.1, 0.0, 0.05, 0.1, 0.2)}
FINE = {"answer": np.arange(0.30, 0.951, 0.025), "suggest": np.arange(0.10, 0.601, 0.0125),
        "margin": (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15),
        "out_of_scope": (-0.15, -0.1, -0.05, 0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)}


@dataclass
class Lookups:
    best: np.ndarray
    second: np.ndarray
    lead: np.ndarray  # out-of-scope lead
    bare: np.ndarray  # the question is a bare topic word (or a single character: treated alike here)
    right_first: np.ndarray
    right_in_3: np.ndarray
    rank: np.ndarray  # rank of the right entry in the top 10, 0 when absent
    ood: np.ndarray

    @property
    def mrr(self) -> float:
        ranks = self.rank[~self.ood]
        return float(np.mean(np.where(ranks > 0, 1 / np.maximum(ranks, 1), 0.0)))


def lookups(engine: Engine, items: list[EvalItem]) -> Lookups:
    best, second, lead, bare, first, in3, rank = [], [], [], [], [], [], []
    for item in items:
        found = engine.lookup(item.q) if engine._check_input(item.q) is None else None
        ranked = found.ranked if found else []
        ids = [r.entry.id for r in ranked]
        best.append(ranked[0].score if ranked else 0.0)
        second.append(found.runner_up if found else 0.0)
        lead.append(found.out_of_scope_lead if found else -np.inf)
        bare.append(bool(found) and (found.analysis.bare_topic or found.analysis.one_character))
        first.append(bool(ids) and ids[0] == item.faq_id)
        in3.append(item.faq_id in ids[:3])
        rank.append(ids.index(item.faq_id) + 1 if item.faq_id in ids else 0)
    ood = np.array([item.faq_id is None for item in items])
    return Lookups(np.array(best), np.array(second), np.array(lead), np.array(bare), np.array(first),
                   np.array(in3), np.array(rank), ood)


def sweep(r: Lookups, grid: dict) -> list[tuple[float, dict[str, float]]]:
    """Every decision-parameter point with its objective and metrics, best first."""
    inside = ~r.ood
    n_in, n_out = max(int(inside.sum()), 1), max(int(r.ood.sum()), 1)
    results = []
    for oos in grid["out_of_scope"]:
        kept = r.lead <= -oos
        for answer_t, suggest_t, margin in itertools.product(grid["answer"], grid["suggest"], grid["margin"]):
            if suggest_t > answer_t:
                continue
            answered = (kept & (r.best >= answer_t) & (r.best - r.second >= margin)
                        & ~(r.bare & (r.second >= suggest_t)))
            shown = answered | (kept & (r.best >= suggest_t))
            m = {
                "answer_threshold": round(float(answer_t), 4), "suggest_threshold": round(float(suggest_t), 4),
                "margin": float(margin), "out_of_scope_margin": float(oos),
                "top1": (shown & r.right_first & inside).sum() / n_in,
                "recall_at_3": (shown & r.right_in_3 & inside).sum() / n_in,
                "answered_right": (answered & r.right_first & inside).sum() / n_in,
                "answered_wrong": (answered & ~r.right_first & inside).sum() / n_in,
                "ood_declined": (~shown & r.ood).sum() / n_out,
                "ood_answered": (answered & r.ood).sum() / n_out,
            }
            objective = (m["top1"] + m["recall_at_3"] + m["ood_declined"] + 0.5 * m["answered_right"]
                         - 5 * m["answered_wrong"] - 5 * m["ood_answered"])
            results.append((float(objective), m))
    results.sort(key=lambda pair: -pair[0])
    return results


def _format(metrics: dict[str, float]) -> str:
    return " ".join(f"{key}={value:.3f}" for key, value in metrics.items())


def tune(top: int = 5) -> list[str]:
    dev = load_eval("dev")
    base = Engine.build(keep_documents=True)
    lines = [f"tuning on dev: {len(dev)} questions ({sum(i.faq_id is None for i in dev)} out of domain)"]
    candidates = []
    keys = list(INDEX_GRID)
    for values in itertools.product(*INDEX_GRID.values()):
        index_params = IndexParams(**dict(zip(keys, values, strict=True)))
        r = lookups(base.with_params(Params(index=index_params)), dev)
        objective, metrics = sweep(r, COARSE)[0]
        candidates.append((objective, r.mrr, index_params, metrics))
    candidates.sort(key=lambda c: (-c[0], -c[1]))
    lines.append("stage 1, best index parameters (coarse decision grid):")
    for objective, mrr, index_params, metrics in candidates[:top]:
        lines.append(f"  J={objective:.4f} MRR={mrr:.4f} {index_params}\n    {_format(metrics)}")
    best_index = candidates[0][2]
    r = lookups(base.with_params(Params(index=best_index)), dev)
    lines.append(f"stage 2, decision parameters for {best_index}:")
    for objective, metrics in sweep(r, FINE)[:top]:
        lines.append(f"  J={objective:.4f} {_format(metrics)}")
    current = lookups(base.with_params(DEFAULT_PARAMS), dev)
    chosen = dataclasses.asdict(DEFAULT_PARAMS)
    point = {"answer": [chosen["answer_threshold"]], "suggest": [chosen["suggest_threshold"]],
             "margin": [chosen["margin"]], "out_of_scope": [chosen["out_of_scope_margin"]]}
    objective, metrics = sweep(current, point)[0]
    lines.append(f"DEFAULT_PARAMS on dev: J={objective:.4f} MRR={current.mrr:.4f} {_format(metrics)}")
    return lines
