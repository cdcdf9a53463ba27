"""Grading stored runs offline: reward hooks over traces, benchmark checkpoints, step-label agreement.

Grade runs again, years later, without a model and without the sandbox that produced them::

    result = await grade_runs(store, run_ids, hooks=["exit_code:step", "tests_passed:node"], checkpoints="cp.yaml")
    result.grading_pass.pass_id          # every pass has its own id; earlier rewards are never silently replaced

    metrics = compare_label_files("reference.jsonl", "predictions.jsonl")   # AgentProcessBench / ProcessBench F1
"""

from agentflow.grading._checkpoints import (
    AnswerCheck,
    Checkpoint,
    CheckpointReport,
    CheckpointResult,
    CheckpointSpec,
    Efficiency,
    Verifier,
    evaluate_checkpoints,
    final_answer,
    load_checkpoints,
)
from agentflow.grading._labels import LabelMetrics, compare_label_files, compare_labels, first_negative, step_labels
from agentflow.grading._regrade import GradingResult, HookRequest, grade_runs, iter_steps, score_trace

__all__ = [
    "AnswerCheck",
    "Checkpoint",
    "CheckpointReport",
    "CheckpointResult",
    "CheckpointSpec",
    "Efficiency",
    "GradingResult",
    "HookRequest",
    "LabelMetrics",
    "Verifier",
    "compare_label_files",
    "compare_labels",
    "evaluate_checkpoints",
    "final_answer",
    "first_negative",
    "grade_runs",
    "iter_steps",
    "load_checkpoints",
    "score_trace",
    "step_labels",
]
