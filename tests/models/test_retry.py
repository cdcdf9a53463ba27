"""Model retries over real HTTP: backoff with jitter, Retry-After honoured, the time budget, each retry recorded."""

from __future__ import annotations

import email.utils
import re
from collections.abc import AsyncIterator

import pytest

from agentflow.errors import ModelAPIError
from agentflow.models import ModelSettings, OpenAIModel
from agentflow.models._retry import INITIAL_WAIT_S, JITTER_S, retry_after_seconds
from tests.support.openai_server import OpenAIServer, Reply

USER_TURN = [{"role": "user", "content": "Fix the failing test."}]


@pytest.fixture
async def model(openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OpenAIModel]:
    for key, value in openai_server.env.items():
        monkeypatch.setenv(key, value)
    openai_model = OpenAIModel("test-model")
    yield openai_model
    await openai_model.close()


async def test_a_429_waits_as_long_as_its_retry_after_header_says(
    model: OpenAIModel, openai_server: OpenAIServer
) -> None:
    openai_server.queue(
        Reply.error(
            429, "slow down", error_type="rate_limit_exceeded", retry_after_s=None, headers={"retry-after": "1"}
        ),
        Reply.text("after the wait"),
    )

    response = await model.complete(USER_TURN, [], ModelSettings())

    assert response.message["content"] == "after the wait"
    [retry] = response.retries
    assert (retry.attempt, retry.status_code, retry.retry_after_s, retry.wait_s) == (1, 429, 1.0, 1.0)
    assert "HTTP 429: slow down" in retry.error
    first, second = openai_server.request_times
    assert second - first >= 0.99  # a lower bound only: the wait can be longer, never shorter than asked


async def test_server_errors_back_off_exponentially_with_jitter(
    model: OpenAIModel, openai_server: OpenAIServer
) -> None:
    # no Retry-After: the backoff's own waits, 1 s then 2 s, each plus up to 1 s of jitter
    openai_server.queue(
        Reply.error(500, "upstream exploded", retry_after_s=None),
        Reply.error(503, "overloaded", retry_after_s=None),
        Reply.text("third time lucky"),
    )

    response = await model.complete(USER_TURN, [], ModelSettings())

    assert response.message["content"] == "third time lucky"
    assert [(r.attempt, r.status_code, r.retry_after_s) for r in response.retries] == [(1, 500, None), (2, 503, None)]
    first, second = (r.wait_s for r in response.retries)
    assert INITIAL_WAIT_S <= first <= INITIAL_WAIT_S + JITTER_S
    assert 2 * INITIAL_WAIT_S <= second <= 2 * INITIAL_WAIT_S + JITTER_S
    assert len(openai_server.requests) == 3


async def test_an_outage_stops_at_max_retry_s_and_carries_its_retries(
    model: OpenAIModel, openai_server: OpenAIServer
) -> None:
    openai_server.always(Reply.error(500, "down for maintenance", retry_after_s=0.2))

    with pytest.raises(ModelAPIError) as caught:
        await model.complete(USER_TURN, [], ModelSettings(max_retries=50, max_retry_s=1.0))

    retries = caught.value.retries
    # waits of 0.2 s: the budget of 1 s leaves room for at most 4, whatever the machine's speed
    assert 1 <= len(retries) <= 4
    assert [r["attempt"] for r in retries] == list(range(1, len(retries) + 1))
    assert all(r["status_code"] == 500 and r["wait_s"] == 0.2 for r in retries)
    assert len(openai_server.requests) == len(retries) + 1
    assert caught.value.status_code == 500
    assert re.search(rf"after {len(retries)} retr(y|ies) \(max_retry_s 1 reached\)", str(caught.value))


async def test_max_retries_bounds_the_attempts(model: OpenAIModel, openai_server: OpenAIServer) -> None:
    openai_server.always(Reply.error(502, "bad gateway"))

    with pytest.raises(ModelAPIError, match="after 3 retries") as caught:
        await model.complete(USER_TURN, [], ModelSettings(max_retries=3))

    assert len(caught.value.retries) == 3
    assert len(openai_server.requests) == 4


async def test_a_retry_after_longer_than_the_budget_is_not_waited_for(
    model: OpenAIModel, openai_server: OpenAIServer
) -> None:
    openai_server.queue(Reply.error(429, "come back in an hour", retry_after_s=3600), Reply.text("never asked"))

    with pytest.raises(ModelAPIError, match="HTTP 429") as caught:
        await model.complete(USER_TURN, [], ModelSettings(max_retry_s=5))

    assert caught.value.retries == []
    assert openai_server.pending == 1


async def test_the_server_can_forbid_a_retry(model: OpenAIModel, openai_server: OpenAIServer) -> None:
    openai_server.queue(Reply.error(503, "do not retry", headers={"x-should-retry": "false"}), Reply.text("never"))

    with pytest.raises(ModelAPIError, match="do not retry"):
        await model.complete(USER_TURN, [], ModelSettings())

    assert openai_server.pending == 1


def test_retry_after_headers() -> None:
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25  # OpenAI's precise one first
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after_seconds({"retry-after": date}, now=1_000_000) == 30.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_defaults_allow_several_attempts_over_about_two_minutes() -> None:
    settings = ModelSettings()
    assert settings.max_retries >= 5
    assert 60 <= settings.max_retry_s <= 180
