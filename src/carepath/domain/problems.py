"""Collecting problems in user documents with the path where each was found.

Parsers in the domain know paths (`steps.educate.next`), not files or lines;
the loader maps a path back to `file:line`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class DocProblem:
    path: Path
    message: str

    @property
    def dotted(self) -> str:
        return ".".join(str(p) for p in self.path)


@dataclass
class Problems:
    items: list[DocProblem] = field(default_factory=list)

    def add(self, path: Path, message: str) -> None:
        self.items.append(DocProblem(path, message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)
