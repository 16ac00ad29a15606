"""Label matchers of PromQL selectors: ``name="v"``, ``!=``, ``=~`` and ``!~``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum


class MatchOp(str, Enum):
    """The four label matching operators."""

    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True)
class Matcher:
    """One label condition; a missing label counts as the empty string, as in Prometheus."""

    name: str
    op: MatchOp
    value: str
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        try:
            op = MatchOp(self.op)
        except ValueError:
            valid = ", ".join(o.value for o in MatchOp)
            raise ValueError(f"unknown label match operator {self.op!r} (expected one of {valid})") from None
        object.__setattr__(self, "op", op)
        if op in (MatchOp.RE, MatchOp.NRE):
            try:
                # Prometheus anchors the whole pattern and lets "." match newlines.
                regex = re.compile(self.value, re.DOTALL)
            except re.error as exc:
                raise ValueError(f"invalid regular expression in {self}: {exc}") from None
            object.__setattr__(self, "_regex", regex)

    def matches(self, value: str) -> bool:
        """Whether a label value (``""`` when the label is missing) satisfies this matcher."""
        if self._regex is not None:
            return (self._regex.fullmatch(value) is not None) == (self.op is MatchOp.RE)
        return (value == self.value) == (self.op is MatchOp.EQ)

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        return f'{self.name}{self.op.value}"{escaped}"'
