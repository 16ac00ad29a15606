"""Errors that carry a source position; imports nothing so anything may raise them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceIssue:
    """One problem in an input file, at 1-based line and column (0 when unknown)."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}: {self.message}"
        return f"{self.file}: {self.message}"


class SourceError(Exception):
    """Every problem found in one or more input files, reported together."""

    def __init__(self, issues: list[SourceIssue]) -> None:
        super().__init__("\n".join(str(issue) for issue in issues))
        self.issues = issues
