"""The one store base: both stores get the Store contract from StoreBase and say only where their data goes."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest

import agentflow.traces._postgres as postgres_module
from agentflow.errors import TraceError
from agentflow.traces import EventType, PostgresStore, Store, TraceStore, open_store
from agentflow.traces._base import StoreBase

# The Store contract's members a store may define itself: where it is, what it holds open, and its run list.
_STORE_OWN = {"location", "run_ids", "close"}
_CONTRACT = {name for name in dir(Store) if not name.startswith("_")} - _STORE_OWN


@pytest.mark.parametrize("store_class", [TraceStore, PostgresStore])
def test_the_contract_is_written_once_in_the_base(store_class: type[StoreBase[Any]]) -> None:
    assert issubclass(store_class, StoreBase)
    rewritten = sorted(name for name in _CONTRACT if name in vars(store_class))
    assert rewritten == [], f"{store_class.__name__} implements again what StoreBase does: {rewritten}"


def test_the_postgres_store_imports_no_private_name() -> None:
    tree = ast.parse(inspect.getsource(postgres_module))
    imported = [
        (node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names
    ]
    assert [pair for pair in imported if pair[1].startswith("_")] == []
    assert [pair for pair in imported if pair[0] == "agentflow.traces._store"] == []


def test_a_folder_store_closes_and_is_a_context_manager(tmp_path: Path) -> None:
    with TraceStore(tmp_path / "s") as store, store.new_run(workflow="demo") as recorder:
        recorder.finish("succeeded")
    store.close()  # closing again is harmless
    assert open_store(tmp_path / "s").load_trace(recorder.run_id).ok


def test_a_closed_postgres_store_refuses_work_and_its_recorders_keep_going(postgres_url: str) -> None:
    with PostgresStore(postgres_url) as store:
        recorder = store.new_run(workflow="demo")
    started = recorder.emit(EventType.RUN_STARTED, data={"workflow": "demo"})
    recorder.finish("succeeded")
    recorder.close()
    with pytest.raises(TraceError, match="closed"):
        store.list_runs()
    store.close()  # closing again is harmless
    with PostgresStore(postgres_url) as again:
        assert again.load_trace(recorder.run_id).events[0].hash == started.hash
