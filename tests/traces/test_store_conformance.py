"""The store conformance suite (agentflow.traces.conformance), run against both stores: SQLite + JSONL, PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentflow.traces import RunInfo, Store, TraceStore
from agentflow.traces.conformance import CHECKS, run_conformance


@pytest.mark.parametrize("check", list(CHECKS))
def test_store_passes(any_store: Store, check: str) -> None:
    [result] = run_conformance(lambda: any_store, only=[check])
    assert result.status == "passed", result


class _ForgetfulStore(TraceStore):
    """A store that loses its run list: what the suite is there to catch."""

    def list_runs(self, limit: int = 50, status: str | None = None) -> list[RunInfo]:
        return []


def test_a_store_breaking_the_contract_fails_by_name(tmp_path: Path) -> None:
    results = {r.name: r for r in run_conformance(lambda: _ForgetfulStore(tmp_path / "s"), only=["record_list_load"])}
    assert results["record_list_load"].status == "failed"
    assert "one run recorded, 0 listed" in results["record_list_load"].detail
    known = run_conformance(
        lambda: _ForgetfulStore(tmp_path / "t"), only=["record_list_load"], known_failures=["record_list_load"]
    )
    assert [r.status for r in known] == ["known_failure"]
    with pytest.raises(KeyError, match="unknown store conformance checks"):
        run_conformance(lambda: TraceStore(tmp_path / "u"), only=["no_such_check"])
