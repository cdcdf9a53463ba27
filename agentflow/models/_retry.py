"""Retrying a model call that failed for a transient reason: backoff with jitter, ``Retry-After``, and a record.

The policy (``ModelSettings.max_retries``, ``ModelSettings.max_retry_s``): a failed call is tried again after
``min(1 s · 2^n + jitter in [0, 1 s), 30 s)`` (n = 0, 1, ...; tenacity's ``wait_exponential_jitter``), or after the
wait the server asks for in ``retry-after-ms`` / ``Retry-After`` when it sends one, at most ``max_retries`` times
and never starting a wait that would end past ``max_retry_s`` since the first attempt. The defaults (6 retries,
120 s) give a provider's short outage or rate limit about a minute to pass (waits of about 1, 2, 4, 8, 16 and 30 s),
patient as inspect_ai's retrying is, where the OpenAI SDK alone gives up after 2 retries within a few seconds
(0.5 s doubling). The SDK's own retries are off, so that each retry is seen. Each retry is a :class:`ModelRetry`, which
the runtime records in the trace (``retries`` of the ``model_response`` event, or of the ``error`` event when the
call still failed).
"""

from __future__ import annotations

import contextlib
import email.utils
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

T = TypeVar("T")

INITIAL_WAIT_S = 1.0
MAX_WAIT_S = 30.0
JITTER_S = 1.0


@dataclass(frozen=True)
class ModelRetry:
    """One failed attempt of a model call that was tried again.

    ``wait_s`` is how long the call waited before its next attempt; ``retry_after_s`` what the server asked for
    (None when it sent no such header).
    """

    attempt: int
    error: str
    status_code: int | None
    wait_s: float
    retry_after_s: float | None

    def to_dict(self) -> dict[str, Any]:
        """The retry as trace data."""
        return asdict(self)


RetryObserver = Callable[["ModelRetry"], None]
_observer: ContextVar[RetryObserver | None] = ContextVar("agentflow_model_retry_observer", default=None)


@contextlib.contextmanager
def observe_retries(observer: RetryObserver) -> Iterator[None]:
    """Call ``observer`` with each retry of the model calls made inside, as it happens.

    The runtime watches a call this way: a timeout that cuts a call while it retries a failing provider is the
    provider's doing, not the agent's, and only the retries seen so far can say so.
    """
    token = _observer.set(observer)
    try:
        yield
    finally:
        _observer.reset(token)


class TransientModelError(Exception):
    """A provider failure worth retrying; providers raise it (chained to the SDK's exception) inside ``attempt``.

    Args:
        error: what failed, in one line.
        status_code: the HTTP status, when there was a response.
        retry_after_s: the wait the server asked for (see :func:`retry_after_seconds`).
    """

    def __init__(self, error: str, *, status_code: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status_code = status_code
        self.retry_after_s = retry_after_s


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait a response asks for: ``retry-after-ms`` (milliseconds, OpenAI's), else ``Retry-After`` (seconds
    or an HTTP date); None when neither is there or readable.

    ``headers`` must look names up case-insensitively (httpx's ``Headers`` do).
    """
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(float(milliseconds) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]], *, max_retries: int, max_retry_s: float, retries: list[ModelRetry]
) -> T:
    """Await ``attempt()`` until it returns, retrying while it raises :class:`TransientModelError`.

    Each retry is appended to ``retries`` before its wait, so the caller has them however the call ends, and given
    to the observer of :func:`observe_retries`, if any.

    Raises:
        TransientModelError: the last transient failure, when no retry is left (by count or by time).
        Exception: whatever else ``attempt`` raised, at once.
    """
    backoff = wait_exponential_jitter(multiplier=INITIAL_WAIT_S, max=MAX_WAIT_S, jitter=JITTER_S)

    def wait(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome is not None else None
        asked = failure.retry_after_s if isinstance(failure, TransientModelError) else None
        return asked if asked is not None else backoff(state)

    observer = _observer.get()

    def record(state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome is not None else None
        assert isinstance(failure, TransientModelError)  # only these are retried
        retry = ModelRetry(
            attempt=state.attempt_number,
            error=failure.error,
            status_code=failure.status_code,
            wait_s=round(state.upcoming_sleep, 3),
            retry_after_s=failure.retry_after_s,
        )
        retries.append(retry)
        if observer is not None:
            observer(retry)

    retrying = AsyncRetrying(
        retry=retry_if_exception(lambda exc: isinstance(exc, TransientModelError)),
        # stop_before_delay: a wait that would end past the budget is not started (a long Retry-After included)
        stop=stop_after_attempt(max_retries + 1) | stop_before_delay(max_retry_s),
        wait=wait,
        before_sleep=record,
        reraise=True,
    )
    async for attempt_state in retrying:
        with attempt_state:
            return await attempt()
    raise AssertionError("unreachable: tenacity either returns or re-raises")
