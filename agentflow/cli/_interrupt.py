"""How a command that Ctrl-C stopped says what the user can do next, in the CLI's one error line."""

from __future__ import annotations


class Interrupted(Exception):
    """Raised by a command stopped by Ctrl-C after it cleaned up; its message says how to continue."""
