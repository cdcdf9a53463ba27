"""Write scripted.script.json: the scripted model's answer to every HumanEval task, for offline benchmark runs.

Each task gets a conversation chosen by its prompt: write solution.py, import it with the python tool, reply DONE.
Three tasks in four get the canonical solution; every fourth (by position in the data file) gets a function that
returns None, which its tests reject, so pass@k says something. Deterministic: the same data gives the same file.

    python graphs/bench/humaneval/make_script.py [HumanEval.jsonl.gz]
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[3] / "shared" / "data" / "humaneval" / "HumanEval.jsonl.gz"


def conversation(index: int, task: dict[str, str]) -> dict[str, object]:
    solved = index % 4 != 3
    body = task["canonical_solution"] if solved else "    return None\n"
    return {
        "when": task["prompt"],
        "responses": [
            {
                "tool_calls": [
                    {"name": "write_file", "arguments": {"path": "solution.py", "content": task["prompt"] + body}}
                ]
            },
            {
                "tool_calls": [
                    {"name": "python", "arguments": {"code": "import solution\nprint('solution.py imports')"}}
                ]
            },
            {"content": "DONE"},
        ],
    }


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA
    with gzip.open(data, "rt", encoding="utf-8") as lines:
        tasks = [json.loads(line) for line in lines if line.strip()]
    script = {"conversations": [conversation(index, task) for index, task in enumerate(tasks)]}
    target = HERE / "scripted.script.json"
    target.write_text(json.dumps(script, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{target}: {len(tasks)} conversations")


if __name__ == "__main__":
    main()
