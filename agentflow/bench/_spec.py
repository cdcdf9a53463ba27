"""Benchmark files (``graphs/bench/NAME.yaml``): which workflow runs on which tasks, how often, and how it is scored.

A benchmark (inspect_ai's Task) has tasks (its Samples), each run ``epochs`` times; the outcome hook scores each
run, and the scores reduce to pass@k::

    name: humaneval_agent
    workflow: ../examples/humaneval_agent.yaml     # relative to this file
    tasks: {source: humaneval, path: HumanEval.jsonl.gz}
    inputs: {task: "{prompt}", entry_point: "{entry_point}"}   # workflow state key <- task fields
    outcome: {hook: tests_passed}                  # any hook that scores a whole run (`on: run`)
    epochs: 3
    seed: 1234
    concurrency: 8
    model: scripted:humaneval.script.yaml          # optional: instead of the workflow's models
    sandbox: {backend: docker}                     # optional: instead of the workflow's backend
    limits: {max_model_calls: 20, timeout_s: 300}  # optional: over the workflow's limits
    checkpoints: checkpoints.yaml                  # optional: the same checkpoints for every task
    prices:
      openai:gpt-4o-mini: {input_per_mtok: 0.15, output_per_mtok: 0.60}

Mistakes are reported like a workflow's: file:line:col and a fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentflow._plugins import is_plugin_ref
from agentflow.errors import ConfigError, SpecError
from agentflow.spec import LimitsSpec, LoadedDocument, load_document


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskSourceSpec(_Strict):
    """Where the tasks come from."""

    source: Literal["jsonl", "humaneval", "harbor"] = Field(
        default="jsonl",
        description="jsonl: one JSON object per line; humaneval: HumanEval's .jsonl(.gz); harbor: a folder of "
        "Harbor task directories (task.toml, instruction.md, environment/Dockerfile, tests/test.sh)",
    )
    path: str = Field(description="the task file (harbor: the folder of task directories), relative to the benchmark")
    id_field: str | None = Field(default=None, description="the field holding each task's id (jsonl: `id`)")


class OutcomeSpec(_Strict):
    """The hook that scores a whole run: its value is the run's outcome (>= 0.5 counts as solved)."""

    hook: str = Field(description="a reward hook name or a plugin path file.py:function, scoring `on: run`")
    options: dict[str, Any] = Field(default_factory=lambda: {})
    timeout_s: float = Field(default=60.0, gt=0)


class BenchSandbox(_Strict):
    """Overrides of the workflow's sandbox for every run of the benchmark."""

    backend: str | None = Field(default=None, description="local | docker | e2b (default: the workflow's)")
    image: str | None = None


class Price(_Strict):
    """What a model's tokens cost, in dollars per million tokens."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class BenchSpec(_Strict):
    """A benchmark: a workflow run over a task set, ``epochs`` samples per task, scored by an outcome hook."""

    name: str
    description: str | None = None
    workflow: str = Field(description="the workflow file, relative to the benchmark file")
    tasks: TaskSourceSpec
    inputs: dict[str, Any] = Field(
        default_factory=lambda: {},
        description="workflow input <- a task field as a `{field}` placeholder (exactly one passes the value itself)",
    )
    outcome: OutcomeSpec
    checkpoints: str | None = Field(default=None, description="a checkpoints file graded on every task's runs")
    epochs: int = Field(default=1, ge=1, le=1000, description="samples per task")
    seed: int = Field(default=0, description="each (task, epoch) gets a seed derived from it, passed to the model")
    concurrency: int = Field(default=4, ge=1, le=1024, description="runs at once")
    retry_errored: int = Field(default=2, ge=0, description="new attempts for a run that errored (an outage)")
    model: str | None = Field(default=None, description="a provider:model string for every model of the workflow")
    sandbox: BenchSandbox = Field(default_factory=BenchSandbox)
    limits: LimitsSpec | None = Field(default=None, description="limits over the workflow's (each one given wins)")
    prices: dict[str, Price] = Field(default_factory=lambda: {}, description="provider:model -> price")


@dataclass
class LoadedBench:
    """A validated benchmark file and where it is (relative paths start from its folder)."""

    document: LoadedDocument[BenchSpec]

    @property
    def spec(self) -> BenchSpec:
        return self.document.model

    @property
    def path(self) -> Path:
        return self.document.path

    def resolve(self, relative: str) -> Path:
        """A path written in the benchmark file, resolved against its folder."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.path.parent / path

    @property
    def outcome_hook(self) -> str:
        """The outcome hook as the workflow it is added to must name it (a path made absolute: the workflow's folder
        is not the benchmark file's)."""
        return _hook_path(self.spec.outcome.hook, self.path.parent)

    def check_outcome(self) -> None:
        """Build the outcome hook once, so an unknown name or a bad option is this file's mistake, said here.

        Raises:
            SpecError: the hook does not exist or rejects its options (at the file's ``outcome`` line).
        """
        from agentflow.rewards import HookContext, create_reward_hook

        try:
            create_reward_hook(self.outcome_hook, self.spec.outcome.options, HookContext(base_dir=self.path.parent))
        except ConfigError as exc:
            raise SpecError(f"outcome: {exc}", location=self.document.locate("outcome", "hook"), fix=exc.fix) from None

    def check_files(self, *, check_tasks: bool = True) -> None:
        """Fail with the file's position when a file the benchmark names is missing.

        Raises:
            SpecError: the workflow, the task file or the checkpoints file does not exist.
        """
        named: list[tuple[tuple[str, ...], str]] = [(("workflow",), self.spec.workflow)]
        if check_tasks:
            named.append((("tasks", "path"), self.spec.tasks.path))
        if self.spec.checkpoints is not None:
            named.append((("checkpoints",), self.spec.checkpoints))
        for key, relative in named:
            if not self.resolve(relative).exists():
                raise SpecError(
                    f"{'.'.join(key)}: {relative} does not exist (looked in {self.resolve(relative).parent})",
                    location=self.document.locate(*key),
                    fix="paths in a benchmark file are relative to the file's folder",
                )


def _hook_path(hook: str, folder: Path) -> str:
    """A hook named by path (``hooks/mine.py:score``) made absolute against the benchmark file's folder; a registered
    name as it is."""
    if not is_plugin_ref(hook):
        return hook
    file, _, name = hook.rpartition(":")
    return f"{(folder / file).resolve()}:{name}" if file.endswith(".py") and not Path(file).is_absolute() else hook


def load_bench(path: str | Path, *, check_tasks: bool = True) -> LoadedBench:
    """Read and validate a benchmark file (``check_tasks`` False: its task file is given elsewhere).

    Raises:
        SpecError: the file is missing, is not YAML, does not match the schema, or names a missing file; the
            message has its file:line:col and a fix.
    """
    loaded = LoadedBench(
        load_document(
            path,
            BenchSpec,
            kind="benchmark",
            shape="a YAML mapping with at least name, workflow, tasks and outcome",
            shape_fix="see graphs/bench/ for complete benchmarks",
        )
    )
    loaded.check_files(check_tasks=check_tasks)
    loaded.check_outcome()
    return loaded
