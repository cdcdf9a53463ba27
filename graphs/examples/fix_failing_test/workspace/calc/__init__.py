"""A tiny statistics package with two bugs for the example workflow to fix."""

from calc.stats import mean, median

__all__ = ["mean", "median"]
