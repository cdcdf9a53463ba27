"""Benchmarks: task sources, executors, reports. Today: grading precomputed HumanEval samples in sandboxes
(``grade_samples``, ``agentflow bench grade humaneval``) and the unbiased pass@k estimator."""

from agentflow.bench._grader import DEFAULT_TIMEOUT_S, GRADING_LIMITS, Verdict, grade_programs, grade_samples
from agentflow.bench._humaneval import LineError, Problem, Sample, checkout_problems, load_problems, read_samples
from agentflow.bench._passk import pass_at_k, pass_at_ks

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "GRADING_LIMITS",
    "LineError",
    "Problem",
    "Sample",
    "Verdict",
    "checkout_problems",
    "grade_programs",
    "grade_samples",
    "load_problems",
    "pass_at_k",
    "pass_at_ks",
    "read_samples",
]
