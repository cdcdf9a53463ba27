"""Build agentflow's sandbox images with no image registry: a Debian root filesystem from ``debootstrap``, imported
with ``docker import``.

This file imports nothing but the standard library, so it runs before agentflow is installed (CI's setup script runs
it with the system ``python3``); that is why it parses its own arguments too, beside ``agentflow sandbox build``::

    python3 agentflow/sandboxes/images.py python            # what `agentflow sandbox build python` runs

``sandboxes/python/Dockerfile`` builds the same image for users who can reach a registry; a test keeps its package
list equal to ``RECIPES["python"]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPES: dict[str, dict[str, object]] = {
    "python": {
        "tag": "agentflow/python:latest",
        # minbase already has sh, coreutils, util-linux (setsid), grep, sed, tar; the exec server needs python3 and
        # the built-in run_tests tool pytest (without it run_tests falls back to unittest, unlike the local backend)
        "packages": ["python3", "python3-pytest"],
        # bump whenever the packages or the image layout change: `--if-missing` rebuilds an image of an older one
        "revision": 2,
    },
}
"""Image recipes by name: the tag, the Debian packages added to ``debootstrap --variant=minbase``, and the recipe's
revision, which the image carries as the label ``agentflow.recipe.revision``."""

REVISION_LABEL = "agentflow.recipe.revision"

SANDBOX_UID = 1000
WORKDIR = "/workspace"
_SOURCES_LIST = Path("/etc/apt/sources.list")
_SOURCES_DIR = Path("/etc/apt/sources.list.d")


class BuildError(Exception):
    """The image could not be built; the message says which step failed and how to fix it."""


def host_suite() -> str:
    """The Debian codename of this machine (``bookworm``), the default suite of the image."""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise BuildError("cannot tell this machine's Debian release from /etc/os-release; pass --suite")


def host_mirror() -> str:
    """The Debian archive this machine's apt uses: the one package mirror reachable here, whatever it is."""
    candidates: list[str] = []
    for path in sorted(_SOURCES_DIR.glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            match = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            if match and "security" not in match.group(1) and not re.search(r"^Enabled:\s*no", stanza, re.M):
                candidates.append(match.group(1))
    if _SOURCES_LIST.exists():
        for line in _SOURCES_LIST.read_text().splitlines():
            parts = line.split()
            if parts[:1] == ["deb"]:
                uri = next((p for p in parts[1:] if not p.startswith("[")), "")
                if uri and "security" not in uri:
                    candidates.append(uri)
    if not candidates:
        raise BuildError("no Debian mirror in /etc/apt/sources.list(.d); pass --mirror URL")
    return candidates[0]


def _run(argv: list[str], what: str, **kwargs: object) -> None:
    completed = subprocess.run(argv, check=False, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout or "").strip().splitlines()[-5:]
        raise BuildError(f"{what} failed (exit {completed.returncode}): {' | '.join(tail)}")


def _prepare_rootfs(root: Path) -> None:
    """Trim the rootfs and add the sandbox user and workdir."""
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info"):
        target = root / junk
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
    with (root / "etc/passwd").open("a") as passwd:
        passwd.write(f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:agentflow sandbox:{WORKDIR}:/bin/sh\n")
    with (root / "etc/group").open("a") as group:
        group.write(f"sandbox:x:{SANDBOX_UID}:\n")
    workdir = root / WORKDIR.lstrip("/")
    workdir.mkdir(exist_ok=True)
    os.chown(workdir, SANDBOX_UID, SANDBOX_UID)


def build_image(
    recipe: str = "python",
    *,
    tag: str | None = None,
    mirror: str | None = None,
    suite: str | None = None,
    docker: str = "docker",
    log: bool = True,
) -> str:
    """Build a recipe's image with debootstrap and ``docker import``; return its tag.

    Needs root, ``debootstrap`` and the ``docker`` command line (both Debian packages: ``apt-get install
    debootstrap docker.io``).

    Raises:
        BuildError: a step failed, a tool is missing, or the recipe is unknown.
    """
    if recipe not in RECIPES:
        raise BuildError(f"unknown image recipe {recipe!r}; choices: {', '.join(sorted(RECIPES))}")
    spec = RECIPES[recipe]
    tag = tag or str(spec["tag"])
    packages = [str(p) for p in spec["packages"]]  # type: ignore[attr-defined]
    for tool, package in (("debootstrap", "debootstrap"), (docker, "docker.io")):
        if shutil.which(tool) is None:
            raise BuildError(f"{tool!r} is not installed (apt-get install -y {package})")
    if os.geteuid() != 0:
        raise BuildError("building the image needs root (debootstrap makes device nodes and chroots)")
    suite = suite or host_suite()
    mirror = mirror or host_mirror()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="agentflow-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        if log:
            print(f"debootstrap {suite} ({', '.join(packages)}) ...", file=sys.stderr, flush=True)
        _run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(root), mirror],
            "debootstrap",
        )
        _prepare_rootfs(root)
        if log:
            print(f"docker import {tag} ...", file=sys.stderr, flush=True)
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            f"ENV HOME={WORKDIR}",
            f"WORKDIR {WORKDIR}",
            f"USER {SANDBOX_UID}:{SANDBOX_UID}",
            f"LABEL agentflow.recipe={recipe}",
            f"LABEL {REVISION_LABEL}={spec['revision']}",
            'CMD ["python3"]',
        ]
        argv = [docker, "import"]
        for change in changes:
            argv += ["--change", change]
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        try:
            _run([*argv, "-", tag], "docker import", stdin=tar.stdout)
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
            tar.wait()
    if log:
        print(f"built {tag} in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return tag


def image_exists(tag: str, docker: str = "docker") -> bool:
    """Whether the engine already holds ``tag``."""
    return subprocess.run([docker, "image", "inspect", tag], capture_output=True, check=False).returncode == 0


def image_revision(tag: str, docker: str = "docker") -> int | None:
    """The recipe revision ``tag`` was built from (0 for an image from before revisions), or None when it is absent."""
    completed = subprocess.run(
        [docker, "image", "inspect", "--format", "{{json .Config.Labels}}", tag],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        return None
    labels = json.loads(completed.stdout or "null") or {}
    value = str(labels.get(REVISION_LABEL, "0"))
    return int(value) if value.isdigit() else 0


def image_is_current(recipe: str, tag: str | None = None, docker: str = "docker") -> bool:
    """Whether the engine holds ``tag`` built from the recipe's current revision (what ``--if-missing`` checks)."""
    spec = RECIPES[recipe]
    revision = image_revision(tag or str(spec["tag"]), docker)
    return revision is not None and revision >= int(spec["revision"])  # type: ignore[call-overload]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build an agentflow sandbox image with no image registry.")
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--tag", help="image tag (default: the recipe's)")
    parser.add_argument("--mirror", help="Debian mirror URL (default: the one this machine's apt uses)")
    parser.add_argument("--suite", help="Debian release (default: this machine's)")
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing when the image exists and was built from the recipe's current revision",
    )
    args = parser.parse_args(argv)
    tag = args.tag or str(RECIPES[args.recipe]["tag"])
    if args.if_missing and image_is_current(args.recipe, tag):
        print(f"{tag} already exists (recipe revision {RECIPES[args.recipe]['revision']})", file=sys.stderr)
        return 0
    try:
        build_image(args.recipe, tag=tag, mirror=args.mirror, suite=args.suite)
    except BuildError as exc:
        print(f"agentflow sandbox build: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
