"""LLM judges over any configured model: a process reward model with ternary labels, and TICK checklists.

Labels follow AgentProcessBench: +1 the step is correct and advances the task; 0 exploratory or neutral (reasonable
but not clearly advancing); −1 wrong, fabricated (claims a result no tool gave), redundant (repeats work already
done) or violating an instruction — and a step that builds on an earlier error is −1 too (error propagation).
Both hooks work from the events alone, so they score in the background (``blocking = False``) and offline.
An answer the judge gives that cannot be parsed scores 0 with an explanation saying so; it is recorded, not raised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from agentflow.errors import ConfigError
from agentflow.models._base import Model, ModelSettings
from agentflow.rewards._base import Reward, RewardHook, StepContext, reward_hook
from agentflow.traces._events import Event, EventType
from agentflow.traces._payloads import ModelResponseData, ToolCallData, ToolResultData

LABEL_DEFINITIONS = """Labels:
+1: the step is correct and advances the task.
0: the step is exploratory or neutral: reasonable, but it does not clearly advance the task.
-1: the step is wrong, fabricated (it claims a result no tool gave), redundant (it repeats work already done) or
violates an instruction. A step that builds on an earlier wrong step is also -1 (errors propagate)."""

_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def render_step(events: Sequence[Event], limit: int = 6000) -> str:
    """The step as the judge reads it: tool calls with their results, and model answers."""
    lines: list[str] = []
    for event in events:
        if event.type is EventType.TOOL_CALL:
            call = event.data_as(ToolCallData)
            lines.append(f"TOOL CALL {call.get('tool')}({call.get('arguments')})")
        elif event.type is EventType.TOOL_RESULT:
            result = event.data_as(ToolResultData)
            text = result.get("content") if result.get("ok") else f"ERROR {result.get('error')}"
            lines.append(f"TOOL RESULT {result.get('tool')}: {str(text)[:1500]}")
        elif event.type is EventType.MODEL_RESPONSE:
            content = (event.data_as(ModelResponseData).get("message") or {}).get("content")
            if content:
                lines.append(f"ASSISTANT: {content}")
    return "\n".join(lines)[-limit:]


def parse_json_answer(text: str) -> dict[str, Any] | None:
    """The first JSON object in a model's answer (fenced or not), or None."""
    match = _JSON_OBJECT.search(text)
    if match is None:
        return None
    try:
        value = json.loads(match.group(0))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class _ModelHook(RewardHook):
    """A hook that asks a model: ``options.model`` is ``provider:model`` or the name of one of the workflow's models."""

    blocking = False
    uses_sandbox = False

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if "model" not in options:
            raise ConfigError(f"{self.name} needs options.model (provider:model or a name under `models`)")
        self._model: Model | None = None

    def model(self) -> Model:
        if self._model is None:
            from agentflow.models import create_model

            name = str(self.options["model"])
            self._model = create_model(self.models.get(name, name), base_dir=self.base_dir)
        return self._model

    async def finish_run(self, run_id: str) -> None:
        """Close the judge's connection (a new one opens on the next use)."""
        model, self._model = self._model, None
        if model is not None:
            await model.close()

    async def ask(self, system: str, user: str) -> str:
        settings = ModelSettings(temperature=float(self.options.get("temperature", 0.0)))
        response = await self.model().complete(
            [{"role": "system", "content": system}, {"role": "user", "content": user}], [], settings
        )
        return str(response.message.get("content") or "")

    def task(self, step: StepContext) -> str:
        key = str(self.options.get("task_key", "task"))
        return str(step.state.get(key, "")) or "(no task in the state)"


@reward_hook("llm_judge")
class LlmJudgeHook(_ModelHook):
    """A process reward model: the judge labels the step +1 / 0 / −1 (value = label) with a rubric.

    The judge also reads the steps before this one (the most recent ``history_chars`` characters of them, default
    4000; 0 leaves them out), which it needs to label a redundant step or one that builds on an earlier error.

    Options: ``model`` (required), ``rubric`` (extra criteria), ``task_key`` (state key of the instruction, default
    ``task``), ``history_chars`` (4000), ``temperature`` (0).
    """

    async def score(self, step: StepContext) -> Reward | None:
        shown = render_step(step.events)
        if not shown:
            return None
        system = (
            "You judge one step of an AI agent's work on a task. "
            + LABEL_DEFINITIONS
            + ("\nRubric:\n" + str(self.options["rubric"]) if self.options.get("rubric") else "")
            + "\nJudge only the step under 'Step:'; the earlier steps are there for context."
            + '\nAnswer with JSON only: {"label": -1 | 0 | 1, "explanation": "one sentence"}'
        )
        history_chars = int(self.options.get("history_chars", 4000))
        earlier = render_step(step.history, limit=history_chars) if history_chars > 0 else ""
        context = f"Earlier steps:\n{earlier}\n\n" if earlier else ""
        raw = await self.ask(system, f"Task:\n{self.task(step)}\n\n{context}Step:\n{shown}")
        answer = parse_json_answer(raw)
        label = answer.get("label") if answer else None
        if isinstance(label, str) and label.strip().lstrip("+").lstrip("-").isdigit():
            label = int(label.strip())
        if label not in (-1, 0, 1) or isinstance(label, bool):
            return Reward(
                value=0.0,
                label=None,
                explanation=f"unparsable judge output (scored 0): {raw[:300]!r}",
                components={"parsed": False, "raw": raw[:1000]},
            )
        assert answer is not None
        return Reward(
            value=float(label),
            label=int(label),
            explanation=str(answer.get("explanation", ""))[:500],
            components={"parsed": True},
        )


@reward_hook("checklist")
class ChecklistHook(_ModelHook):
    """TICK: the model writes yes/no questions from the instruction, then answers each for the step or run.

    Score = share of "yes". The questions are generated once per instruction and reused (``options.questions``
    gives them instead). Options: ``model`` (required), ``questions``, ``max_questions`` (6), ``task_key``.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._questions: dict[str, list[str]] = {}

    async def questions(self, task: str) -> list[str]:
        given = self.options.get("questions")
        if given:
            return [str(q) for q in given]
        if task not in self._questions:
            limit = int(self.options.get("max_questions", 6))
            raw = await self.ask(
                "Write a checklist of yes/no questions that together decide whether a response follows the "
                f'instruction fully. At most {limit}. Answer with JSON only: {{"questions": ["...", ...]}}',
                f"Instruction:\n{task}",
            )
            answer = parse_json_answer(raw) or {}
            found = answer.get("questions")
            self._questions[task] = [str(q) for q in found][:limit] if isinstance(found, list) else []
        return self._questions[task]

    async def score(self, step: StepContext) -> Reward | None:
        shown = render_step(step.events)
        if not shown:
            return None
        task = self.task(step)
        questions = await self.questions(task)
        if not questions:
            return Reward(value=0.0, explanation="unparsable checklist (scored 0): no questions", components={})
        numbered = "\n".join(f"{i + 1}. {q}" for i, q in enumerate(questions))
        raw = await self.ask(
            'Answer each checklist question about the response with yes or no. JSON only: {"answers": ["yes", ...]}',
            f"Instruction:\n{task}\n\nResponse:\n{shown}\n\nChecklist:\n{numbered}",
        )
        answer = parse_json_answer(raw) or {}
        answers = answer.get("answers")
        if not isinstance(answers, list) or len(answers) != len(questions):
            return Reward(
                value=0.0,
                explanation=f"unparsable checklist answers (scored 0): {raw[:300]!r}",
                components={"parsed": False, "questions": questions},
            )
        yes = [str(a).strip().lower().startswith("y") for a in answers]
        return Reward(
            value=sum(yes) / len(yes),
            explanation=f"{sum(yes)}/{len(yes)} checklist items met",
            components={"parsed": True, "questions": questions, "answers": yes},
        )
