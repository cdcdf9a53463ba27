"""`agentflow sandbox exec|check|build|cleanup`: run a command in a fresh sandbox, run the conformance suite against a
backend, build the Docker sandbox image with no registry, remove what sandboxes of a backend left behind."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from agentflow.cli._console import console

app = typer.Typer(help="Sandboxes: run a command in one, check a backend.", no_args_is_help=True)


@app.command("exec", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True})
def exec_command(
    cmd: Annotated[list[str], typer.Argument(help="the command and its arguments, after --", show_default=False)],
    backend: Annotated[str, typer.Option("--backend", help="local, docker or e2b")] = "local",
    timeout: Annotated[float | None, typer.Option("--timeout", help="wall-clock limit in seconds")] = None,
    image: Annotated[str | None, typer.Option("--image", help="image of the docker backend")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> int:
    """Run CMD in a fresh sandbox with the default limits; exit 0 when it exited 0, else 1."""
    from agentflow.sandboxes import exec_once

    result, isolation = asyncio.run(exec_once(cmd, backend=backend, timeout=timeout, image=image))
    if json_output:
        print(json.dumps({**result.to_dict(), "isolation": isolation.to_dict()}, indent=2))
    else:
        out = console()
        if result.stdout:
            out.out(result.stdout, end="" if result.stdout.endswith("\n") else "\n", highlight=False)
        if result.stderr:
            console(stderr=True).out(result.stderr, end="", highlight=False)
        flags = [name for name in ("timed_out", "truncated") if getattr(result, name)]
        out.print(
            f"exit_code {result.exit_code}  {' '.join(flags)}  {result.duration_s * 1000:.1f} ms  "
            f"[{isolation.backend}: network isolated {isolation.network_isolated}, "
            f"filesystem isolated {isolation.filesystem_isolated}]",
            style="dim",
            markup=False,
        )
    return 0 if result.exit_code == 0 and not result.timed_out else 1


@app.command("build")
def build_command(
    recipe: Annotated[str, typer.Argument(help="the image recipe: python")] = "python",
    tag: Annotated[str | None, typer.Option("--tag", help="image tag (default: agentflow/<recipe>:latest)")] = None,
    mirror: Annotated[str | None, typer.Option("--mirror", help="Debian mirror (default: this machine's apt)")] = None,
    suite: Annotated[str | None, typer.Option("--suite", help="Debian release (default: this machine's)")] = None,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="skip when the image exists and is of the recipe's current revision")
    ] = False,
) -> int:
    """Build a sandbox image with no image registry (debootstrap + docker import; needs root and debootstrap)."""
    from agentflow.errors import ConfigError, SandboxUnavailableError
    from agentflow.sandboxes import images

    if recipe not in images.RECIPES:
        raise ConfigError(f"unknown image recipe {recipe!r}", fix=f"choices: {', '.join(sorted(images.RECIPES))}")
    target = tag or str(images.RECIPES[recipe]["tag"])
    if if_missing and images.image_is_current(recipe, target):
        print(f"{target} already exists")
        return 0
    try:
        images.build_image(recipe, tag=target, mirror=mirror, suite=suite)
    except images.BuildError as exc:
        raise SandboxUnavailableError(f"could not build {target}: {exc}") from exc
    print(target)
    return 0


@app.command("cleanup")
def cleanup_command(
    backend: Annotated[
        str, typer.Option("--backend", help="whose leftovers: docker (containers), local (workdirs), e2b or a plugin's")
    ] = "docker",
    everything: Annotated[
        bool, typer.Option("--all", help="also remove the containers of agentflow processes still running")
    ] = False,
    harbor_images: Annotated[
        bool,
        typer.Option(
            "--harbor-images",
            help="docker: remove every image built for a Harbor task (by default only all but each task's newest)",
        ),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> int:
    """Remove what sandboxes left behind when their agentflow process died: Docker containers (their volumes, and the
    snapshot images their forks started from) by default, the local sandbox's workdirs with --backend local. On
    docker it also removes the images built for Harbor tasks (agentflow-harbor/<task>:<hash>) older than each task's
    newest."""
    from agentflow.sandboxes import sandbox_backends

    chosen = sandbox_backends.get(backend)  # an unknown name fails with the choices
    removed = chosen.cleanup(everything=everything)
    images: list[str] = []
    if backend == "docker":
        from agentflow.bench import HARBOR_IMAGE_REPOSITORY
        from agentflow.sandboxes import cleanup_task_images

        images = cleanup_task_images(HARBOR_IMAGE_REPOSITORY, keep=0 if harbor_images else 1)
    if json_output:
        print(json.dumps({"removed": removed, **({"images": images} if backend == "docker" else {})}))
    else:
        print(
            f"removed {len(removed)} sandbox {chosen.leftover_kind}{'s' if len(removed) != 1 else ''}"
            + "".join(f"\n  {name}" for name in removed)
        )
        if backend == "docker":
            print(
                f"removed {len(images)} task image{'s' if len(images) != 1 else ''}"
                + "".join(f"\n  {tag}" for tag in images)
            )
    return 0


@app.command("check")
def check_command(
    backend: Annotated[str, typer.Argument(help="the backend to check: local, docker, e2b or a plugin's")],
    only: Annotated[list[str] | None, typer.Option("--only", help="run just this check (repeatable)")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> int:
    """Run the sandbox conformance suite against BACKEND; exit 0 when nothing failed beyond its known failures."""
    from agentflow.errors import ConfigError
    from agentflow.sandboxes import create_sandbox, sandbox_backends
    from agentflow.sandboxes.conformance import CHECKS, ConformanceReport, run_conformance

    sandbox_backends.get(backend)  # an unknown name fails here with the choices, before anything starts
    unknown = sorted(set(only or ()) - set(CHECKS))
    if unknown:
        raise ConfigError(f"unknown conformance check {unknown[0]!r}", fix=f"choices: {', '.join(CHECKS)}")

    async def check() -> list[Any]:
        await (await create_sandbox(backend)).close()  # the backend starts at all (a clear error if it cannot)
        return await run_conformance(lambda: create_sandbox(backend), only=only or None)

    report = ConformanceReport(backend, tuple(asyncio.run(check())))
    if json_output:
        print(json.dumps(report.to_dict(subject_key="backend")))
    else:
        for result in report.results:
            print(result)
        print(report.summary())
    return 0 if report.ok else 1
