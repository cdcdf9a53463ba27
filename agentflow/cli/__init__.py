"""The `agentflow` command line.

Exit codes (also in the README):

    0   success (the workflow reached its end; the files are valid; the command exited 0)
    1   the run did not succeed (failed, limit exceeded), validation found errors, or the sandboxed command failed
    2   a usage or configuration error: bad flag, malformed workflow, unknown name, missing extra
    3   an error outside the workflow: a run errored (model API after its retries, sandbox unavailable or dead,
        store), unreadable trace, store problem
    4   an internal error of agentflow (a bug: please report it; AGENTFLOW_DEBUG=1 shows the traceback)
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer
from typer.exceptions import Abort, TyperException

from agentflow.cli._interrupt import Interrupted
from agentflow.errors import AgentflowError, ConfigError

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_RUNTIME, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

app = typer.Typer(
    name="agentflow",
    help="Agentic computation graphs: validate, inspect, run, and look at runs of YAML workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help: typer's rich help prints a `<bool>` type after every flag, and draws boxes that pipes do not need.
    rich_markup_mode=None,
)


def _show_version(value: bool) -> None:
    if value:
        import agentflow

        print(f"agentflow {agentflow.__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", help="print the version and exit", callback=_show_version, is_eager=True),
    ] = False,
) -> None:
    """Agentic computation graphs: validate, inspect, run, and look at runs of YAML workflows."""


def _register() -> None:
    from agentflow.cli import bench, graph, runs, sandbox, tools, view

    app.add_typer(bench.app, name="bench")
    graph.register(app)
    runs.register(app)
    app.add_typer(bench.app, name="bench")
    app.add_typer(sandbox.app, name="sandbox")
    app.add_typer(tools.app, name="tools")
    view.register(app)
    _register_traces()


def _register_traces() -> None:
    from agentflow.cli import fork, grade, qtable, replay, traces

    replay.register(app)
    fork.register(app)
    grade.register(app)
    app.add_typer(traces.app, name="traces")
    app.add_typer(qtable.app, name="qtable")


def _fail(message: str, code: int) -> int:
    line = " ".join(message.split())  # one line, whatever the exception's text held
    print(f"agentflow: error: {line}", file=sys.stderr)
    if "--json" in sys.argv:
        print(json.dumps({"error": line, "exit_code": code}))
    return code


def _help_width() -> dict[str, int]:
    """Help fills a terminal up to 120 columns; to a pipe it is not wrapped, and command summaries are not cut."""
    if sys.stdout.isatty():
        return {"max_content_width": 120}
    return {"max_content_width": 100_000, "terminal_width": 100_000}


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; errors are printed as one line, never a traceback."""
    _register()
    try:
        result = app(args=argv, standalone_mode=False, **_help_width())
    except TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `agentflow` alone, or a group alone: the help was asked for
            print(exc.format_message())
            return EXIT_OK
        return _fail(exc.format_message(), EXIT_CONFIG)
    except Abort:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except Interrupted as exc:
        return _fail(f"interrupted; {exc}", EXIT_INTERRUPTED)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    except AgentflowError as exc:
        return _fail(str(exc), EXIT_RUNTIME)
    except OSError as exc:
        return _fail(f"{type(exc).__name__}: {exc}", EXIT_RUNTIME)
    except Exception as exc:
        if os.environ.get("AGENTFLOW_DEBUG"):
            raise
        return _fail(
            f"internal error {type(exc).__name__}: {exc} (AGENTFLOW_DEBUG=1 shows the traceback)", EXIT_INTERNAL
        )
    if result == EXIT_INTERRUPTED:  # typer turns Ctrl-C into a plain exit code 130
        return _fail("interrupted", EXIT_INTERRUPTED)
    return result if isinstance(result, int) else EXIT_OK


def main() -> None:
    """Console-script entry point."""
    sys.exit(run_cli())
