"""Evaluation on the labelled halves of the two evaluation sets (``knowledge/eval/``): ``dev`` halves for
tuning, ``test`` halves for reporting only; the "old" set (written with the corpus) and the "fresh" one
(issue 13, written from other angles).

The three measures of what a resident gets, first:
- **first reply right** (in-domain questions): the reply answers directly with the right entry. For a
  bare keyword of at most four characters ("备案", "两病") a "您是不是想问" list whose first item is right
  counts too: such a word names a subject, not a question;
- **wrong direct answer** (in-domain questions): answered directly with a wrong entry, the costly error;
- **out-of-domain declined or referred** (``faq_id: null``): declined, or referred to a neighbouring
  service (12333, 12329, 12345), with no FAQ answer and no list;
then the diagnostics of the ranking: recall@3 (the right entry among the three best-ranked ones, unless
declined) and MRR (reciprocal rank of the right entry in the top 10; 0 when declined or absent), and
how the other questions ended (clarified, declined). "top-1" (answer or first suggestion right) is kept
for comparison with the earlier rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from knowledge.corpus import EvalItem
from knowledge.engine import Answer, Engine, Ranked
from knowledge.normalise import clean

SHORT_KEYWORD = 4  # a bare keyword of at most this many characters may be answered with a list


def short_keyword(question: str) -> bool:
    return len(clean(question).replace(" ", "")) <= SHORT_KEYWORD


@dataclass
class Outcome:
    item: EvalItem
    answer: Answer
    ranked: list[str]  # entry ids, best first (empty when declined or referred)

    @property
    def kind(self) -> str:
        return self.answer.kind

    @property
    def rank(self) -> int | None:
        if self.item.faq_id not in self.ranked:
            return None
        return self.ranked.index(self.item.faq_id) + 1

    @property
    def answered_right(self) -> bool:
        return self.kind == "answer" and self.answer.faq_id == self.item.faq_id

    @property
    def first_reply_right(self) -> bool:
        if self.answered_right:
            return True
        first = self.answer.suggestions[0]["faq_id"] if self.answer.suggestions else None
        return self.kind == "clarify" and first == self.item.faq_id and short_keyword(self.item.q)


@dataclass
class HalfReport:
    name: str
    in_domain: int = 0
    out_of_domain: int = 0
    first_reply_right: float = 0.0
    wrong_direct: float = 0.0
    ood_declined_or_referred: float = 0.0
    recall_at_3: float = 0.0
    mrr: float = 0.0
    top1: float = 0.0
    clarified: float = 0.0
    declined_in_domain: float = 0.0
    ood_answered: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key not in ("failures",)}


def outcome(engine: Engine, item: EvalItem) -> Outcome:
    answer, ranked = engine.respond(item.q)
    shown: list[Ranked] = ranked if answer.kind in ("answer", "clarify") else []
    return Outcome(item, answer, [r.entry.id for r in shown])


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def evaluate(engine: Engine, items: list[EvalItem], name: str = "") -> HalfReport:
    outcomes = [outcome(engine, item) for item in items]
    inside = [o for o in outcomes if o.item.faq_id is not None]
    outside = [o for o in outcomes if o.item.faq_id is None]
    n, m = len(inside), len(outside)
    right = sum(o.first_reply_right for o in inside)
    wrong = sum(o.kind == "answer" and not o.answered_right for o in inside)
    ood_ok = sum(o.kind in ("decline", "refer") for o in outside)
    at3 = sum(o.rank is not None and o.rank <= 3 for o in inside)
    rr = sum(1 / o.rank for o in inside if o.rank is not None)
    top1 = sum(o.rank == 1 for o in inside)
    clarified = sum(o.kind == "clarify" for o in inside)
    declined_in = sum(o.kind in ("decline", "refer") for o in inside)
    ood_answered = sum(o.kind == "answer" for o in outside)
    report = HalfReport(
        name=name, in_domain=n, out_of_domain=m, first_reply_right=_ratio(right, n), wrong_direct=_ratio(wrong, n),
        ood_declined_or_referred=_ratio(ood_ok, m), recall_at_3=_ratio(at3, n), mrr=round(rr / n, 4) if n else 0.0,
        top1=_ratio(top1, n), clarified=_ratio(clarified, n), declined_in_domain=_ratio(declined_in, n),
        ood_answered=_ratio(ood_answered, m),
        counts={"first_reply_right": right, "wrong_direct": wrong, "ood_declined_or_referred": ood_ok,
                "recall_at_3": at3, "top1": top1, "clarified": clarified, "declined_in_domain": declined_in,
                "ood_answered": ood_answered,
                "ood_referred": sum(o.kind == "refer" for o in outside)},
    )
    for o in outcomes:
        if (o.item.faq_id is not None and not o.first_reply_right) or (o.item.faq_id is None and o.kind in (
                "answer", "clarify")):
            report.failures.append({"q": o.item.q, "expected": o.item.faq_id, "kind": o.kind,
                                    "got": o.answer.faq_id, "confidence": o.answer.confidence,
                                    "ranked": o.ranked[:3]})
    return report


def format_report(report: HalfReport) -> str:
    c = report.counts
    n, m = report.in_domain, report.out_of_domain
    return "\n".join([
        f"[{report.name}] {n} in-domain questions, {m} out-of-domain questions",
        f"  first reply right        {report.first_reply_right:.4f}  ({c['first_reply_right']}/{n})",
        f"  wrong direct answers     {report.wrong_direct:.4f}  ({c['wrong_direct']}/{n})",
        f"  OOD declined or referred {report.ood_declined_or_referred:.4f}  ({c['ood_declined_or_referred']}/{m}; "
        f"referred {c['ood_referred']}, answered {c['ood_answered']})",
        f"  diagnostics: recall@3 {report.recall_at_3:.4f} ({c['recall_at_3']}/{n}), MRR {report.mrr:.4f}, "
        f"top-1 {report.top1:.4f}, clarified {report.clarified:.4f} ({c['clarified']}), "
        f"declined in-domain {report.declined_in_domain:.4f} ({c['declined_in_domain']})",
    ])
