"""Consoles for the CLI's output: a terminal gets rich's layout, a pipe or file gets whole lines.

Rich wraps text and shrinks tables to the terminal's width, and without a terminal it assumes 80 columns: an error
would be broken over lines (no longer one line for grep or an editor) and tables cut. So when the stream is not a
terminal, nothing is wrapped and tables take the width their content needs.
"""

from __future__ import annotations

import sys

from rich.console import Console

# Wide enough that no table of ours is ever narrowed; rich only pads a table to its content, never to this width.
_UNLIMITED_WIDTH = 1_000_000


def is_terminal(*, stderr: bool = False) -> bool:
    """Whether stdout (or stderr) is an interactive terminal."""
    stream = sys.stderr if stderr else sys.stdout
    return stream.isatty()


def console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr) that wraps and cuts nothing unless it writes to a terminal."""
    if is_terminal(stderr=stderr):
        return Console(highlight=False, stderr=stderr)
    return Console(highlight=False, stderr=stderr, width=_UNLIMITED_WIDTH, soft_wrap=True)
