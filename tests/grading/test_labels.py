"""Step-label agreement: the AgentProcessBench metrics and ProcessBench F1, with the matching and missing rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentflow.errors import ConfigError
from agentflow.grading import compare_label_files, compare_labels


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


REFERENCE = [
    {"query_index": 0, "sample_index": 0, "step_labels": {"2": 1, "4": -1, "6": -1}},  # erroneous, first -1 at 4
    {"query_index": 0, "sample_index": 1, "step_labels": {"2": 1, "4": 1}},  # error-free
    {"query_index": 1, "sample_index": 0, "step_labels": {"2": 0, "4": 1}},  # error-free, prediction failed
    {"query_index": 2, "sample_index": 0, "step_labels": {"2": -1}},  # erroneous, no prediction at all
]


def test_metrics_follow_the_definitions() -> None:
    predictions = [
        {"query_index": 0, "sample_index": 0, "step_labels": {"2": 1, "4": 1, "6": -1}, "updated_at": "2026-01-01"},
        # a later annotation of the same record replaces the earlier one
        {"query_index": 0, "sample_index": 0, "step_labels": {"2": 1, "4": -1, "6": -1}, "updated_at": "2026-02-01"},
        # an older one listed last does not
        {"query_index": 0, "sample_index": 0, "step_labels": {"2": -1, "4": -1, "6": -1}, "updated_at": "2025-12-01"},
        {"query_index": 0, "sample_index": 1, "step_labels": {"2": 1, "4": -1}},
        {
            "query_index": 1,
            "sample_index": 0,
            "step_labels": {"2": 0, "4": 1},
            "comment": "llm_annotate_failed: timeout",
        },
    ]
    metrics = compare_labels(REFERENCE, predictions)
    assert metrics.match_key == "query_index,sample_index"
    assert metrics.steps == 8
    # matching steps: record 0: 3 of 3; record 1: 1 of 2; record 2 (failed): 0 of 2; record 3 (missing): 0 of 1
    assert metrics.step_micro_acc == pytest.approx(4 / 8)
    assert metrics.step_exact_acc == pytest.approx(1 / 4)
    # first -1: record 0: 4 = 4; record 1: -1 vs 4; record 2: -1 = -1 (compared against no labels); record 3: 2 vs -1
    assert metrics.first_neg1_idx_acc == pytest.approx(2 / 4)
    assert metrics.missing_or_failed == pytest.approx(2 / 4)
    # erroneous (records 0, 3): 1 of 2; error-free (records 1, 2): record 2 predicts no -1, record 1 does -> 1 of 2
    assert (metrics.erroneous_acc, metrics.error_free_acc) == (0.5, 0.5)
    assert metrics.processbench_f1 == pytest.approx(0.5)


def test_records_match_by_total_index_then_record_id() -> None:
    by_total = compare_labels(
        [{"total_index": 7, "step_labels": {"1": -1}}], [{"total_index": 7, "query_index": 3, "step_labels": {"1": -1}}]
    )
    assert (by_total.match_key, by_total.step_exact_acc) == ("total_index", 1.0)
    by_id = compare_labels([{"record_id": "a", "step_labels": {"1": 1}}], [{"record_id": "a", "step_labels": {"1": 0}}])
    assert (by_id.match_key, by_id.step_micro_acc, by_id.processbench_f1) == ("record_id", 0.0, 1.0)


def test_files_are_read_and_bad_lines_named(tmp_path: Path) -> None:
    reference = _write(tmp_path / "ref.jsonl", REFERENCE)
    predictions = _write(tmp_path / "pred.jsonl", [{"query_index": 0, "sample_index": 0, "step_labels": {"2": 1}}])
    direct = compare_label_files(reference, predictions)
    assert direct.missing_or_failed == 0.75
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"total_index": 1}\nnot json\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2"):
        compare_label_files(reference, bad)


def test_cli_prints_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agentflow.cli import run_cli

    reference = _write(tmp_path / "ref.jsonl", REFERENCE)
    predictions = _write(tmp_path / "pred.jsonl", REFERENCE)
    code = run_cli(["grade", "labels", "--reference", str(reference), "--predictions", str(predictions), "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    for name in ("step_micro_acc", "step_exact_acc", "first_neg1_idx_acc", "processbench_f1"):
        assert printed[name] == 1.0
    assert printed["missing_or_failed"] == 0.0
