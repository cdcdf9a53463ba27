"""ScriptedModel: script files, order, ids, usage, errors, concurrency."""

from __future__ import annotations

import asyncio
import json
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agentflow.errors import ConfigError, ModelAPIError, ModelScriptExhausted, SpecError
from agentflow.models import Message, ModelSettings, ScriptedModel, ToolCall, Usage, create_model

SETTINGS = ModelSettings()
USER_TURN = [{"role": "user", "content": "Fix the failing test."}]

SCRIPT = """\
responses:
  - content: "Let me look at the tests."
    tool_calls:
      - {name: list_files, arguments: {path: "."}}
      - {name: read_file, arguments: {path: tests/test_calc.py}}
  - tool_calls: [{name: write_file, arguments_raw: '{"path": "x", '}]
  - "Done."
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


async def test_responses_are_served_in_order_with_deterministic_ids(tmp_path: Path) -> None:
    model = ScriptedModel.from_file(write(tmp_path, "fix.script.yaml", SCRIPT))

    first = await model.complete(USER_TURN, [], SETTINGS)
    second = await model.complete(USER_TURN, [], SETTINGS)
    third = await model.complete(USER_TURN, [], SETTINGS)

    assert first.message["content"] == "Let me look at the tests."
    assert first.tool_calls == [
        ToolCall(id="call_1_1", name="list_files", arguments='{"path": "."}'),
        ToolCall(id="call_1_2", name="read_file", arguments='{"path": "tests/test_calc.py"}'),
    ]
    assert first.message["tool_calls"] == [call.to_openai() for call in first.tool_calls]
    assert second.message["content"] is None
    assert [call.id for call in second.tool_calls] == ["call_2_1"]
    assert third.message == {"role": "assistant", "content": "Done."}
    assert third.tool_calls == []
    assert model.remaining == 0


async def test_raw_arguments_reach_the_caller_byte_for_byte(tmp_path: Path) -> None:
    model = ScriptedModel.from_file(write(tmp_path, "s.yaml", SCRIPT))
    await model.complete(USER_TURN, [], SETTINGS)

    response = await model.complete(USER_TURN, [], SETTINGS)

    assert response.tool_calls[0].arguments == '{"path": "x", '
    assert response.message["tool_calls"][0]["function"]["arguments"] == '{"path": "x", '
    assert response.raw is not None
    assert response.raw["choices"][0]["finish_reason"] == "tool_calls"


async def test_exhaustion_names_the_script_and_its_size(tmp_path: Path) -> None:
    path = write(tmp_path, "short.yaml", "responses: [one, two]\n")
    model = ScriptedModel.from_file(path)
    await model.complete(USER_TURN, [], SETTINGS)
    await model.complete(USER_TURN, [], SETTINGS)

    with pytest.raises(ModelScriptExhausted) as caught:
        await model.complete(USER_TURN, [], SETTINGS)

    assert str(path) in str(caught.value)
    assert "holds 2 response(s)" in str(caught.value)
    assert "call #3" in str(caught.value)


async def test_reset_starts_over(tmp_path: Path) -> None:
    model = ScriptedModel.from_file(write(tmp_path, "s.yaml", "responses: [one, two]\n"))
    await model.complete(USER_TURN, [], SETTINGS)

    model.reset()

    assert (await model.complete(USER_TURN, [], SETTINGS)).message["content"] == "one"
    assert len(model.requests) == 1


def test_yaml_syntax_error_points_at_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "broken.yaml",
        """\
        responses:
          - content: "fine"
          - content: "unterminated
        """,
    )

    with pytest.raises(SpecError) as caught:
        ScriptedModel.from_file(path)

    assert caught.value.location is not None
    assert caught.value.location.file == str(path)
    assert caught.value.location.line >= 3
    assert caught.value.fix is not None
    assert "responses" in caught.value.fix


def test_schema_error_points_at_the_offending_entry(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "both.yaml",
        """\
        responses:
          - "ok"
          - tool_calls:
              - name: write_file
                arguments: {path: a}
                arguments_raw: '{"path": "a"}'
        """,
    )

    with pytest.raises(SpecError, match="not both") as caught:
        ScriptedModel.from_file(path)

    assert caught.value.location is not None
    assert (caught.value.location.line, caught.value.location.column) == (4, 9)
    assert "responses.1.tool_calls.0" in str(caught.value)


def test_unknown_key_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "typo.yaml", 'responses:\n  - content: "hi"\n    tool_call: []\n')

    with pytest.raises(SpecError, match="tool_call") as caught:
        ScriptedModel.from_file(path)

    assert caught.value.location is not None
    assert (caught.value.location.line, caught.value.location.column) == (3, 5)  # the key, not its value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "found an empty file"),
        ("- just a list\n", "must be a mapping with a 'responses' or 'conversations' list, found a list"),
        ("responses: []\n", "at least 1"),
        ("responses: [{}]\n", "needs 'content', 'tool_calls' or 'error'"),
        ("responses: [{content: x, error: {message: y}}]\n", "cannot also have"),
    ],
)
def test_malformed_scripts_say_what_is_wrong(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(SpecError, match=expected):
        ScriptedModel.from_file(write(tmp_path, "bad.yaml", text))


async def test_json_scripts_load_and_report_syntax_errors(tmp_path: Path) -> None:
    good = write(
        tmp_path, "s.json", json.dumps({"responses": [{"tool_calls": [{"name": "f", "arguments": {"a": 1}}]}]})
    )
    model = ScriptedModel.from_file(good)
    assert (await model.complete(USER_TURN, [], SETTINGS)).tool_calls[0].arguments == '{"a": 1}'

    bad = write(tmp_path, "bad.json", '{"responses": [\n  "a",\n  ]\n}')
    with pytest.raises(SpecError, match="not valid JSON") as caught:
        ScriptedModel.from_file(bad)
    assert caught.value.location is not None
    assert caught.value.location.line == 3


async def test_scripted_error_is_raised_as_model_api_error() -> None:
    model = ScriptedModel.from_responses([{"error": {"status_code": 503, "message": "overloaded"}}, "recovered"])

    with pytest.raises(ModelAPIError, match="overloaded") as caught:
        await model.complete(USER_TURN, [], SETTINGS)

    assert caught.value.status_code == 503
    assert not isinstance(caught.value, ModelScriptExhausted)
    assert (await model.complete(USER_TURN, [], SETTINGS)).message["content"] == "recovered"


async def test_usage_is_estimated_at_four_characters_per_token() -> None:
    tool = {"type": "function", "function": {"name": "f"}}
    tool_json = '[{"function":{"name":"f"},"type":"function"}]'  # compact, sorted keys: 45 characters
    model = ScriptedModel.from_responses(
        [
            "Hello",
            {"tool_calls": [{"name": "read_file", "arguments_raw": "{}"}]},
            {"content": "x", "usage": {"input_tokens": 100, "output_tokens": 9}},
        ]
    )
    messages = [{"role": "system", "content": "abcd"}, {"role": "user", "content": "efghi"}]  # 9 characters

    text = await model.complete(messages, [], SETTINGS)
    with_tools = await model.complete(messages, [tool], SETTINGS)
    overridden = await model.complete(messages, [tool], SETTINGS)

    assert len(tool_json) == 45
    assert text.usage == Usage(input_tokens=3, output_tokens=2)  # ceil(9/4), ceil(len("Hello")/4)
    assert with_tools.usage == Usage(input_tokens=14, output_tokens=3)  # ceil(54/4), ceil(len("read_file{}")/4)
    assert overridden.usage == Usage(input_tokens=100, output_tokens=9)


async def test_requests_are_recorded_as_copies() -> None:
    model = ScriptedModel.from_responses(["a"])
    messages = [{"role": "user", "content": "original"}]

    await model.complete(messages, [], ModelSettings(temperature=0))
    messages[0]["content"] = "edited later"

    assert model.requests[0].messages == [{"role": "user", "content": "original"}]
    assert model.requests[0].settings.temperature == 0


def test_from_responses_rejects_malformed_entries() -> None:
    with pytest.raises(ConfigError, match=r"response 1: tool_calls\.0\.name: Field required"):
        ScriptedModel.from_responses(["fine", {"tool_calls": [{"arguments": {}}]}])


async def test_concurrent_callers_each_get_a_distinct_response() -> None:
    count = 200
    model = ScriptedModel.from_responses([f"reply {i}" for i in range(count)])

    def call_from_a_thread(_: int) -> str:
        response = asyncio.run(model.complete(USER_TURN, [], SETTINGS))
        return str(response.message["content"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        from_threads = list(pool.map(call_from_a_thread, range(count // 2)))
    from_tasks = await asyncio.gather(*(model.complete(USER_TURN, [], SETTINGS) for _ in range(count // 2)))

    served = from_threads + [str(response.message["content"]) for response in from_tasks]
    assert sorted(served) == sorted(f"reply {i}" for i in range(count))
    assert model.remaining == 0
    assert len(model.requests) == count


async def test_create_model_resolves_scripts_next_to_the_workflow(tmp_path: Path) -> None:
    write(tmp_path, "fix_bug.script.yaml", "responses: [from the script]\n")

    by_stem = create_model("scripted:fix_bug", base_dir=tmp_path)
    by_name = create_model("scripted:fix_bug.script.yaml", base_dir=tmp_path)

    assert isinstance(by_stem, ScriptedModel)
    assert by_stem.model_id == "scripted:fix_bug"
    assert (await by_stem.complete(USER_TURN, [], SETTINGS)).message["content"] == "from the script"
    assert (await by_name.complete(USER_TURN, [], SETTINGS)).model == "fix_bug.script.yaml"


def test_create_model_lists_the_paths_it_tried(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found") as caught:
        create_model("scripted:missing", base_dir=tmp_path)

    assert str(tmp_path / "missing.script.yaml") in str(caught.value)


def test_create_model_loads_the_script_eagerly(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", "responses: [{contents: typo}]\n")

    with pytest.raises(SpecError, match="contents"):
        create_model("scripted:bad.yaml", base_dir=tmp_path)


async def test_a_script_with_conversations_answers_each_first_request_its_own_way(tmp_path: Path) -> None:
    script = tmp_path / "many.script.yaml"
    script.write_text(
        "conversations:\n"
        "  - {when: 'def add(', responses: ['a + b', 'still a + b']}\n"
        "  - {when: 'def sub(', responses: ['a - b']}\n"
        "  - {responses: ['no idea']}\n"
    )
    settings = ModelSettings()

    async def first_answers(prompt: str, turns: int) -> list[str | None]:
        model = ScriptedModel.from_file(script)
        messages: list[Message] = [{"role": "user", "content": prompt}]
        return [(await model.complete(messages, [], settings)).message.get("content") for _ in range(turns)]

    assert await first_answers("Complete: def add(a, b):", 2) == ["a + b", "still a + b"]
    assert await first_answers("Complete: def sub(a, b):", 1) == ["a - b"]
    assert await first_answers("Complete: def mul(a, b):", 1) == ["no idea"]
    with pytest.raises(ModelScriptExhausted):
        await first_answers("Complete: def sub(a, b):", 2)  # its conversation has one response
    no_default = tmp_path / "strict.script.yaml"
    no_default.write_text("conversations:\n  - {when: 'def add(', responses: ['a + b']}\n")
    with pytest.raises(ModelScriptExhausted, match="no conversation"):
        await ScriptedModel.from_file(no_default).complete([{"role": "user", "content": "hi"}], [], settings)
    both = tmp_path / "both.script.yaml"
    both.write_text("responses: [x]\nconversations:\n  - {responses: [y]}\n")
    with pytest.raises(SpecError, match="either 'responses' or 'conversations'"):
        ScriptedModel.from_file(both)


CANDIDATES = """\
responses:
  - "plan"
  - candidates:
      - ["zero"]
      - [{tool_calls: [{name: read_file, arguments: {path: a.py}}]}, "one, after reading"]
  - "after"
"""


async def _answer(model: ScriptedModel) -> str:
    response = await model.complete(USER_TURN, [], SETTINGS)
    return str(response.message.get("content") or response.tool_calls[0].id)


async def test_each_candidate_copy_serves_its_own_list_and_the_model_goes_on_from_the_kept_one(
    tmp_path: Path,
) -> None:
    model = ScriptedModel.from_file(write(tmp_path, "best.script.yaml", CANDIDATES))
    assert await _answer(model) == "plan"
    copies = [model.for_candidate(index) for index in range(3)]  # 3 candidates, 2 lists: the third takes the first

    assert [await _answer(copy) for copy in copies] == ["zero", "call_2.2.1_1", "zero"]
    assert await _answer(copies[1]) == "one, after reading"
    model.continue_from(copies[1])

    assert await _answer(model) == "after"
    assert len(model.requests) == 6  # the copies' calls are recorded on the model they came from


async def test_a_model_serving_no_candidate_takes_the_first_list(tmp_path: Path) -> None:
    model = ScriptedModel.from_file(write(tmp_path, "best.script.yaml", CANDIDATES))

    assert [await _answer(model) for _ in range(3)] == ["plan", "zero", "after"]


async def test_a_kept_candidate_that_stopped_inside_its_list_goes_on_after_the_entry(tmp_path: Path) -> None:
    model = ScriptedModel.from_file(write(tmp_path, "best.script.yaml", CANDIDATES))
    await _answer(model)
    kept = model.for_candidate(1)
    await _answer(kept)  # its visit ended after one of its two turns

    model.continue_from(kept)

    assert await _answer(model) == "after"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("{candidates: [[a], []]}", "at least one response"),
        ("{candidates: [[a]], content: b}", "holds nothing else"),
        ("{candidates: [[{candidates: [[a]]}]]}", "cannot hold 'candidates' again"),
    ],
)
def test_malformed_candidates_are_refused_at_their_line(tmp_path: Path, entry: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        ScriptedModel.from_file(write(tmp_path, "bad.script.yaml", f"responses:\n  - ok\n  - {entry}\n"))
    assert expected in str(caught.value)
    assert caught.value.location is not None and caught.value.location.line == 3
