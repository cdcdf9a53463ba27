"""Fixtures of the model tests; the loopback OpenAI server lives in tests/support so other suites reuse it."""

from tests.support.openai_server import openai_server

__all__ = ["openai_server"]
