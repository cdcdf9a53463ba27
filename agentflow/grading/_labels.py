"""Step-label agreement (AgentProcessBench metrics, ProcessBench F1) between reference and predicted labels.

Each JSONL record holds ``step_labels``: a map from assistant message index to −1, 0 or +1. Records of the two files
match by (``query_index``, ``sample_index``) when every record of both files has them, else by ``total_index``, else by
``record_id``. When a prediction key repeats, the record with the latest ``updated_at`` wins (else the last line). A
reference record without a prediction, or whose prediction's ``comment`` starts with ``llm_annotate_failed:``, is
*missing or failed*: its steps are compared against no labels (every step counts as a mismatch, its first −1 index
is −1).

Metrics (DESIGN.md): ``step_micro_acc`` = matching steps / reference steps; ``step_exact_acc`` = share of reference
trajectories with every step equal; ``first_neg1_idx_acc`` = share whose first −1 index (−1 when none) matches;
``processbench_f1`` = harmonic mean of the accuracy on erroneous trajectories (reference has a −1: the first −1
index must match) and on error-free ones (the prediction must hold no −1); when one group is empty, F1 is the
other group's accuracy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agentflow.errors import ConfigError

FAILED_PREFIX = "llm_annotate_failed:"


@dataclass
class LabelMetrics:
    """Agreement of predicted step labels with reference labels."""

    records: int
    steps: int
    step_micro_acc: float
    step_exact_acc: float
    first_neg1_idx_acc: float
    missing_or_failed: float
    processbench_f1: float
    erroneous_acc: float | None
    error_free_acc: float | None
    match_key: str

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as JSON-serialisable data."""
        return asdict(self)


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """The records of a JSONL file with their line numbers.

    Raises:
        ConfigError: the file cannot be read, or a line is not a JSON object (named by its line number).
    """
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}") from None
    records: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{file}:{number}: not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{file}:{number}: a record must be a JSON object")
        records.append((number, record))
    return records


def step_labels(record: Mapping[str, Any]) -> dict[int, int]:
    """A record's labels as ``{assistant message index: label}``."""
    raw = record.get("step_labels") or {}
    if isinstance(raw, list):  # a plain list: labels of consecutive steps
        return {index: int(label) for index, label in enumerate(raw)}
    if not isinstance(raw, Mapping):
        return {}
    return {int(index): int(label) for index, label in raw.items()}


def first_negative(labels: Mapping[int, int]) -> int:
    """The smallest index labelled −1, or −1 when none is."""
    negatives = [index for index, label in labels.items() if label == -1]
    return min(negatives) if negatives else -1


def _match_key(references: Sequence[dict[str, Any]], predictions: Sequence[dict[str, Any]]) -> str:
    everything = [*references, *predictions]
    if everything and all("query_index" in r and "sample_index" in r for r in everything):
        return "query_index,sample_index"
    if everything and all("total_index" in r for r in everything):
        return "total_index"
    return "record_id"


def _key(record: Mapping[str, Any], key: str) -> Any:
    return tuple(json.dumps(record.get(part)) for part in key.split(","))


def compare_labels(references: Sequence[dict[str, Any]], predictions: Sequence[dict[str, Any]]) -> LabelMetrics:
    """Compare predicted step labels with reference labels (see the module docstring for every rule)."""
    key = _match_key(references, predictions)
    latest: dict[Any, tuple[str, int, dict[str, Any]]] = {}
    for order, candidate in enumerate(predictions):
        record_key = _key(candidate, key)
        stamp = str(candidate.get("updated_at") or "")
        held = latest.get(record_key)
        if held is None or (stamp, order) >= (held[0], held[1]):
            latest[record_key] = (stamp, order, candidate)
    steps = matching = exact = first_ok = missing = 0
    erroneous: list[bool] = []
    error_free: list[bool] = []
    for reference in references:
        expected = step_labels(reference)
        found = latest.get(_key(reference, key))
        prediction: dict[str, Any] | None = found[2] if found is not None else None
        if prediction is None or str(prediction.get("comment") or "").startswith(FAILED_PREFIX):
            missing += 1
            predicted: dict[int, int] = {}
        else:
            predicted = step_labels(prediction)
        agree = sum(1 for index, label in expected.items() if predicted.get(index) == label)
        steps += len(expected)
        matching += agree
        exact += agree == len(expected)
        same_first = first_negative(expected) == first_negative(predicted)
        first_ok += same_first
        if first_negative(expected) >= 0:
            erroneous.append(same_first)
        else:
            error_free.append(first_negative(predicted) == -1)
    count = len(references)
    erroneous_acc = sum(erroneous) / len(erroneous) if erroneous else None
    error_free_acc = sum(error_free) / len(error_free) if error_free else None
    return LabelMetrics(
        records=count,
        steps=steps,
        step_micro_acc=matching / steps if steps else 0.0,
        step_exact_acc=exact / count if count else 0.0,
        first_neg1_idx_acc=first_ok / count if count else 0.0,
        missing_or_failed=missing / count if count else 0.0,
        processbench_f1=_f1(erroneous_acc, error_free_acc),
        erroneous_acc=erroneous_acc,
        error_free_acc=error_free_acc,
        match_key=key,
    )


def _f1(erroneous: float | None, error_free: float | None) -> float:
    if erroneous is None or error_free is None:
        return erroneous if erroneous is not None else (error_free or 0.0)
    return 0.0 if erroneous + error_free == 0 else 2 * erroneous * error_free / (erroneous + error_free)


def compare_label_files(reference: str | Path, predictions: str | Path) -> LabelMetrics:
    """:func:`compare_labels` over two JSONL files.

    Raises:
        ConfigError: a file is unreadable or holds a line that is not a JSON object.
    """
    return compare_labels([r for _, r in read_jsonl(reference)], [r for _, r in read_jsonl(predictions)])
