"""Alert label and annotation templates, rendered exactly as Prometheus renders them.

Prometheus expands each label and annotation with Go's text/template, its own
function map and a prelude defining ``$labels``, ``$externalLabels``,
``$externalURL`` and ``$value``. ``Template.parse`` reports what Go rejects at
parse time (as ``promtool check rules`` does); ``Template.render`` never raises
and renders a failure as Prometheus does: ``<error expanding template: ...>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rules.template.executor import ExecError, execute
from rules.template.funcs import BUILTINS, FUNCTION_NAMES, QueryFunc, prometheus_funcs
from rules.template.parser import ParseError, Tree, parse
from rules.template.values import AlertData, QuerySample

__all__ = ["PRELUDE", "QueryFunc", "QuerySample", "Template", "TemplateError", "expand"]

PRELUDE = ("{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}"
           "{{$externalURL := .ExternalURL}}{{$value := .Value}}")


class TemplateError(Exception):
    """A template Go would refuse to parse; ``str`` is Go's message.

    ``line`` and ``column`` (1-based, in characters of the user's text) locate the
    offending token; the message itself names the line as Go does.
    """

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Expansion:
    """The outcome of one expansion: the text, or Go's error message."""

    text: str
    error: str | None

    def rendered(self) -> str:
        """What Prometheus stores in the label or annotation."""
        if self.error is None:
            return self.text
        return f"<error expanding template: {self.error}>"


class Template:
    """A parsed alert (or recording) rule template."""

    def __init__(self, name: str, text: str, trees: dict[str, Tree]) -> None:
        self.name = name
        self.text = text
        self._trees = trees

    @classmethod
    def parse(cls, text: str, name: str, prelude: bool = True) -> Template:
        """Parse ``text`` as template ``name`` (e.g. ``__alert_HighCPU``).

        With ``prelude`` (as Prometheus does for rule labels and annotations) the
        text is preceded by the definitions of ``$labels``, ``$externalLabels``,
        ``$externalURL`` and ``$value``, which also shifts columns on line 1.
        """
        head = PRELUDE if prelude else ""
        full = head + text
        try:
            trees = parse(name, full, set(FUNCTION_NAMES))
        except ParseError as err:
            raise TemplateError(err.message, err.line, _user_column(full, err.pos, len(head))) \
                from None
        except RecursionError:
            raise TemplateError(f"template: {name}:1: max expression depth exceeded", 1, 0) \
                from None
        return cls(name, text, trees)

    def expand(self, labels: Mapping[str, str], value: float,
               external_labels: Mapping[str, str] | None = None, external_url: str = "",
               query: QueryFunc | None = None) -> Expansion:
        """Execute the template; an execution failure is returned, never raised."""
        data = AlertData(dict(labels), dict(external_labels or {}), external_url, value)
        funcs = prometheus_funcs(query, external_url)
        try:
            text = execute(self._trees[self.name], funcs, BUILTINS, data)
        except ExecError as err:
            return Expansion("", f"error executing template {self.name}: {err}")
        except Exception as err:  # noqa: BLE001 - Prometheus recovers panics the same way
            return Expansion("", f"panic expanding template {self.name}: {err!r}")
        return Expansion(text, None)

    def render(self, labels: Mapping[str, str], value: float,
               external_labels: Mapping[str, str] | None = None, external_url: str = "",
               query: QueryFunc | None = None) -> str:
        """The expanded text, or ``<error expanding template: ...>`` as Prometheus stores it."""
        return self.expand(labels, value, external_labels, external_url, query).rendered()


def expand(text: str, name: str, labels: Mapping[str, str], value: float,
           external_labels: Mapping[str, str] | None = None, external_url: str = "",
           query: QueryFunc | None = None) -> str:
    """Parse and render in one step, reporting a parse error the way Prometheus' evaluation does."""
    try:
        template = Template.parse(text, name)
    except TemplateError as err:
        return f"<error expanding template: error parsing template {name}: {err}>"
    return template.render(labels, value, external_labels, external_url, query)


def _user_column(full: str, pos: int, prelude_length: int) -> int:
    """1-based character column of byte offset ``pos`` in the user's text (prelude removed)."""
    before = full.encode()[:pos].decode(errors="replace")
    line_start = before.rfind("\n") + 1
    column = len(before) - line_start + 1
    if line_start == 0:
        column -= prelude_length
    return max(column, 1)
