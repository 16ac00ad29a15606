"""YAML loading that remembers where every key and value came from.

Values are built as Go's yaml.v3 builds them for Prometheus (``rules.golang.yaml``:
YAML 1.2 booleans, Go's numbers), not by PyYAML's YAML 1.1 rules (``yes`` is not true,
``1e3`` is a float); mapping keys, and the values string fields take, are the scalar's
source text (``Positions.text``). Alongside the values a map from each path (tuple of
keys and list indexes) to its source position lets validation errors point at
``file:line:column``. Nesting and alias expansion are bounded, so a hostile file is an error rather than a stack overflow or a
memory blow-up (a few hundred bytes of aliases can name billions of values).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from rules.errors import SourceError, SourceIssue
from rules.golang import yaml as goyaml

Path = tuple[str | int, ...]
_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Far beyond real config and rule files (under 10 levels); Python's recursion runs out near 300.
MAX_DEPTH = 100
# Values that aliases may add beyond the document's own nodes; real files merge a few small anchors.
MAX_ALIAS_VALUES = 50_000
# Shorter hidden values are replaced only where quoted, so that they do not mangle the rest of a message.
_MIN_BARE_REDACTION = 4


@dataclass
class Positions:
    """1-based (line, column) of each value, and of each mapping key, by path."""

    file: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    # YAML scalar style by path: None plain, "'" or '"' quoted, "|" or ">" block.
    styles: dict[Path, str | None] = field(default_factory=dict)
    # For block scalars: the 1-based column where their content lines start.
    block_columns: dict[Path, int] = field(default_factory=dict)
    # The source text of scalars that resolved to something other than a string (1.10, yes, 0x1F, true).
    texts: dict[Path, str] = field(default_factory=dict)
    # Text that must never be echoed (values from the environment, secrets) -> what to show instead.
    hidden: dict[str, str] = field(default_factory=dict)

    def issue(self, path: Path, message: str, *, at_key: bool = False) -> SourceIssue:
        """An issue located at ``path``, or at its nearest known ancestor."""
        table = self.keys if at_key else self.values
        probe = path
        while probe:
            position = table.get(probe) or self.values.get(probe)
            if position:
                return SourceIssue(self.file, position[0], position[1], message)
            probe = probe[:-1]
        position = self.values.get((), (0, 0))
        return SourceIssue(self.file, position[0], position[1], message)

    def text(self, path: Path, value: Any) -> str | None:
        """What Go puts in a string field from the scalar ``value`` at ``path``: its source text, "" for null.

        None when ``value`` is a mapping or a list, which no string field takes.
        """
        if isinstance(value, str):
            return value
        if value is None:
            return ""
        if isinstance(value, (dict, list)):
            return None
        return self.texts.get(path, str(value))

    def hide(self, value: str, shown_as: str) -> None:
        """Never echo ``value`` in a message: ``redact`` shows ``shown_as`` in its place."""
        if value:
            self.hidden[value] = shown_as

    def redact(self, message: str) -> str:
        """``message`` with every hidden value replaced, longest first so a part never uncovers a whole."""
        for value in sorted(self.hidden, key=len, reverse=True):
            shown_as = self.hidden[value]
            message = message.replace(repr(value), repr(shown_as))
            if len(value) >= _MIN_BARE_REDACTION:
                message = message.replace(value, shown_as)
        return message


def read_source(path: str | os.PathLike[str], what: str) -> str:
    """A UTF-8 text file's content; unreadable or undecodable is a SourceError naming ``what`` it is."""
    file = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise SourceError([SourceIssue(file, 0, 0, f"cannot read {what}: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise SourceError([SourceIssue(file, 0, 0, f"{what} is not UTF-8 text: {exc}")]) from None


def load_yaml(text: str, file: str, *, substitute_env: bool = False) -> tuple[Any, Positions]:
    """Parse one YAML document; raise SourceError on syntax errors or duplicate keys.

    With ``substitute_env``, ``${NAME}`` in string values is replaced by the
    environment variable (``$$`` is a literal ``$``); an unset variable is an error.
    """
    positions = Positions(file)
    try:
        loader = _BoundedLoader(text)  # the reader refuses unprintable characters already here
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except _LimitExceeded as exc:
        raise SourceError([_limit_issue(file, exc)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{problem} ({exc.context})"
        raise SourceError([SourceIssue(file, line, column, f"YAML syntax error: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise SourceError([SourceIssue(file, 0, 0, f"YAML error: {exc}")]) from None
    if node is None:
        return None, positions
    issues: list[SourceIssue] = []
    builder = _Builder(positions, issues, substitute_env, budget=loader.nodes + MAX_ALIAS_VALUES)
    try:
        data = builder.build(node, ())
    except _LimitExceeded as exc:
        raise SourceError([_limit_issue(file, exc)]) from None
    if issues:
        raise SourceError(issues)
    return data, positions


class _LimitExceeded(Exception):
    """A document beyond MAX_DEPTH or MAX_ALIAS_VALUES, at the node where the limit was crossed."""

    def __init__(self, message: str, mark: yaml.Mark) -> None:
        super().__init__(message)
        self.mark = mark


def _limit_issue(file: str, exc: _LimitExceeded) -> SourceIssue:
    return SourceIssue(file, exc.mark.line + 1, exc.mark.column + 1, f"YAML refused: {exc}")


def _too_deep(mark: yaml.Mark) -> _LimitExceeded:
    return _LimitExceeded(f"values nested more than {MAX_DEPTH} levels deep", mark)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that resolves plain scalars as yaml.v3 does and whose recursive composer stops at MAX_DEPTH.

    It counts the document's own nodes, for the alias budget.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.depth >= MAX_DEPTH:
            # types-PyYAML leaves Parser.peek_event unannotated.
            raise _too_deep(self.peek_event().start_mark)  # type: ignore[no-untyped-call]
        if not self.check_event(yaml.AliasEvent):
            self.nodes += 1
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.SequenceNode:
            return _SEQUENCE_TAG
        if kind is yaml.MappingNode:
            return _MAPPING_TAG
        if not implicit[0]:  # quoted, a block, or tagged "!"
            return goyaml.STR_TAG
        return _MERGE_TAG if value == "<<" else goyaml.tag_of(value)


_MERGE_TAG = "tag:yaml.org,2002:merge"
_SEQUENCE_TAG = "tag:yaml.org,2002:seq"
_MAPPING_TAG = "tag:yaml.org,2002:map"


class _GoConstructor(yaml.SafeLoader):
    """SafeLoader's constructors, with yaml.v3's reading of booleans, numbers and null (also when tagged)."""

    def construct_go_bool(self, node: yaml.Node) -> bool:
        value = _resolved(node)
        if isinstance(value, bool):
            return value
        raise ValueError(f"cannot decode {node.value!r} as a boolean (true or false)")

    def construct_go_int(self, node: yaml.Node) -> int:
        value = _resolved(node)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"cannot decode {node.value!r} as an integer")

    def construct_go_float(self, node: yaml.Node) -> float:
        value = _resolved(node)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"cannot decode {node.value!r} as a number")

    def construct_go_null(self, node: yaml.Node) -> None:
        if _resolved(node) is not None:
            raise ValueError(f"cannot decode {node.value!r} as null")


def _resolved(node: yaml.Node) -> Any:
    assert isinstance(node, yaml.ScalarNode)
    return goyaml.resolve(node.value)


_GoConstructor.add_constructor(goyaml.BOOL_TAG, _GoConstructor.construct_go_bool)
_GoConstructor.add_constructor(goyaml.INT_TAG, _GoConstructor.construct_go_int)
_GoConstructor.add_constructor(goyaml.FLOAT_TAG, _GoConstructor.construct_go_float)
_GoConstructor.add_constructor(goyaml.NULL_TAG, _GoConstructor.construct_go_null)


class _Builder:
    def __init__(self, positions: Positions, issues: list[SourceIssue], substitute_env: bool, *, budget: int) -> None:
        self.positions = positions
        self.issues = issues
        self.substitute_env = substitute_env
        self.constructor = _GoConstructor("")
        # Values left to build: the document's own nodes plus what aliases may add (each use builds a copy).
        self.budget = budget

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise _LimitExceeded(f"aliases expand to more than {MAX_ALIAS_VALUES} values", node.start_mark)
        if len(path) >= MAX_DEPTH:  # aliases can nest anchors, or an anchor in itself, past the composer's check
            raise _too_deep(node.start_mark)
        self.positions.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (index,)) for index, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        self.positions.styles[path] = node.style
        buffer = node.start_mark.buffer
        if node.style in ("|", ">") and buffer is not None:
            self.positions.block_columns[path] = _block_column(buffer, node)
        value = self._construct(node)
        if not isinstance(value, str) and value is not None:
            self.positions.texts[path] = node.value
        if self.substitute_env and isinstance(value, str) and node.tag == "tag:yaml.org,2002:str":
            value = self._substitute(value, path)
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        self.constructor.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._error(key_node, "mapping keys must be scalars")
                continue
            self._construct(key_node)  # a tag or literal that cannot be built is an issue
            # Go reads every key into a string: its source text ("" for null), so 1.10 stays "1.10".
            key = "" if key_node.tag == goyaml.NULL_TAG else key_node.value
            key_path = path + (key,)
            if key in result:
                self._error(key_node, f"duplicate key {key!r}")
                continue
            self.positions.keys[key_path] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = self.build(value_node, key_path)
        return result

    def _construct(self, node: yaml.Node) -> Any:
        """A scalar's value; a tag or literal PyYAML cannot build (``!foo``, ``2001-02-30``) is an issue."""
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self._error(node, f"invalid value: {exc.problem}")
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            # The value is not quoted: it may be a secret field's (the schema is not known here).
            detail = str(exc).replace(str(node.value), "<value>")
            self._error(node, f"invalid value for tag {node.tag}: {detail}")
        return None

    def _substitute(self, value: str, path: Path) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1)
            if name not in os.environ:
                self.issues.append(self.positions.issue(path, f"environment variable {name} is not set"))
                return ""
            self.positions.hide(os.environ[name], match.group(0))
            return os.environ[name]

        expanded = _ENV_RE.sub(replace, value)
        if expanded != value:
            self.positions.hide(expanded, value)
        return expanded

    def _error(self, node: yaml.Node, message: str) -> None:
        mark = node.start_mark
        self.issues.append(SourceIssue(self.positions.file, mark.line + 1, mark.column + 1, message))


def _block_column(buffer: str, node: yaml.ScalarNode) -> int:
    """Column of a block scalar's content: the indentation of its first non-blank line, plus one."""
    lines = buffer[node.start_mark.pointer:node.end_mark.pointer].split("\n")[1:]
    for line in lines:
        if line.strip():
            return len(line) - len(line.lstrip(" ")) + 1
    return 1
