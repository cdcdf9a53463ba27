"""What a run's model calls cost in dollars: the tokens of each model, at the prices a benchmark gives.

A price is ``{"input_per_mtok": dollars, "output_per_mtok": dollars}`` per million tokens, keyed by the
``provider:model`` a ``model_request`` names (a benchmark's ``prices:``). The run summary, the runs index, a bench
run's progress and its report all price tokens here, so they agree to the cent.

A run that called no priced model has no cost (``None``): a cost of 0 would say it was free, when it is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ModelUsage", "Price", "token_cost", "usage_cost"]

Price = Mapping[str, float]
"""Dollars per million tokens: ``{"input_per_mtok": ..., "output_per_mtok": ...}``."""


@dataclass
class ModelUsage:
    """The tokens one model answered a run's requests with."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


def token_cost(price: Price, input_tokens: int, output_tokens: int) -> float:
    """Dollars of one call's (or one model's) tokens at ``price``."""
    return (input_tokens * float(price["input_per_mtok"]) + output_tokens * float(price["output_per_mtok"])) / 1e6


def usage_cost(usage: Mapping[str, ModelUsage], prices: Mapping[str, Price]) -> float | None:
    """Dollars of the priced models' tokens in ``usage`` (model -> its tokens); ``None`` when none is priced.

    Models without a price are left out of the sum; which ones they are is ``usage.keys() - prices.keys()``.
    """
    priced = [(prices[model], used) for model, used in usage.items() if model in prices]
    if not priced:
        return None
    return sum(token_cost(price, used.input_tokens, used.output_tokens) for price, used in priced)
