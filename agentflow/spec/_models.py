"""Pydantic models of a workflow template (the YAML a user writes)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

END = "END"
"""The name of the terminal pseudo-node, usable as an edge or route target."""

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
_identifier = re.compile(IDENTIFIER)

StateType = Literal["str", "int", "float", "bool", "list", "dict", "any"]
Reducer = Literal["append", "extend", "merge", "sum", "max", "min", "last"]
"""How concurrent writes to one state key combine (``reduce:`` on the key; see ``agentflow.runtime._parallel``)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# How a model call is retried by default (`agentflow.models._retry` does the retrying).
DEFAULT_MAX_RETRIES = 6
DEFAULT_MAX_RETRY_S = 120.0


class ModelSettings(BaseModel):
    """Sampling settings of one model config, and how its calls are retried (see ``agentflow.models._retry``)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    timeout_s: float = Field(default=120.0, gt=0, description="wall-clock limit of one attempt of a call")
    max_retries: int = Field(
        default=DEFAULT_MAX_RETRIES,
        ge=0,
        description="retries of a call that failed transiently (429, 408, 409, 5xx, connection or timeout)",
    )
    max_retry_s: float = Field(
        default=DEFAULT_MAX_RETRY_S,
        ge=0,
        description="no retry wait may end later than this many seconds after the call's first attempt",
    )

    def request_data(self) -> dict[str, Any]:
        """The settings as a model request records them (and its hash covers): the retry policy is left out.

        How failures are retried changes no answer, so changing ``max_retries`` or ``max_retry_s`` must not make
        a replay of a recorded run diverge.
        """
        return self.model_dump(exclude_none=True, exclude={"max_retries", "max_retry_s"})


class SandboxLimits(BaseModel):
    """Resource limits of one sandbox; the defaults are the embedded defaults."""

    model_config = ConfigDict(extra="forbid")

    exec_timeout_s: float = Field(default=30.0, gt=0, description="wall-clock limit of one exec")
    cpu_s: int = Field(default=60, gt=0, description="CPU seconds of one exec (RLIMIT_CPU)")
    memory_mb: int = Field(default=1024, gt=0, description="address-space limit of one exec")
    pids: int = Field(default=128, gt=0, description="processes/threads the sandbox user may run")
    file_size_mb: int = Field(default=256, gt=0, description="largest file one exec may write (RLIMIT_FSIZE)")
    output_bytes: int = Field(default=1_000_000, gt=0, description="cap on stdout and on stderr, each")
    read_bytes: int = Field(
        default=10 * 1024 * 1024,
        gt=0,
        description="largest file read_file returns; a larger one raises FileTooLargeError, read no further",
    )
    network: bool = Field(default=False, description="allow network access")


class StateKey(_Strict):
    """One typed key of the run state (the LangGraph state schema)."""

    type: StateType = "any"
    default: Any = None
    description: str | None = None
    reduce: Reducer | None = Field(
        default=None,
        description="how writes of several nodes combine: append (each write one element), extend (each write a "
        "list), merge (dicts), sum, max, min, last; needed when parallel branches write the key",
    )


class ModelConfig(ModelSettings):
    """A named model: ``provider:model`` plus sampling settings."""

    model: str = Field(description="provider:model, e.g. openai:gpt-4o-mini or scripted:fix.script.yaml")


class SandboxSpec(_Strict):
    """Where tool calls run."""

    backend: str = Field(default="local", description="local | docker | e2b")
    image: str | None = Field(default=None, description="image for container backends")
    limits: SandboxLimits = Field(default_factory=SandboxLimits)
    files: dict[str, str] = Field(
        default_factory=lambda: {},
        description="sandbox path -> host directory (relative to the workflow file) copied in before the run",
    )


class ToolRef(_Strict):
    """A tool reference with options: ``{ref: tools/x.py:fn, host: true}``."""

    ref: str = Field(description="a built-in name or a plugin path file.py:function")
    host: bool = Field(
        default=False,
        description="run the plugin function in the agentflow process instead of the run's sandbox "
        "(it then sees the host's files and environment); the trace marks its calls host-executed",
    )


class RetryPolicy(_Strict):
    """Retries of a failing node, with exponential backoff."""

    attempts: int = Field(default=1, ge=1, description="total attempts, 1 = no retry")
    backoff_s: float = Field(default=1.0, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_backoff_s: float = Field(default=30.0, ge=0)


BranchSandbox = Literal["shared", "fork"]
BranchErrors = Literal["fail", "continue"]


class _NodeBase(_Strict):
    description: str | None = None
    timeout_s: float | None = Field(default=None, gt=0, description="wall-clock limit of one visit")
    retry: RetryPolicy | None = None
    parallel: list[str] = Field(
        default_factory=lambda: [],
        description="nodes to run next, concurrently, each as its own branch; a node with `after:` joins them",
    )
    after: list[str] = Field(
        default_factory=lambda: [],
        description="join: this node runs once every listed node (the last node of each parallel branch) finished",
    )
    sandbox: BranchSandbox = Field(
        default="shared",
        description="with `parallel:`: shared (the branches work in the run's sandbox, like threads in one working "
        "copy) or fork (each branch gets its own copy of the workdir, discarded when the branch ends)",
    )
    on_branch_error: BranchErrors = Field(
        default="fail",
        description="with `after:`: a failing branch fails the join (fail) or the join runs anyway and "
        "`failed_branches` lists the branches that failed (continue)",
    )


class BestOfSpec(_Strict):
    """Best-of-N on an agent node: ``n`` candidate visits run concurrently, the ``by`` hook scores each, the best
    is kept (its state updates, and with ``sandbox: fork`` its sandbox); ties go to the lowest index.

    Candidate ``i`` (0-based) samples with ``seed`` = the run's (or the model's) seed + ``i`` (``vary: seed``), or
    with the ``i``-th of ``temperatures`` (``vary: temperature``; default: evenly spaced from the model's
    temperature, or 0, up to 1). The scripted model serves candidate ``i`` its own responses (see its ``candidates``
    entries).
    """

    n: int = Field(ge=2, description="how many candidates")
    by: str = Field(description="the reward hook that scores each candidate: a registered name or file.py:name")
    options: dict[str, Any] = Field(default_factory=lambda: {}, description="options of the `by` hook")
    sandbox: Literal["shared", "fork"] = Field(
        default="shared",
        description="shared: the candidates work in the run's sandbox together (for candidates that only read); "
        "fork: each works in its own copy of the workdir, and the chosen one's copy becomes the run's",
    )
    vary: Literal["seed", "temperature"] = Field(default="seed", description="what differs between candidates")
    temperatures: list[float] | None = Field(
        default=None, description="vary temperature: one temperature per candidate (default: evenly spaced to 1)"
    )
    timeout_s: float = Field(default=60.0, gt=0, description="wall-clock limit of scoring one candidate")

    @model_validator(mode="after")
    def _temperatures(self) -> BestOfSpec:
        if self.temperatures is not None:
            if self.vary != "temperature":
                raise ValueError("`temperatures` needs `vary: temperature`")
            if len(self.temperatures) != self.n:
                raise ValueError(f"`temperatures` lists {len(self.temperatures)} values for n = {self.n} candidates")
            if len(set(self.temperatures)) != len(self.temperatures):
                raise ValueError("`temperatures` repeats a value: candidates would sample alike")
        return self


class AgentNode(_NodeBase):
    """A model with a system prompt and tools, looping model ↔ tools until it answers without tool calls."""

    kind: Literal["agent"]
    model: str = Field(description="a key of `models`")
    prompt: str = Field(description="system prompt; {key} placeholders are filled from state")
    input: str | None = Field(
        default=None, description="the user message; {key} placeholders are filled from state (default: none)"
    )
    tools: list[str] = Field(default_factory=lambda: [])
    max_turns: int = Field(default=10, ge=1, description="model calls in one visit")
    output: dict[str, str] = Field(
        default_factory=lambda: {},
        description="state key -> CEL expression over `answer` (final text), `json` (answer parsed) and `state`",
    )
    best_of: BestOfSpec | None = Field(
        default=None, description="sample n candidate visits concurrently and keep the one the `by` hook scores best"
    )


class ToolNode(_NodeBase):
    """One deterministic tool call with arguments templated from state."""

    kind: Literal["tool"]
    tool: str
    args: dict[str, Any] = Field(default_factory=lambda: {})
    output: dict[str, str] = Field(
        default_factory=lambda: {},
        description="state key -> CEL expression over `result`, `ok`, `error` and `state`",
    )
    fail_on_error: bool = Field(default=False, description="a failed tool call fails the node (else recorded)")


class Route(_Strict):
    """One branch of a router: the first route whose `when` holds is taken; a route without `when` always holds."""

    when: str | None = None
    to: str


class QTableFeature(_Strict):
    """One discretized state feature of a Q-table router: a CEL expression over `state`, cut into bins.

    Without `bins` the value itself is the feature (a bool, a category string); with `bins` a number becomes the
    index of the first bin edge it is below (``bins: [0, 5]`` gives 0 for < 0, 1 for < 5, 2 otherwise).
    """

    name: str = Field(pattern=IDENTIFIER)
    expr: str = Field(description="CEL expression over `state`")
    bins: list[float] | None = Field(default=None, description="ascending bin edges of a numeric feature")


class QTableSettings(_Strict):
    """The learning and routing settings of a `policy: qtable` router; the defaults are PriorDynaFlow's."""

    mode: Literal["greedy", "a_priori"] = Field(
        default="greedy",
        description="greedy: the router picks; a_priori: the agent that just ran is offered the two best Q groups "
        "(+1 random agent with probability epsilon) and names the next agent in its answer",
    )
    learn: bool = Field(default=True, description="update the table after each finished run (episode)")
    lr: float = Field(default=0.1, gt=0, le=1, description="learning rate")
    lr_schedule: Literal["constant", "visits"] = Field(
        default="constant",
        description="constant: every update uses lr (the paper); visits (beyond the paper): the n-th update of a "
        "(state, action) pair uses max(lr, 1/n), so a pair's first values are averages of what it earned instead of "
        "small steps away from its initial value",
    )
    initial_q: float = Field(
        default=0.0,
        description="Q of a (state, action) pair never updated (the paper: 0); an optimistic value above any "
        "return makes the table try every action before it settles (beyond the paper)",
    )
    replay_episodes: int = Field(
        default=0,
        ge=0,
        description="after each episode's update, learn again from this many earlier episodes of the same table "
        "version, drawn from the store without replacement (experience replay, beyond the paper; 0: none). Replayed "
        "updates use lr and do not count as visits",
    )
    replay_window: int = Field(
        default=500, ge=1, description="replay draws from the last replay_window episodes learned before this one"
    )
    update_order: Literal["forward", "backward"] = Field(
        default="forward",
        description="order of an episode's updates: forward, first transition first (the paper); backward, from END "
        "back, so one episode carries the terminal reward to its first decision (beyond the paper)",
    )
    gamma: float = Field(default=0.9, ge=0, le=1, description="discount factor")
    entropy_weight: float = Field(default=0.01, ge=0, description="beta of the entropy bonus H(softmax Q(s,.))")
    terminal_multiplier: float = Field(default=1.5, gt=0, description="factor of a positive terminal reward")
    epsilon: float = Field(default=0.3, ge=0, le=1, description="exploration rate of the first episode")
    epsilon_decay: float = Field(default=0.995, gt=0, le=1, description="factor of epsilon per episode")
    epsilon_min: float = Field(default=0.1, ge=0, le=1, description="floor of epsilon")
    cold_start_decisions: int = Field(default=50, ge=0, description="decisions that offer every agent")
    exploration: Literal["epsilon", "ucb"] = Field(
        default="epsilon",
        description="epsilon: a random action with probability epsilon (the paper); ucb (mode greedy, beyond the "
        "paper): no random action, the best Q(s,a) + ucb_weight * sqrt(ln(1 + N(s)) / (1 + n(s,a))), n the pair's "
        "updates and N(s) the state's",
    )
    ucb_weight: float = Field(default=20.0, ge=0, description="weight of the ucb exploration bonus")
    salary: dict[str, float] = Field(
        default_factory=lambda: {}, description="agent -> declared cost of one visit (default: default_salary)"
    )
    default_salary: float = Field(default=5.0, ge=0)
    price_per_1k_tokens: float | None = Field(
        default=None, ge=0, description="cost from the visit's real tokens instead of a salary not declared"
    )
    success: list[str] = Field(
        default_factory=lambda: [],
        description="reward hooks whose node rewards are a visit's success signal (mean of their values)",
    )
    salary_weight: float = Field(default=2.0, description="reward per transition: -salary_weight * salary")
    success_weight: float = Field(default=5.0, description="... + success_weight * success")
    bounce_penalty: float = Field(default=10.0, description="going straight back to the agent before")
    repeat_penalty: float = Field(default=10.0, description="visiting an agent again in one episode")
    end_reward: float = Field(default=100.0, description="reaching END earns end_reward - ...")
    end_when: str | None = Field(
        default=None,
        description="CEL condition over `state`: END earns its reward only when it holds (beyond the paper, whose "
        "END bonus does not depend on the task being solved); default: always",
    )
    min_path_length: int = Field(default=5, ge=0, description="... path_penalty * max(0, min_path_length - len)")
    path_penalty: float = Field(default=10.0)
    early_stop_below: float = Field(default=-50.0, description="stop an episode whose cumulative reward is below")
    learn_stopped: bool = Field(
        default=False,
        description="learn from an episode stopped early too, its last transition terminal without END's reward "
        "(beyond the paper, whose stopped episodes teach nothing)",
    )
    max_retries: int = Field(default=3, ge=0, description="restarts of an episode stopped early, from `start`")
    prune_below: float = Field(default=-50.0, description="actions with Q <= this are no longer offered")
    features: list[QTableFeature] = Field(
        default_factory=lambda: [], description="state features beside the agent that just ran"
    )


class RouterNode(_NodeBase):
    """Picks the next node: from its `routes` (`policy: expr`) or from a learned Q-table over `candidates`."""

    kind: Literal["router"]
    policy: Literal["expr", "qtable"] = "expr"
    routes: list[Route] = Field(default_factory=lambda: [])
    candidates: list[str] = Field(
        default_factory=lambda: [], description="policy qtable: the agent nodes (and END) it may route to"
    )
    qtable: QTableSettings = Field(default_factory=QTableSettings)

    @model_validator(mode="after")
    def _targets(self) -> RouterNode:
        if self.policy == "expr" and not self.routes:
            raise ValueError("a router with policy expr needs at least one entry in `routes`")
        if self.policy == "qtable":
            if self.routes:
                raise ValueError("a router with policy qtable routes by its table: list targets in `candidates`")
            if not self.candidates:
                raise ValueError("a router with policy qtable needs `candidates` (agent nodes and END)")
        return self


class SubgraphNode(_NodeBase):
    """Runs another workflow file as one node."""

    kind: Literal["subgraph"]
    workflow: str = Field(description="path of the child workflow, relative to this file")
    inputs: dict[str, str] = Field(
        default_factory=lambda: {}, description="child state key -> CEL expression over the parent `state`"
    )
    outputs: dict[str, str] = Field(
        default_factory=lambda: {}, description="parent state key -> CEL expression over the child's final `state`"
    )


class MapNode(_NodeBase):
    """Runs another node once per item of a list, each item as its own branch, and collects the results in order.

    The item node sees ``item`` and ``index`` beside the state (``{item}`` in templates, ``state.item`` in CEL).
    Its result for one item is the value of its single `output` entry (a dict of them when it has several); the
    list of results, in item order, is written to the state key `output`.
    """

    kind: Literal["map"]
    over: str = Field(description="CEL expression over `state` giving the list of items")
    node: str = Field(description="the agent, tool or subgraph node run for each item (reached only through here)")
    output: str = Field(description="state key (a list) the results are written to, in item order")
    max_concurrency: int = Field(default=4, ge=1, description="items that run at the same time")
    on_branch_error: BranchErrors = Field(
        default="fail",
        description="a failing item fails the map (fail), or its result is null and the run goes on (continue)",
    )


NodeSpec = Annotated[AgentNode | ToolNode | RouterNode | SubgraphNode | MapNode, Field(discriminator="kind")]


class EdgeSpec(_Strict):
    """A transition; several edges from one node are tried in order, the first whose `when` holds is taken."""

    from_: str = Field(alias="from")
    to: str
    when: str | None = None


class LoopSpec(_Strict):
    """A bound on a cycle: no node of `nodes` runs more than `max_iterations` times in one run."""

    nodes: list[str] = Field(min_length=1)
    max_iterations: int = Field(ge=1)


class RewardSpec(_Strict):
    """A reward hook attached to some nodes, or to the whole run when `nodes` is empty."""

    hook: str
    on: Literal["step", "node", "run"] = "node"
    nodes: list[str] = Field(default_factory=lambda: [])
    options: dict[str, Any] = Field(default_factory=lambda: {})
    weight: float = 1.0
    timeout_s: float = Field(default=60.0, gt=0)
    aggregate: list[Literal["mean", "min", "first_error", "discounted", "grounded", "hybrid", "prof"]] = Field(
        default_factory=lambda: [],
        description="run-level aggregates of this hook's step rewards, recorded at the end of the run "
        "(grounded, hybrid and prof also need `outcome`)",
    )
    discount: float = Field(default=0.9, gt=0, le=1, description="gamma of the `discounted` aggregate")
    outcome: str | None = Field(
        default=None, description="a hook declared with `on: run` whose reward is the run's outcome (>= 0.5 = success)"
    )
    prof_baseline: float = Field(default=0.5, ge=0, le=1, description="v-bar of the `prof` consistency in one run")


class LimitsSpec(_Strict):
    """Run-wide limits; reaching one stops the run with LimitExceeded recorded in the trace."""

    max_steps: int | None = Field(default=None, ge=1, description="node executions in one run")
    max_model_calls: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1, description="input + output tokens over the run")
    timeout_s: float | None = Field(default=None, gt=0, description="wall-clock limit of the run")
    node_timeout_s: float | None = Field(default=None, gt=0, description="default wall-clock limit of one visit")


class WorkflowSpec(_Strict):
    """A workflow template."""

    name: str
    version: int | str = 1
    description: str | None = None
    state: dict[str, StateKey] = Field(default_factory=lambda: {})
    inputs: dict[str, Any] = Field(default_factory=lambda: {}, description="default input values of a run")
    models: dict[str, ModelConfig] = Field(default_factory=lambda: {})
    sandbox: SandboxSpec = Field(default_factory=SandboxSpec)
    tools: list[str | ToolRef] = Field(
        default_factory=lambda: [],
        description="built-in names and plugin paths file.py:func (plugin functions run in the sandbox; "
        "write {ref: file.py:func, host: true} for one that must run on the host)",
    )
    start: str
    nodes: dict[str, NodeSpec] = Field(min_length=1)
    edges: list[EdgeSpec] = Field(default_factory=lambda: [])
    end: list[str] = Field(default_factory=lambda: [], description="nodes with an edge to END")
    loops: list[LoopSpec] = Field(default_factory=lambda: [])
    rewards: list[RewardSpec] = Field(default_factory=lambda: [])
    limits: LimitsSpec = Field(default_factory=LimitsSpec)

    @field_validator("nodes", "state")
    @classmethod
    def _identifiers(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not _identifier.match(key) or key == END:
                raise ValueError(f"{key!r} is not a valid name: use letters, digits and _ (and not {END})")
        return value

    def tool_refs(self) -> list[ToolRef]:
        """Every entry of `tools` as a `ToolRef` (a plain string is a reference without options)."""
        return [ToolRef(ref=entry) if isinstance(entry, str) else entry for entry in self.tools]

    def tool_name(self, ref: str | ToolRef) -> str:
        """The name a model sees for a tool reference (``tools/x.py:fn`` -> ``fn``)."""
        text = ref if isinstance(ref, str) else ref.ref
        return text.rsplit(":", 1)[1] if ":" in text else text
