"""The calibrated confidence: how likely a ranked candidate is the entry the resident asked about.

A logistic model over the engine's lexical features of each of the best ``CANDIDATES`` entries (its
fused score and field scores, its gap to the best other candidate, whether the question type matches the
entry's, how much of the question the entry covers, keyword and entity hits, how well an out-of-scope
phrasing matched …). The coefficients are learned by ``python -m bot faq tune`` (scikit-learn, on
paraphrases held out of the index and the development halves, see ``knowledge/train.py``) and stored as
``data/calibration.json``: plain numbers, applied here with plain Python so an answer stays far below a
millisecond and the model file is reviewable (never a pickle).

Pure: no I/O besides ``load``; the engine computes the features from its own analysis and index.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = 5
FEATURES = (
    "score", "gap", "first", "question_field", "entry_field", "answer_field", "out_of_scope_lead",
    "type_match", "type_mismatch", "coverage", "uncovered", "unknown_words", "keyword_hits", "bare_topic",
    "one_character", "corrected", "length", "referral_word",
)
MODEL_FILE = "calibration.json"


@dataclass(frozen=True)
class Thresholds:
    answer: float = 0.5  # answer directly at or above this probability
    clarify: float = 0.2  # below answer: "您是不是想问"; below this: decline
    sibling: float = 0.15  # an answered question's close siblings offered as "您可能还想问"


@dataclass(frozen=True)
class Model:
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    thresholds: Thresholds = field(default_factory=Thresholds)
    trained: dict[str, Any] = field(default_factory=dict)  # what it was trained on (for the record)

    def probability(self, x: list[float]) -> float:
        z = self.intercept
        for value, mean, scale, weight in zip(x, self.mean, self.scale, self.coef, strict=True):
            z += (value - mean) / scale * weight
        if z < -30:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(FEATURES), "mean": list(self.mean), "scale": list(self.scale),
                "coef": list(self.coef), "intercept": self.intercept,
                "thresholds": {"answer": self.thresholds.answer, "clarify": self.thresholds.clarify,
                               "sibling": self.thresholds.sibling}, "trained": self.trained}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Model:
        if list(data.get("features", [])) != list(FEATURES):
            raise ValueError("calibration model was trained on other features")
        n = len(FEATURES)
        mean, scale, coef = (tuple(float(v) for v in data[key]) for key in ("mean", "scale", "coef"))
        if not len(mean) == len(scale) == len(coef) == n or any(s <= 0 for s in scale):
            raise ValueError("calibration model is malformed")
        t = data.get("thresholds", {})
        thresholds = Thresholds(float(t.get("answer", 0.5)), float(t.get("clarify", 0.2)),
                                float(t.get("sibling", 0.15)))
        return cls(mean, scale, coef, float(data["intercept"]), thresholds, dict(data.get("trained", {})))


# Used when no model file exists yet (a fresh corpus before its first `faq tune`): the fused score alone,
# centred where the hand-tuned thresholds of the first round put their answer threshold.
FALLBACK = Model(mean=tuple(0.0 for _ in FEATURES), scale=tuple(1.0 for _ in FEATURES),
                 coef=tuple(8.0 if name == "score" else (4.0 if name == "gap" else 0.0) for name in FEATURES),
                 intercept=-3.6)


def load(path: Path) -> Model:
    """The model stored at ``path``; the fallback when there is none. A malformed file raises ValueError."""
    if not path.exists():
        return FALLBACK
    try:
        return Model.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.name}: {exc}") from None


def save(model: Model, path: Path) -> None:
    path.write_text(json.dumps(model.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
