"""The stores the Q-table tests run against: the embedded one, then PostgreSQL (skipped when it is missing)."""

from tests.traces.conftest import any_store, postgres_url

__all__ = ["any_store", "postgres_url"]
