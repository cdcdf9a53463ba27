"""The model responses of a recorded run, served back to the same requests: what replay and resume answer from.

A response is found by the content hash of its request (model, messages, tools, settings: ``request_hash``), so a
replayed conversation gets each answer exactly when it asks the question the recording asked; several identical
requests get their responses in recorded order. The key is computed now from the recorded request, not read from
the trace, so that a trace recorded when the hash still covered the retry policy matches the same request today.
Responses are kept per branch of the run (the request's ``data.branch``: a best-of candidate, a parallel branch):
a request made in a branch gets the responses that branch got, however the branches interleaved.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agentflow.errors import ReplayDivergence
from agentflow.traces._compare import masked, without_retry_policy
from agentflow.traces._events import Event, EventType
from agentflow.traces._hashing import request_hash


class RecordedResponses:
    """Recorded model responses, queued per request hash.

    Args:
        run_id: the recorded run (for messages).
        events: its events (blob references resolved); every ``model_request`` answered by a ``model_response`` is
            kept, one the run stopped during is not.
        volatile: text that may differ between the recording and now (test runners' timings in re-run tools'
            output, which reaches the next request); it is masked on both sides when matching.
    """

    def __init__(self, run_id: str, events: Iterable[Event], volatile: re.Pattern[str] | None = None) -> None:
        self.run_id = run_id
        self.volatile = volatile
        self.served = 0
        self.model_ids: list[str] = []  # the recorded models, in the order they were first asked
        self._queues: dict[tuple[str | None, str], deque[dict[str, Any]]] = {}  # (branch, request hash) -> responses
        requests: dict[int, Event] = {}
        for event in events:
            if event.type is EventType.MODEL_REQUEST:
                requests[event.seq] = event
            elif event.type is EventType.MODEL_RESPONSE and event.parent in requests:
                self._add(requests.pop(event.parent).data, event.data)

    def _add(self, request: Mapping[str, Any], response: Mapping[str, Any]) -> None:
        model_id = str(request.get("model"))
        key = self.request_key(
            model_id,
            request.get("messages") or [],
            request.get("tools") or [],
            without_retry_policy(request.get("settings")),
        )
        branch = request.get("branch")
        self._queues.setdefault((branch if isinstance(branch, str) else None, key), deque()).append(dict(response))
        if model_id not in self.model_ids:
            self.model_ids.append(model_id)

    def __len__(self) -> int:
        """How many responses are still to be served."""
        return sum(len(queue) for queue in self._queues.values())

    def request_key(self, model_id: str, messages: Any, tools: Any, settings: Mapping[str, Any]) -> str:
        """The key a request is matched by: its content hash, with volatile text masked."""
        if self.volatile is not None:
            messages = masked(messages, self.volatile)
        return request_hash(model_id, messages, tools, settings)

    def take(self, request_hashes: Sequence[str], branch: str | None = None) -> dict[str, Any] | None:
        """The next recorded response to a request with one of these hashes made in ``branch`` (None: the run's
        main path), or None if none is left."""
        for digest in request_hashes:
            queue = self._queues.get((branch, digest))
            if queue:
                self.served += 1
                return queue.popleft()
        return None

    def next_response(self, request_hashes: Sequence[str], branch: str | None = None) -> dict[str, Any]:
        """Like :meth:`take`, for a replay, where a request the recording never made is a divergence.

        Raises:
            ReplayDivergence: no (more) response to this request was recorded.
        """
        response = self.take(request_hashes, branch)
        if response is None:
            shown = ", ".join(digest[:12] for digest in request_hashes)
            where = f" in branch {branch!r}" if branch is not None else ""
            raise ReplayDivergence(
                f"the model request (hash {shown}){where} is not on the tape of run {self.run_id}: the conversation "
                "differs from the recorded one here"
            )
        return response
