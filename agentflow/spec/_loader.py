"""Load a workflow file into a WorkflowSpec, keeping the source position of every value.

The positional loading itself (:func:`load_document`) is the same for any YAML file agentflow reads into a pydantic
model: benchmark files use it too, so their mistakes are reported with file:line:col and a fix as well.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from agentflow._canonical_json import canonical_json
from agentflow.errors import Diagnostic, SourceLocation, SpecError
from agentflow.spec import _models
from agentflow.spec._models import WorkflowSpec

Path_ = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass
class LoadedDocument(Generic[M]):
    """A validated YAML document plus where each of its values came from."""

    model: M
    path: Path
    value_locations: dict[Path_, SourceLocation] = field(default_factory=lambda: {})
    key_locations: dict[Path_, SourceLocation] = field(default_factory=lambda: {})
    # Scalars written on one line as they read (no escapes, no folding): how many characters (0, or 1 for the
    # opening quote) come before the value's own text, so a position inside the value is a column of the file.
    inline_scalars: dict[Path_, int] = field(default_factory=lambda: {})

    def locate(self, *path: str | int, key: bool = False) -> SourceLocation:
        """The location of the value (or, with ``key``, of the key) at ``path``, else of its nearest ancestor."""
        table = self.key_locations if key else self.value_locations
        current: Path_ = tuple(path)
        while current:
            if current in table:
                return table[current]
            if current in self.value_locations:
                return self.value_locations[current]
            current = current[:-1]
        return SourceLocation(str(self.path), 1, 1)

    def locate_inside(self, offset: int, *path: str | int) -> SourceLocation:
        """The location of the character at ``offset`` of the string value at ``path`` (e.g. where a CEL expression
        goes wrong); the value's own location when the YAML spelling does not map characters one to one."""
        where = self.locate(*path)
        if tuple(path) not in self.inline_scalars or tuple(path) not in self.value_locations:
            return where
        return SourceLocation(where.file, where.line, where.column + self.inline_scalars[tuple(path)] + offset)

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the file (scripts, plugins, sandbox files, subgraphs) start from."""
        return self.path.parent


@dataclass
class LoadedWorkflow(LoadedDocument[WorkflowSpec]):
    """A validated workflow spec plus where each of its values came from."""

    @property
    def spec(self) -> WorkflowSpec:
        return self.model

    @functools.cached_property
    def template_hash(self) -> str:
        """sha256 of the spec's canonical content: comments and formatting do not change it.

        Values left at their defaults are left out, so a setting that a later agentflow adds (with a default) does
        not make every recorded run's workflow look changed; writing a default out explicitly changes nothing either.
        """
        content = self.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        return hashlib.sha256(canonical_json(content)).hexdigest()


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that composes nodes only; duplicate keys are detected while walking them."""


def _mark(node: yaml.Node, file: str) -> SourceLocation:
    return SourceLocation(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _inline_prefix(node: yaml.ScalarNode) -> int | None:
    """0 for a plain scalar, 1 for a quoted one, when its text in the file is its value; else None."""
    start, end = node.start_mark, node.end_mark
    if start.line != end.line or start.buffer is None:
        return None
    raw = start.buffer[start.pointer : end.pointer]
    if node.style is None and raw == node.value:
        return 0
    if node.style in {"'", '"'} and raw[1:-1] == node.value:
        return 1
    return None


def _to_data(node: yaml.Node, path: Path_, file: str, loaded: LoadedDocument[Any]) -> Any:
    values, keys = loaded.value_locations, loaded.key_locations
    values[path] = _mark(node, file)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            # Keys are taken as written: YAML 1.1 would turn `on:` (a reward's trigger) into True.
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError("mapping keys must be plain scalars", location=_mark(key_node, file))
            key = key_node.value
            if key in result:
                first = keys[(*path, key)]
                raise SpecError(
                    f"duplicate key {key!r} (first defined at line {first.line})",
                    location=_mark(key_node, file),
                    fix="each name may appear once in a mapping: rename or merge the two entries",
                )
            child = (*path, key)
            keys[child] = _mark(key_node, file)
            result[key] = _to_data(value_node, child, file, loaded)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(item, (*path, i), file, loaded) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.ScalarNode) and (prefix := _inline_prefix(node)) is not None:
        loaded.inline_scalars[path] = prefix
    return _UniqueKeyLoader("").construct_object(node, deep=True)


def _all_field_names(model_type: type[BaseModel]) -> list[str]:
    """Every key a document of ``model_type`` may hold, at any depth (the suggestions for a mistyped key)."""
    names: set[str] = set()
    pending, seen = [model_type], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for name, info in current.model_fields.items():
            names.add(info.alias or name)
            pending.extend(_models_in(info.annotation))
    if model_type is WorkflowSpec:  # node kinds are a discriminated union the annotation walk reaches anyway
        names.update(
            info.alias or name
            for value in vars(_models).values()
            if isinstance(value, type) and issubclass(value, BaseModel)
            for name, info in value.model_fields.items()
        )
    return sorted(names)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation names (inside lists, dicts, unions, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for argument in getattr(annotation, "__args__", ()) or ():
        found.extend(_models_in(argument))
    metadata_origin = getattr(annotation, "__origin__", None)
    if metadata_origin is not None and hasattr(annotation, "__metadata__"):
        found.extend(_models_in(metadata_origin))
    return found


def _existing_path(data: Any, loc: tuple[str | int, ...]) -> Path_:
    """Drop the parts of a pydantic error location that are not in the data (discriminator tags, union arms)."""
    result: list[str | int] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and part == current.get("kind"):
            continue  # pydantic names the discriminated-union arm (the node's kind) in the location
        if isinstance(current, dict) and str(part) in current:
            current = current[str(part)]
            result.append(str(part))
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
            result.append(part)
        elif isinstance(current, dict) and part not in current and isinstance(part, str) and part == loc[-1]:
            result.append(part)  # the missing or extra key itself
    return tuple(result)


def _diagnostic_for(error: Any, data: Any, loaded: LoadedDocument[Any], model_type: type[BaseModel]) -> Diagnostic:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    path = _existing_path(data, loc)
    dotted = ".".join(str(p) for p in path) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        close = difflib.get_close_matches(key, _all_field_names(model_type), n=1)
        fix = f"did you mean {close[0]!r}?" if close else "remove it; `agentflow schema` lists the allowed keys"
        return Diagnostic("spec.unknown-key", f"unknown key {dotted!r}", loaded.locate(*path, key=True), fix)
    if kind == "missing":
        return Diagnostic("spec.missing", f"{dotted!r} is required", loaded.locate(*path[:-1]), f"add `{path[-1]}:`")
    if kind in {"union_tag_invalid", "union_tag_not_found"}:
        return Diagnostic(
            "spec.node-kind",
            f"{dotted}: {error['msg']}",
            loaded.locate(*path),
            "set `kind:` to one of agent, tool, router, subgraph, map",
        )
    given = json.dumps(error.get("input"), default=str)[:60]
    if kind == "literal_error" and isinstance(error.get("input"), str):
        expected = str((error.get("ctx") or {}).get("expected", ""))
        choices = [choice.strip(" '") for choice in expected.replace(" or ", ", ").split(",") if choice.strip(" '")]
        close = difflib.get_close_matches(error["input"], choices, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return Diagnostic(
            "spec.type",
            f"{dotted}: {error['input']!r} is not one of {', '.join(choices)}",
            loaded.locate(*path),
            f"{hint}use one of: {', '.join(choices)}",
        )
    return Diagnostic(
        "spec.type", f"{dotted}: {error['msg']} (got {given})", loaded.locate(*path), "see `agentflow schema`"
    )


def load_workflow(path: str | Path) -> LoadedWorkflow:
    """Read and validate a workflow file.

    Raises:
        SpecError: the file is missing, is not YAML, or does not match the schema; ``diagnostics`` holds every
            problem with its file:line:col and a fix.
    """
    document = load_document(
        path,
        WorkflowSpec,
        kind="workflow",
        shape_fix="see graphs/examples/ for a complete workflow",
        shape="a YAML mapping with at least name, start and nodes",
    )
    return LoadedWorkflow(
        document.model, document.path, document.value_locations, document.key_locations, document.inline_scalars
    )


def load_document(path: str | Path, model_type: type[M], *, kind: str, shape: str, shape_fix: str) -> LoadedDocument[M]:
    """Read a YAML file into ``model_type``, keeping where each value was written.

    Args:
        kind: what the file is, for messages (``workflow``, ``benchmark``).
        shape: what its top level must be, for the message when it is not a mapping.
        shape_fix: where to see a complete file.

    Raises:
        SpecError: the file is missing, is not YAML, or does not match the schema; ``diagnostics`` holds every
            problem with its file:line:col and a fix.
    """
    file_path = Path(path)
    file = str(file_path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{kind} file not found: {file}", location=None, fix="check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {file}: {exc}", location=None) from None
    try:
        root = yaml.compose(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = SourceLocation(file, mark.line + 1, mark.column + 1) if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(
            f"invalid YAML: {problem}",
            location=where,
            fix="check indentation, colons and quotes around this position",
        ) from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise SpecError(f"a {kind} file must be {shape}", location=SourceLocation(file, 1, 1), fix=shape_fix)
    loaded: LoadedDocument[M] = LoadedDocument(model_type.model_construct(), file_path)  # the path as written
    data = _to_data(root, (), file, loaded)
    try:
        loaded.model = model_type.model_validate(data)
    except ValidationError as exc:
        diagnostics = [_diagnostic_for(error, data, loaded, model_type) for error in exc.errors()]
        first = diagnostics[0]
        raise SpecError(first.message, location=first.location, fix=first.fix, diagnostics=diagnostics) from None
    return loaded


def workflow_json_schema() -> dict[str, Any]:
    """The JSON Schema of workflow files, for editors (`# yaml-language-server: $schema=...`)."""
    schema = WorkflowSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "agentflow workflow"
    return schema
