"""The unbiased pass@k estimator against values worked out by hand."""

from __future__ import annotations

import pytest

from agentflow.bench import pass_at_k, pass_at_ks


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 2 / 5),  # 1 - C(3,1)/C(5,1) = 1 - 3/5
        (5, 2, 2, 7 / 10),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (5, 2, 3, 9 / 10),  # 1 - C(3,3)/C(5,3) = 1 - 1/10
        (4, 3, 2, 1.0),  # n - c < k: every draw of 2 holds a pass
        (5, 0, 3, 0.0),
        (5, 5, 1, 1.0),
        (10, 1, 10, 1.0),
        (1000, 1, 1, 1 / 1000),
        (200, 3, 100, 1 - (100 * 99 * 98) / (200 * 199 * 198)),  # C(197,100)/C(200,100) = 100*99*98/(200*199*198)
    ],
)
def test_pass_at_k_by_hand(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-15, abs=1e-15)


def test_large_n_stays_exact() -> None:
    # C(10000, 5000) has about 3000 digits: a float formula overflows; the exact one gives 1 - (n-k)/n for c = 1
    assert pass_at_k(10_000, 1, 5_000) == 0.5


@pytest.mark.parametrize(("n", "c", "k"), [(3, 4, 1), (3, 1, 0), (3, 1, 4), (3, -1, 1)])
def test_impossible_counts_are_refused(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match="pass@k needs"):
        pass_at_k(n, c, k)


def test_pass_at_ks_averages_tasks_and_stops_at_the_fewest_samples() -> None:
    scores = pass_at_ks({"a": [True, False], "b": [False, False, True], "empty": []})
    assert set(scores) == {"pass@1", "pass@2"}  # task a has 2 samples: no pass@3, as in the reference harness
    assert scores["pass@1"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert scores["pass@2"] == pytest.approx((1 + (1 - 1 / 3)) / 2)  # b: 1 - C(2,2)/C(3,2)
    assert pass_at_ks({}) == {}
