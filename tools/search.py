"""Tool plugins of the shipped example workflows, loaded by path from YAML (`../../tools/search.py:search_code`).

A plugin is a typed Python function: its signature becomes the JSON Schema the model sees, its docstring the
description (parameters from the ``Args:`` section). It runs inside the run's sandbox, with the workdir as its
current directory, so it reads the workspace's files directly; the sandbox's ``python3`` runs it, so it imports
only the standard library.
"""

from __future__ import annotations

import os
import re


def search_code(pattern: str, path: str = ".", max_matches: int = 50) -> str:
    """Search the text files under a folder for a regular expression; one `file:line: text` line per match.

    Args:
        pattern: a Python regular expression, e.g. 'def median'
        path: folder to search, relative to the workdir
        max_matches: stop after this many matches (1 to 500)
    """
    if not 1 <= max_matches <= 500:
        raise ValueError(f"max_matches must be between 1 and 500, got {max_matches}")
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} does not exist in the workdir")
    matches: list[str] = []
    for name in _text_files(path):
        try:
            with open(name, encoding="utf-8") as handle:
                text = handle.read()
        except UnicodeDecodeError:
            continue  # binary files hold no code to search
        for number, line in enumerate(text.splitlines(), start=1):
            if regex.search(line):
                matches.append(f"{name}:{number}: {line.strip()}")
                if len(matches) >= max_matches:
                    return "\n".join([*matches, f"(stopped at {max_matches} matches)"])
    return "\n".join(matches) or f"no match for {pattern!r} under {path}"


def _text_files(path: str) -> list[str]:
    """The regular files under ``path`` (symlinks neither followed nor listed), relative to the workdir, sorted."""
    if os.path.isfile(path):
        return [os.path.normpath(path)]
    found = []
    for directory, _, files in os.walk(path):
        for name in files:
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate) and not os.path.islink(candidate):
                found.append(os.path.relpath(candidate))
    return sorted(found)
