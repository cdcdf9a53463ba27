"""Fixtures of the trace tests: both stores, so the conformance suite runs against SQLite and PostgreSQL alike.

PostgreSQL comes from ``AGENTFLOW_TEST_POSTGRES_URL`` or, when that is unset, from the file
``/var/tmp/agentflow-test-postgres-url`` that ``.ci/setup-postgres.sh`` writes. Each test gets a schema of its own
(through the URL's ``options=-csearch_path=...``), dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from agentflow.traces import PostgresStore, Store, TraceStore
from tests.support.require import require

URL_ENV = "AGENTFLOW_TEST_POSTGRES_URL"
URL_FILE = Path("/var/tmp/agentflow-test-postgres-url")


def postgres_base_url() -> str | None:
    """The test server's URL, or None when this machine has none configured."""
    url = os.environ.get(URL_ENV)
    if not url and URL_FILE.is_file():
        url = URL_FILE.read_text().strip()
    return url or None


def _reachable(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose connections see a fresh, empty schema (dropped after the test)."""
    base = postgres_base_url()
    require(base is not None, f"no PostgreSQL for the tests: set {URL_ENV} or run .ci/setup-postgres.sh")
    assert base is not None
    require(_reachable(base), f"PostgreSQL at {base.split('@')[-1]} is not reachable: run .ci/setup-postgres.sh")
    import psycopg

    schema = f"agentflow_test_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The embedded store, then the PostgreSQL store: every test using it runs against both."""
    if request.param == "sqlite":
        yield TraceStore(tmp_path / ".agentflow")
        return
    url = request.getfixturevalue("postgres_url")
    store = PostgresStore(url)
    try:
        yield store
    finally:
        store.close()
