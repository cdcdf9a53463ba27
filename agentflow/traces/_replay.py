"""Deterministic replay of a stored run: the tape, the tape sandbox, event comparison, and ``replay_run``.

Two modes (``agentflow replay RUN_ID --mode tape|verify``):

- ``tape`` re-executes the workflow with every model response served from the trace (matched by the hash of the
  request content, in order) and every tool result served from the trace (with the sandbox commands it recorded):
  no model is called and nothing executes; the sandbox is a :class:`TapeSandbox` that refuses every operation.
- ``verify`` serves the model from the tape but runs every tool again in a fresh sandbox, so a tool whose behaviour
  changed shows up as the first divergence.

Events are compared by their *content digest*: the sha256 of the RFC 8785 JSON of ``seq``, ``type``, ``node``,
``parent`` and ``data``, without what differs between two executions of the same run by nature: the run id, the
timestamp, the hash chain (which covers both), every ``duration_s``, and the host facts of ``run_started``
(``workflow_file``, ``agentflow_version``, the sandbox's isolation report, and ``replay_of``/``replay_mode``). A
changed workflow shows in ``run_started``'s ``template_hash`` and is reported as such. A resumed run is compared as
one uninterrupted execution (see :func:`without_abandoned`). Text that differs between two executions of the same
command (``VOLATILE_TEXT``: test runners' timings) is masked before comparing, and in ``verify`` mode also when
matching the model's requests, which carry the re-run tools' output.
"""

from __future__ import annotations

import difflib
import json
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agentflow.errors import ConfigError, ReplayDivergence, SandboxError, TraceError
from agentflow.sandboxes._base import ExecResult, IsolationReport, Sandbox
from agentflow.tools._base import ToolOutcome
from agentflow.traces._events import Event, EventType, ran_by_hook
from agentflow.traces._hashing import canonical_json, request_hash, sha256_hex, to_json_value

if TYPE_CHECKING:
    from agentflow.models._base import Model
    from agentflow.traces._protocol import Store, Trace

ReplayMode = Literal["tape", "verify"]
# run_started keys that differ between two executions of the same run by nature (where and how it ran, not what it
# did): `resumable` says whether LangGraph checkpoints were saved, which a replay does not do.
_HOST_FACTS = ("workflow_file", "agentflow_version", "replay_of", "replay_mode", "resumable")


VOLATILE_TEXT: tuple[str, ...] = (
    r"\bin \d+(?:\.\d+)?s\b",  # a test runner's wall time: pytest "3 passed in 0.02s", unittest "Ran 4 tests in 0.001s"
    r"\(\d+:\d\d:\d\d(?:\.\d+)?\)",  # pytest's "(0:01:02)" after a long run
)
"""Text in tool output that differs between two executions of the same commands; ``verify`` replays mask it.

Without it a verify replay of any run that ran tests would report the test runner's timing as the divergence.
"""

MASK = "<volatile>"


def volatile_pattern(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regular expression for the volatile text ``patterns`` (None for none).

    Raises:
        ConfigError: a pattern is not a valid regular expression.
    """
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"--ignore {pattern!r} is not a regular expression: {exc}") from None
    return re.compile("|".join(f"(?:{pattern})" for pattern in patterns)) if patterns else None


def content_digest(event: Event, volatile: re.Pattern[str] | None = None) -> str:
    """The digest replay compares: the event's content without run id, time, chain and durations (see module)."""
    return sha256_hex(canonical_json(comparable(event, volatile)))


def comparable(event: Event, volatile: re.Pattern[str] | None = None) -> dict[str, Any]:
    """The part of an event that two executions of the same run must agree on.

    ``volatile`` matches text that may differ anyway (see ``VOLATILE_TEXT``); it is replaced by ``<volatile>``.
    """
    data = _normalised(to_json_value(event.data), volatile)
    if event.type is EventType.MODEL_REQUEST and isinstance(data, dict):
        # The hash covers the request's other fields, which are compared themselves (masked in verify mode); and
        # traces recorded before the retry policy left the request hash name it in the settings.
        data.pop("request_hash", None)
        data["settings"] = _without_retry_policy(data.get("settings"))
    if event.type is EventType.RUN_STARTED and isinstance(data, dict):
        data = {key: value for key, value in data.items() if key not in _HOST_FACTS}
        sandbox = data.get("sandbox")
        if isinstance(sandbox, dict):
            data["sandbox"] = {key: value for key, value in sandbox.items() if key != "isolation"}
    return {"seq": event.seq, "type": str(event.type), "node": event.node, "parent": event.parent, "data": data}


_RETRY_POLICY = ("max_retries", "max_retry_s")
"""Model settings that change how failures are retried, never an answer (``ModelSettings.request_data`` leaves
them out of a request; traces recorded before it did carry ``max_retries``)."""


def _without_retry_policy(settings: Any) -> dict[str, Any]:
    if not isinstance(settings, Mapping):
        return {}
    return {key: value for key, value in settings.items() if key not in _RETRY_POLICY}


def without_abandoned(events: Sequence[Event]) -> list[Event]:
    """The events of a resumed run as one uninterrupted execution would have recorded them.

    A resumed trace holds the visit the interruption abandoned (the events after ``run_resumed``'s
    ``resumed_after_seq``), the ``run_resumed`` event itself and the commands of the sandbox rebuild after it
    (``sandbox_exec`` with ``by: "resume"``); all of them are left out, and the events after them are numbered on
    (``seq``, ``parent`` and rewards' ``target_seq``), so that a replay of the run compares event by event.
    A trace that was never resumed comes back as it is.
    """
    abandoned: set[int] = set()
    for event in events:
        if event.type is EventType.RUN_RESUMED:
            cut = event.data.get("resumed_after_seq")
            first = cut + 1 if isinstance(cut, int) else event.seq
            abandoned.update(range(first, event.seq + 1))
        elif event.type is EventType.SANDBOX_EXEC and event.data.get("by") == "resume":
            abandoned.add(event.seq)  # the sandbox rebuild after run_resumed: no uninterrupted run has it
    if not abandoned:
        return list(events)
    kept = [event for event in events if event.seq not in abandoned]
    renumbered = {event.seq: index for index, event in enumerate(kept)}
    result: list[Event] = []
    for index, event in enumerate(kept):
        data = event.data
        target = data.get("target_seq")
        if isinstance(target, int) and target in renumbered:
            data = {**data, "target_seq": renumbered[target]}
        parent = renumbered.get(event.parent) if event.parent is not None else None
        result.append(event.model_copy(update={"seq": index, "parent": parent, "data": data}))
    return result


def _masked(value: Any, volatile: re.Pattern[str]) -> Any:
    """``value`` with every match of ``volatile`` in its strings replaced by ``<volatile>``."""
    if isinstance(value, str):
        return volatile.sub(MASK, value)
    if isinstance(value, dict):
        return {key: _masked(item, volatile) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, volatile) for item in value]
    return value


def _normalised(value: Any, volatile: re.Pattern[str] | None) -> Any:
    """``value`` without durations, and with volatile text masked."""
    if isinstance(value, dict):
        return {key: _normalised(item, volatile) for key, item in value.items() if key != "duration_s"}
    if isinstance(value, list):
        return [_normalised(item, volatile) for item in value]
    if volatile is not None and isinstance(value, str):
        return volatile.sub(MASK, value)
    return value


@dataclass
class ServedTool:
    """A recorded tool result served back on replay, with the sandbox commands it ran."""

    outcome: ToolOutcome
    execs: list[dict[str, Any]]


class Tape:
    """The model responses and tool results of a recorded run, served back in order.

    Args:
        trace: the recorded run (verified; blob references are resolved here). A resumed run's abandoned visit is
            left out (see :func:`without_abandoned`).
        mode: ``tape`` serves tool results too; ``verify`` serves only the model.
        volatile: in ``verify`` mode, text of tool output that may differ between executions (see
            ``VOLATILE_TEXT``): requests are matched with it masked, since the re-run tools' output reaches the
            model's next request.
    """

    def __init__(
        self,
        trace: Trace,
        mode: ReplayMode | Literal["model"] = "tape",
        volatile: re.Pattern[str] | None = None,
    ) -> None:
        self.run_id = trace.run_id
        self.mode = mode
        self.volatile = volatile if mode == "verify" else None
        self.model_calls_served = 0
        self.tool_results_served = 0
        self._responses: dict[str, deque[dict[str, Any]]] = {}
        self._tools: dict[tuple[str, str, str], deque[tuple[dict[str, Any], list[dict[str, Any]]]]] = {}
        self.model_ids: list[str] = []
        self.run_started: dict[str, Any] = {}
        self.original_duration_s: float | None = None
        self.tape_sandbox: TapeSandbox | None = None
        self._load(trace)

    def hook_events_after(self, seq: int) -> list[Event]:
        """The recorded events that reward hooks wrote right after event ``seq`` (rewards, failures, commands)."""
        found: list[Event] = []
        for event in self._recorded[seq + 1 :]:
            if not _is_hook_event(event):
                break
            found.append(event)
        return found

    def _load(self, trace: Trace) -> None:
        events = [_resolved(trace, event) for event in without_abandoned(trace.events)]
        self._recorded = events
        by_parent: dict[int, list[Event]] = {}
        for event in events:
            if event.parent is not None:
                by_parent.setdefault(event.parent, []).append(event)
        for event in events:
            if event.type is EventType.RUN_STARTED:
                self.run_started = dict(event.data)
            elif event.type is EventType.RUN_FINISHED:
                duration = event.data.get("duration_s")
                self.original_duration_s = float(duration) if isinstance(duration, int | float) else None
            elif event.type is EventType.MODEL_REQUEST:
                reply = next((e for e in by_parent.get(event.seq, []) if e.type is EventType.MODEL_RESPONSE), None)
                if reply is None:
                    continue  # the run stopped while the model was thinking
                # Keyed by a hash of the recorded request computed now, not by the recorded hash: a trace recorded
                # when the hash still covered the retry policy must match the same request made today.
                matched_by = self._masked_key(event.data)
                self._responses.setdefault(matched_by, deque()).append(dict(reply.data))
                model_id = str(event.data.get("model"))
                if model_id not in self.model_ids:
                    self.model_ids.append(model_id)
            elif event.type is EventType.TOOL_CALL:
                children = by_parent.get(event.seq, [])
                result = next((e for e in children if e.type is EventType.TOOL_RESULT), None)
                if result is None:
                    continue
                # a step hook's commands hang under the call too; they come back with the hook's reward instead
                execs = [dict(e.data) for e in children if e.type is EventType.SANDBOX_EXEC and not ran_by_hook(e)]
                key = _tool_key(event.data.get("tool"), event.data.get("call_id"), event.data.get("arguments"))
                self._tools.setdefault(key, deque()).append((dict(result.data), execs))

    def request_key(self, model_id: str, messages: Any, tools: Any, settings: Mapping[str, Any]) -> str:
        """The key a request is matched by: its content hash, with volatile text masked in ``verify`` mode."""
        if self.volatile is not None:
            messages = _masked(messages, self.volatile)
        return request_hash(model_id, messages, tools, settings)

    def _masked_key(self, request: Mapping[str, Any]) -> str:
        return self.request_key(
            str(request.get("model")),
            request.get("messages") or [],
            request.get("tools") or [],
            _without_retry_policy(request.get("settings")),
        )

    @property
    def serves_tools(self) -> bool:
        """Whether tool results come from the tape (``tape`` mode) rather than from running the tools."""
        return self.mode == "tape"

    def model(self, model_string: str) -> Model:
        """A model that answers as ``model_string`` did in the recorded run, from the tape."""
        from agentflow.models._replay import ReplayModel

        return ReplayModel(self, impersonate=model_string)

    def next_response(self, request_hashes: Sequence[str]) -> dict[str, Any]:
        """The next recorded response to a request with one of these hashes.

        Raises:
            ReplayDivergence: the tape holds no (more) response to this request.
        """
        for digest in request_hashes:
            queue = self._responses.get(digest)
            if queue:
                self.model_calls_served += 1
                return queue.popleft()
        shown = ", ".join(digest[:12] for digest in request_hashes)
        raise ReplayDivergence(
            f"the model request (hash {shown}) is not on the tape of run {self.run_id}: the conversation differs "
            "from the recorded one here"
        )

    def tool_outcome(self, tool: str, call_id: str, arguments: str) -> ServedTool | None:
        """The recorded result of this tool call in ``tape`` mode; None in ``verify`` mode (the tool runs).

        Raises:
            ReplayDivergence: the tape holds no (more) result for this call.
        """
        if not self.serves_tools:
            return None
        queue = self._tools.get(_tool_key(tool, call_id, arguments))
        if not queue:
            raise ReplayDivergence(
                f"tool call {tool}({arguments[:200]}) with id {call_id!r} is not on the tape of run {self.run_id}"
            )
        result, execs = queue.popleft()
        self.tool_results_served += 1
        outcome = ToolOutcome(
            ok=bool(result.get("ok")),
            content=str(result.get("content") or ""),
            result=result.get("result"),
            error=result.get("error"),
        )
        return ServedTool(outcome, execs)

    def sandbox(self) -> TapeSandbox:
        """The sandbox of a ``tape`` replay: it reports the recorded isolation and refuses every operation."""
        sandbox_info = self.run_started.get("sandbox")
        isolation = sandbox_info.get("isolation") if isinstance(sandbox_info, dict) else None
        self.tape_sandbox = TapeSandbox(isolation if isinstance(isolation, dict) else {})
        return self.tape_sandbox


def _tool_key(tool: Any, call_id: Any, arguments: Any) -> tuple[str, str, str]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, sort_keys=True)
    return str(tool), str(call_id), text


def _resolved(trace: Trace, event: Event) -> Event:
    if "$blob" not in json.dumps(event.data):
        return event
    return event.model_copy(update={"data": trace.resolve(event.data)})


def _is_hook_event(event: Event) -> bool:
    """A reward, the recorded failure of a reward hook (an error event naming its hook), or a hook's sandbox command."""
    return (
        event.type is EventType.REWARD or (event.type is EventType.ERROR and "hook" in event.data) or ran_by_hook(event)
    )


class TapeSandbox(Sandbox):
    """The sandbox of a tape replay: tool results come from the trace, so any use of it is a replay bug.

    ``execs`` counts the commands something tried to run anyway (a reward hook that executes, say); each attempt
    raises :class:`~agentflow.errors.SandboxError`.
    """

    backend = "tape"

    def __init__(self, isolation: Mapping[str, Any]) -> None:
        self._isolation = dict(isolation)
        self.execs = 0

    def _refuse(self, what: str) -> SandboxError:
        return SandboxError(f"replay in tape mode serves tool results from the trace; nothing may {what}")

    async def exec(
        self,
        cmd: list[str],
        *,
        stdin: str | bytes | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        self.execs += 1
        raise self._refuse(f"execute {cmd!r}")

    async def read_file(self, path: str) -> bytes:
        raise self._refuse(f"read {path!r}")

    async def write_file(self, path: str, data: str | bytes) -> None:
        raise self._refuse(f"write {path!r}")

    async def list_files(self, path: str = ".") -> list[str]:
        raise self._refuse(f"list {path!r}")

    async def copy_in(self, source_dir: str, dest: str = ".") -> None:
        raise self._refuse(f"copy {source_dir!r} in")

    def isolation(self) -> IsolationReport:
        fields = {"backend", "network_isolated", "filesystem_isolated", "pid_namespace", "resource_limits", "details"}
        if fields >= self._isolation.keys() and {"backend"} <= self._isolation.keys():
            return IsolationReport(**self._isolation)
        return IsolationReport("tape", False, False, False, False, {"replay": "tape mode: nothing executes"})

    @property
    def workdir(self) -> str:
        return "/tape"

    async def close(self) -> None:
        return None


@dataclass
class Divergence:
    """The first event where a replay differs from the recording."""

    index: int
    node: str | None
    expected: dict[str, Any] | None
    actual: dict[str, Any] | None
    diff: str

    def to_dict(self) -> dict[str, Any]:
        """Return the divergence as JSON-serialisable data."""
        return asdict(self)


@dataclass
class ReplayReport:
    """What a replay found. ``identical`` is True when every event's content digest matched, in order."""

    run_id: str
    replay_run_id: str
    mode: ReplayMode
    identical: bool
    events_expected: int
    events_actual: int
    template_changed: bool
    recorded_template_hash: str | None
    current_template_hash: str
    divergence: Divergence | None
    model_calls_served: int
    tool_results_served: int
    sandbox_execs: int
    original_wall_s: float | None
    replay_wall_s: float
    status: str
    problems: list[str] = field(default_factory=lambda: [])
    ignored: list[str] = field(default_factory=lambda: [])  # the volatile-text patterns masked before comparing

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-serialisable data."""
        data = asdict(self)
        data["divergence"] = self.divergence.to_dict() if self.divergence else None
        return data


def first_divergence(
    expected: Sequence[Event], actual: Sequence[Event], volatile: re.Pattern[str] | None = None
) -> Divergence | None:
    """Compare two event sequences by content (volatile text masked); return where they first differ, or None."""
    for index in range(max(len(expected), len(actual))):
        old = expected[index] if index < len(expected) else None
        new = actual[index] if index < len(actual) else None
        old_view = comparable(old, volatile) if old is not None else None
        new_view = comparable(new, volatile) if new is not None else None
        if old_view == new_view:
            continue
        diff = "\n".join(
            difflib.unified_diff(
                _pretty(old_view).splitlines(),
                _pretty(new_view).splitlines(),
                fromfile="recorded",
                tofile="replayed",
                lineterm="",
            )
        )
        node = (old or new).node if (old or new) is not None else None  # type: ignore[union-attr]
        return Divergence(index=index, node=node, expected=old_view, actual=new_view, diff=diff)
    return None


def _executed(tape: Tape, events: Sequence[Event]) -> int:
    """Sandbox commands that really ran during the replay (in tape mode the recorded ones are only re-emitted)."""
    if tape.serves_tools:
        return tape.tape_sandbox.execs if tape.tape_sandbox is not None else 0
    return sum(1 for event in events if event.type is EventType.SANDBOX_EXEC)


def _pretty(view: dict[str, Any] | None) -> str:
    return "(no event)" if view is None else json.dumps(view, indent=2, sort_keys=True, default=str)


async def replay_run(
    store: Store,
    run_id: str,
    *,
    mode: ReplayMode = "tape",
    workflow: str | Path | None = None,
    ignore: Sequence[str] = VOLATILE_TEXT,
) -> ReplayReport:
    """Replay a stored run and compare the new trace with the recorded one, event by event.

    The replay is recorded as a new run in the same store (its ``run_started`` names ``replay_of``).

    Args:
        store: where the run is (and where the replay is recorded).
        run_id: the run's id or a unique prefix.
        mode: ``tape`` (nothing executes) or ``verify`` (tools run again in a fresh sandbox).
        workflow: the workflow file to replay with; by default the file the run recorded.
        ignore: regular expressions of text that may differ between executions (masked on both sides before
            comparing); by default ``VOLATILE_TEXT``, the test runners' timings. Pass ``()`` to compare exactly.

    Raises:
        TraceError: the run is missing, or its trace fails verification (a tampered trace is never replayed).
        ConfigError: the workflow file is gone or invalid.
    """
    from agentflow.runtime._compile import compile_workflow
    from agentflow.runtime._run import run_workflow

    if mode not in ("tape", "verify"):
        raise ConfigError(f"unknown replay mode {mode!r}", fix="use --mode tape or --mode verify")
    volatile = volatile_pattern(ignore)
    trace = store.load_trace(run_id)
    trace.raise_for_problems()
    tape = Tape(trace, mode, volatile)
    started = tape.run_started
    if not started:
        raise TraceError(f"run {trace.run_id} has no run_started event; there is nothing to replay")
    path = Path(workflow) if workflow is not None else Path(str(started.get("workflow_file", "")))
    if not path.is_file():
        raise ConfigError(
            f"the workflow file of run {trace.run_id} is gone: {path}", fix="pass the file with --workflow FILE"
        )
    compiled = compile_workflow(path)
    recorded_hash = started.get("template_hash")
    current_hash = compiled.loaded.template_hash
    state_keys = compiled.loaded.spec.state
    raw_inputs = started.get("inputs")
    inputs = {k: v for k, v in (raw_inputs if isinstance(raw_inputs, dict) else {}).items() if k in state_keys}
    sandbox_info = started.get("sandbox")
    backend = sandbox_info.get("backend") if isinstance(sandbox_info, dict) else None
    override = started.get("model_override")
    clock = time.perf_counter()
    result = await run_workflow(
        compiled,
        inputs=inputs,
        model=override if isinstance(override, str) else None,
        sandbox=backend if isinstance(backend, str) else None,
        store=store,
        tape=tape,
    )
    replay_wall = time.perf_counter() - clock
    replayed = store.load_trace(result.run_id)
    recorded = without_abandoned(trace.events)
    divergence = first_divergence(recorded, replayed.events, volatile)
    return ReplayReport(
        run_id=trace.run_id,
        replay_run_id=result.run_id,
        mode=mode,
        identical=divergence is None,
        events_expected=len(recorded),
        events_actual=len(replayed.events),
        template_changed=recorded_hash != current_hash,
        recorded_template_hash=recorded_hash if isinstance(recorded_hash, str) else None,
        current_template_hash=current_hash,
        divergence=divergence,
        model_calls_served=tape.model_calls_served,
        tool_results_served=tape.tool_results_served,
        sandbox_execs=_executed(tape, replayed.events),
        original_wall_s=tape.original_duration_s,
        replay_wall_s=round(replay_wall, 6),
        status=result.status,
        problems=[str(problem) for problem in replayed.problems],
        ignored=list(ignore),
    )
