"""pass@k: the unbiased estimator of Chen et al. (2021), ``1 − C(n−c, k) / C(n, k)`` per task, averaged over tasks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """The probability that at least one of ``k`` samples drawn without replacement from ``n``, of which ``c``
    passed, passes.

    Computed exactly, in integers and one fraction (``math.comb`` is exact for any size), then rounded once to a
    float: no cancellation for large ``n``, no overflow of a product of ratios.

    Raises:
        ValueError: not ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    return float(1 - Fraction(comb(n - c, k), comb(n, k)))


def pass_at_ks(outcomes: Mapping[str, Iterable[bool]]) -> dict[str, float]:
    """``{"pass@k": mean over tasks}`` for k = 1 up to the fewest samples any task has, as the reference harness
    reports only the k every task has at least k samples for.

    Args:
        outcomes: each task's samples, passed or not; tasks without samples are left out.
    """
    counts = [(len(values), sum(values)) for values in (list(v) for v in outcomes.values()) if values]
    if not counts:
        return {}
    fewest = min(n for n, _ in counts)
    return {f"pass@{k}": sum(pass_at_k(n, c, k) for n, c in counts) / len(counts) for k in range(1, fewest + 1)}
