"""The replay model: answers from a recorded run's responses instead of calling a provider.

``replay:<run_id>`` (for example ``agentflow run wf.yaml --model replay:20260101-120000-ab12cd34``) serves the
responses of that run from the store in ``AGENTFLOW_STORE`` (default ``.agentflow``): each request is matched by the
hash of its content (messages, tools, settings, under the model the run used), in order, and a request the run never
made fails with ``ReplayDivergence``. ``agentflow replay`` uses the same model, impersonating each recorded model so
the replayed events are the recorded ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentflow.models._base import Message, Model, ModelResponse, ModelSettings
from agentflow.models._registry import model_provider, parse_model_string

if TYPE_CHECKING:
    from agentflow.traces import RecordedResponses

STORE_ENV = "AGENTFLOW_STORE"


class ReplayModel(Model):
    """Serves recorded model responses (:class:`~agentflow.traces.RecordedResponses`).

    Args:
        responses: the recorded run's responses.
        impersonate: the model string this model stands in for (its ``model_id`` becomes that string, so requests
            and their hashes are the recorded ones); None matches requests made under any recorded model.
        branch: the id of the branch of the run making the call (read at each call), so that a request made in a
            branch gets the responses that branch got; None: every call is on the run's main path.
    """

    provider = "replay"

    def __init__(
        self,
        responses: RecordedResponses,
        *,
        impersonate: str | None = None,
        branch: Callable[[], str | None] | None = None,
    ) -> None:
        super().__init__(responses.run_id)
        self.responses = responses
        self.impersonate = impersonate
        self.branch = branch
        if impersonate is not None:
            self.provider, self.name = parse_model_string(impersonate)

    async def complete(
        self, messages: list[Message], tools: list[dict[str, Any]], settings: ModelSettings
    ) -> ModelResponse:
        """Return the recorded response to this request.

        Raises:
            ReplayDivergence: no (more) response to a request with this content was recorded.
        """
        settings_data = settings.request_data()
        candidates = [self.model_id] if self.impersonate is not None else self.responses.model_ids
        hashes = [self.responses.request_key(model_id, messages, tools, settings_data) for model_id in candidates]
        branch = self.branch() if self.branch is not None else None
        return ModelResponse.from_recorded(self.responses.next_response(hashes, branch), self.model_id)


@model_provider("replay")
def replay_provider(name: str, *, base_dir: Path | None) -> Model:
    """``replay:<run_id>``: the responses of a stored run (store from ``AGENTFLOW_STORE``, else ``.agentflow``)."""
    from agentflow.traces import RecordedResponses, open_store  # the store drivers load only for a replay model

    store = open_store(os.environ.get(STORE_ENV) or ".agentflow")
    trace = store.load_trace(name)
    trace.raise_for_problems()
    return ReplayModel(RecordedResponses(trace.run_id, trace.resolved_events()))
