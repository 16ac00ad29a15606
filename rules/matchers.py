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
                regex = re.compile(go_regex_to_python(self.value), re.DOTALL)
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


_FLAG_GROUP = re.compile(r"\(\?([imsU-]+)\)")


def go_regex_to_python(pattern: str) -> str:
    """Rewrite the RE2 syntax Python's ``re`` reads differently: flag groups such as ``(?i)``
    after the start of a group (RE2 applies them to the rest of that group, Python only
    allows them at the very start) become scoped groups ``(?i:...)``, and ``\\z`` becomes ``\\Z``.
    """
    out: list[str] = []
    open_flags: list[list[str]] = [[]]  # per group nesting level: flag sets opened since its start
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append("\\Z" if pattern[i + 1] == "z" and not in_class else pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            # A "]" right after "[" or "[^" is a literal member of the class.
            if pattern.startswith("]", i + 1) or pattern.startswith("^]", i + 1):
                out.append(pattern[i:i + (2 if pattern[i + 1] == "]" else 3)])
                i += 2 if pattern[i + 1] == "]" else 3
                continue
        elif (flags := _FLAG_GROUP.match(pattern, i)) is not None and i > 0:
            out.append(f"(?{flags.group(1)}:")
            open_flags[-1].append(flags.group(1))
            i = flags.end()
            continue
        elif char == "(":
            open_flags.append([])
        elif char == ")" and len(open_flags) > 1:
            out.append(")" * len(open_flags.pop()))
        elif char == "|":
            # Flags reach across alternatives: close the scopes before "|", reopen them after it.
            scopes = open_flags[-1]
            out.append(")" * len(scopes) + "|" + "".join(f"(?{f}:" for f in scopes))
            i += 1
            continue
        out.append(char)
        i += 1
    out.append(")" * len(open_flags[0]))
    return "".join(out)
