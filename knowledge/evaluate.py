"""Evaluation on the labelled halves (``knowledge/eval/dev.yaml`` for tuning, ``test.yaml`` for reporting).

For in-domain questions (with a ``faq_id``):
- top-1: the first entry shown is right — the answer, or the first "您是不是想问" suggestion;
- recall@3: the right entry is among the three best-ranked entries, unless the question was declined;
- MRR: mean reciprocal rank of the right entry in the top 10 (0 when declined or absent);
- answered right / answered wrong: answered directly with the right / a wrong entry (wrong direct
  answers are the costly mistake);
for out-of-domain questions (``faq_id: null``): declined means no answer and no suggestions.
Decline precision is the share of declined questions that were out of domain, decline recall the share
of out-of-domain questions that were declined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from knowledge.corpus import EvalItem
from knowledge.engine import Answer, Engine, Ranked


@dataclass
class Outcome:
    item: EvalItem
    answer: Answer
    ranked: list[str]  # entry ids, best first (empty when declined)

    @property
    def declined(self) -> bool:
        return self.answer.decision == "decline"

    @property
    def rank(self) -> int | None:
        if self.declined or self.item.faq_id not in self.ranked:
            return None
        return self.ranked.index(self.item.faq_id) + 1


@dataclass
class HalfReport:
    name: str
    in_domain: int = 0
    out_of_domain: int = 0
    top1: float = 0.0
    recall_at_3: float = 0.0
    mrr: float = 0.0
    answered_right: float = 0.0
    answered_wrong: float = 0.0
    suggested: float = 0.0
    declined_in_domain: float = 0.0
    ood_declined: float = 0.0
    ood_suggested: float = 0.0
    ood_answered: float = 0.0
    decline_precision: float = 0.0
    decline_recall: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key not in ("failures",)}


def outcome(engine: Engine, item: EvalItem) -> Outcome:
    answer, ranked = engine.respond(item.q)
    shown: list[Ranked] = ranked if answer.decision != "decline" else []
    return Outcome(item, answer, [r.entry.id for r in shown])


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def evaluate(engine: Engine, items: list[EvalItem], name: str = "") -> HalfReport:
    outcomes = [outcome(engine, item) for item in items]
    inside = [o for o in outcomes if o.item.faq_id is not None]
    outside = [o for o in outcomes if o.item.faq_id is None]
    top1 = sum(1 for o in inside if o.rank == 1)
    at3 = sum(1 for o in inside if o.rank is not None and o.rank <= 3)
    rr = sum(1 / o.rank for o in inside if o.rank is not None)
    right = sum(1 for o in inside if o.answer.answered and o.answer.faq_id == o.item.faq_id)
    wrong = sum(1 for o in inside if o.answer.answered and o.answer.faq_id != o.item.faq_id)
    suggested = sum(1 for o in inside if o.answer.decision == "suggest")
    declined_in = sum(1 for o in inside if o.declined)
    ood_declined = sum(1 for o in outside if o.declined)
    ood_suggested = sum(1 for o in outside if o.answer.decision == "suggest")
    ood_answered = sum(1 for o in outside if o.answer.answered)
    report = HalfReport(
        name=name, in_domain=len(inside), out_of_domain=len(outside),
        top1=_ratio(top1, len(inside)), recall_at_3=_ratio(at3, len(inside)), mrr=round(rr / len(inside), 4)
        if inside else 0.0, answered_right=_ratio(right, len(inside)), answered_wrong=_ratio(wrong, len(inside)),
        suggested=_ratio(suggested, len(inside)), declined_in_domain=_ratio(declined_in, len(inside)),
        ood_declined=_ratio(ood_declined, len(outside)), ood_suggested=_ratio(ood_suggested, len(outside)),
        ood_answered=_ratio(ood_answered, len(outside)),
        decline_precision=_ratio(ood_declined, ood_declined + declined_in),
        decline_recall=_ratio(ood_declined, len(outside)),
        counts={"top1": top1, "recall_at_3": at3, "answered_right": right, "answered_wrong": wrong,
                "suggested": suggested, "declined_in_domain": declined_in, "ood_declined": ood_declined,
                "ood_suggested": ood_suggested, "ood_answered": ood_answered},
    )
    for o in outcomes:
        wrong_in = o.item.faq_id is not None and o.rank != 1
        wrong_out = o.item.faq_id is None and not o.declined
        if wrong_in or wrong_out:
            report.failures.append({"q": o.item.q, "expected": o.item.faq_id, "decision": o.answer.decision,
                                    "score": o.answer.score, "ranked": o.ranked[:3]})
    return report


def format_report(report: HalfReport) -> str:
    c = report.counts
    n, m = report.in_domain, report.out_of_domain
    return "\n".join([
        f"[{report.name}] {n} in-domain questions, {m} out-of-domain questions",
        f"  top-1 accuracy       {report.top1:.4f}  ({c['top1']}/{n}; answered or first suggestion)",
        f"  recall@3             {report.recall_at_3:.4f}  ({c['recall_at_3']}/{n})",
        f"  MRR                  {report.mrr:.4f}",
        f"  answered and right   {report.answered_right:.4f}  ({c['answered_right']}/{n})",
        f"  answered but wrong   {report.answered_wrong:.4f}  ({c['answered_wrong']}/{n})",
        f"  suggested (unsure)   {report.suggested:.4f}  ({c['suggested']}/{n})",
        f"  declined in-domain   {report.declined_in_domain:.4f}  ({c['declined_in_domain']}/{n})",
        f"  out-of-domain        declined {report.ood_declined:.4f} ({c['ood_declined']}/{m}), "
        f"suggested {c['ood_suggested']}, answered {c['ood_answered']}",
        f"  decline precision    {report.decline_precision:.4f}  "
        f"({c['ood_declined']}/{c['ood_declined'] + c['declined_in_domain']})",
        f"  decline recall       {report.decline_recall:.4f}  ({c['ood_declined']}/{m})",
    ])
