"""What the benchmarks share for their figures."""

from __future__ import annotations


def quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile ``q`` (0.5 = median, 0.99 = p99) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
