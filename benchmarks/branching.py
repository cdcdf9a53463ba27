"""Branching computation graphs, measured: every figure of the branching issue in one JSON object.

Each part is its own script, runnable alone, which measures agentflow and its baseline in the same run:

- ``branching_parallel.py``: a fan-out of 8 branches whose tool sleeps 200 ms against one branch
  (``parallel_efficiency``, target <= 1.2);
- ``branching_best_of.py``: best-of-4 on the fix_failing_test example with the scripted model against a single
  visit (``best_of_overhead``, target <= 1.5);
- ``branching_fork.py``: ``Sandbox.fork()`` on the local and Docker sandboxes against a plain copy
  (``fork_ms_local``, ``fork_ms_docker``);
- ``branching_prefix.py``: ``fork -n 8`` of a 20-step run at step 15, the prefix's cost against its original time
  (``prefix_ratio``, target <= 0.05).

    python benchmarks/branching.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

PARTS = ("branching_parallel", "branching_best_of", "branching_fork", "branching_prefix")


def measure(quick: bool) -> dict[str, Any]:
    """Every part's figures, merged (their key names do not overlap)."""
    sys.path.insert(0, str(Path(__file__).parent))
    figures: dict[str, Any] = {}
    for name in PARTS:
        part = importlib.import_module(name)
        figures.update(part.measure(quick))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the test suite's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    figures = measure(args.quick)
    if args.json:
        print(json.dumps(figures))
        return 0
    for key, value in figures.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
