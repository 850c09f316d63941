"""Read YAML/JSON resource files, remembering the line of every key.

A document's problems are reported by path (`steps.educate.next`); the line
map turns that path into `file:line`, using the nearest known ancestor.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from carepath.domain.catalog import Document
from carepath.domain.problems import Path
from carepath.errors import Problem

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class SourceDocument:
    document: Document
    file: str
    lines: Mapping[Path, int] = field(default_factory=dict)

    def locate(self, path: Path) -> str:
        """`file:line` for the deepest known part of `path`."""
        for size in range(len(path), -1, -1):
            line = self.lines.get(path[:size])
            if line is not None:
                return f"{self.file}:{line}"
        return self.file


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps composed nodes so lines can be mapped."""


def _line_map(node: Node, path: Path, out: dict[Path, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode):
                child = (*path, _scalar_key(key_node))
                _line_map(value_node, child, out)
                out[child] = key_node.start_mark.line + 1
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*path, i), out)


def _scalar_key(node: ScalarNode) -> str | int:
    return str(node.value)


def files_under(paths: Iterable[FsPath]) -> list[FsPath]:
    """Resource files named directly, or found under directories (sorted)."""
    found: list[FsPath] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()))
        else:
            found.append(path)
    return found


def load_file(
    path: FsPath, display: str | None = None
) -> tuple[list[SourceDocument], list[Problem]]:
    """Every document in one file, or the problems that stopped it from being read."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], [Problem(name, "no such file")]
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(name, f"cannot read file: {exc.__class__.__name__}")]
    if path.suffix == ".json":
        return _load_json(text, name)
    return _load_yaml(text, name)


def load_text(text: str, name: str) -> tuple[list[SourceDocument], list[Problem]]:
    """Every document in YAML (or JSON, which YAML reads too) text sent as `name`."""
    if text.lstrip().startswith(("[", "{")):
        return _load_json(text, name)
    return _load_yaml(text, name)


def _load_yaml(text: str, name: str) -> tuple[list[SourceDocument], list[Problem]]:
    docs: list[SourceDocument] = []
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        return [], [Problem(f"{name}:{line}", f"YAML syntax error: {exc.problem}")]
    except yaml.reader.ReaderError:  # a control character or invalid text, before any parsing
        return [], [Problem(name, "YAML error: the text holds a character YAML does not allow")]
    for node in nodes:
        if node is None:
            continue
        lines: dict[Path, int] = {}
        _line_map(node, (), lines)
        loader = _Loader("")
        try:
            data = loader.construct_document(node)
        except yaml.YAMLError as exc:
            return [], [Problem(f"{name}:{node.start_mark.line + 1}", f"YAML error: {exc}")]
        finally:
            loader.dispose()
        if not isinstance(data, Mapping):
            return [], [
                Problem(f"{name}:{node.start_mark.line + 1}", "a document must be a mapping")
            ]
        docs.append(SourceDocument(Document(name, _plain_mapping(data)), name, lines))
    return docs, []


def _load_json(text: str, name: str) -> tuple[list[SourceDocument], list[Problem]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [Problem(f"{name}:{exc.lineno}", f"JSON syntax error: {exc.msg}")]
    items = data if isinstance(data, list) else [data]
    docs = []
    for item in items:
        if not isinstance(item, Mapping):
            return [], [Problem(name, "a document must be a JSON object")]
        docs.append(SourceDocument(Document(name, item), name, {(): 1}))
    return docs, []


def _plain(value: object) -> object:
    """YAML gives dates as date objects; keep them, but make keys strings."""
    if isinstance(value, Mapping):
        return _plain_mapping(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _plain_mapping(value: Mapping[object, object]) -> dict[str, object]:
    return {str(k): _plain(v) for k, v in value.items()}


def load_paths(paths: Iterable[FsPath]) -> tuple[list[SourceDocument], list[Problem]]:
    documents: list[SourceDocument] = []
    problems: list[Problem] = []
    files = files_under(paths)
    if not files:
        problems.append(Problem("", "no resource files found (.yaml, .yml or .json)"))
    for path in files:
        docs, errs = load_file(path)
        documents.extend(docs)
        problems.extend(errs)
    return documents, problems
