"""Notification templates: Go templates over Alertmanager's notification data, with its defaults and functions.

The dot is Alertmanager's ``template.Data`` (``.Receiver``, ``.Status``, ``.Alerts`` with ``.Firing`` and
``.Resolved``, ``.GroupLabels``, ``.CommonLabels``, ``.CommonAnnotations``, ``.ExternalURL``), each alert
its ``template.Alert`` and each label set a ``KV`` with ``SortedPairs``, ``Names``, ``Values`` and
``Remove``. Template files add ``define``\\ d templates that every receiver's texts may call by name. A text
that fails when sent is replaced by the receiver's default; the failure is logged and counted.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from exporters.notification import AlertPayload, Notification
from rules.golang.fmt import GoMap, GoSlice, GoStruct
from rules.golang.time import GoTime
from rules.template.executor import ExecError, execute
from rules.template.funcs import BUILTINS, CallError, GoFunc, humanize_duration, prometheus_funcs
from rules.template.parser import ParseError, Tree
from rules.template.values import ANY, HTML, GoMethods

KV_TYPE = "template.KV"
STRINGS_TYPE = "[]string"
# Go's zero time.Time (January 1, year 1, UTC): an alert still firing has it as EndsAt.
_ZERO_TIME_S = -62135596800


def quote_meta(text: str) -> str:
    """Go's regexp.QuoteMeta, which Alertmanager applies to ``.Receiver``."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text)


def _strings(values: Iterable[str]) -> GoSlice:
    return GoSlice(values, go_type=STRINGS_TYPE)


class KV(GoMap, GoMethods):
    """Alertmanager's ``template.KV``: a label set with its sorting and filtering methods."""

    def __init__(self, items: Mapping[str, str]) -> None:
        super().__init__(items, go_type=KV_TYPE, elem_zero="")

    def sorted_pairs(self) -> Pairs:
        """Pairs sorted by name, ``alertname`` first as Alertmanager's ``SortedPairs`` puts it."""
        names = sorted(self, key=lambda name: (name != "alertname", name))
        return Pairs(Pair(name, str(self[name])) for name in names)

    def remove(self, names: object) -> KV:
        """A copy without the given names."""
        drop = set(names) if isinstance(names, list) else set()
        return KV({k: str(v) for k, v in self.items() if k not in drop})

    def method(self, name: str) -> tuple[list[str], Callable[..., object]] | None:
        methods: dict[str, tuple[list[str], Callable[..., object]]] = {
            "SortedPairs": ([], self.sorted_pairs),
            "Names": ([], lambda: self.sorted_pairs().names()),
            "Values": ([], lambda: self.sorted_pairs().values()),
            "Remove": ([STRINGS_TYPE], self.remove),
        }
        return methods.get(name)


class Pair(GoStruct):
    """``template.Pair``: one label's Name and Value."""

    go_type = "template.Pair"

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def go_fields(self) -> list[tuple[str, object]]:
        return [("Name", self.name), ("Value", self.value)]

    def field(self, name: str) -> tuple[bool, object]:
        fields = dict(self.go_fields())
        return (name in fields), fields.get(name)


class Pairs(GoSlice, GoMethods):
    """``template.Pairs`` with its ``Names`` and ``Values``."""

    def __init__(self, items: Iterable[Pair] = ()) -> None:
        super().__init__(items, go_type="template.Pairs")

    def names(self) -> GoSlice:
        return _strings(p.name for p in self if isinstance(p, Pair))

    def values(self) -> GoSlice:
        return _strings(p.value for p in self if isinstance(p, Pair))

    def method(self, name: str) -> tuple[list[str], Callable[..., object]] | None:
        return {"Names": ([], self.names), "Values": ([], self.values)}.get(name)


def _time(seconds: float | None) -> GoTime:
    return GoTime(round((_ZERO_TIME_S if seconds is None else seconds) * 1_000_000_000))


class AlertData(GoStruct):
    """``template.Alert``: one alert of the group as of the notification."""

    go_type = "template.Alert"

    def __init__(self, alert: AlertPayload, now: float) -> None:
        # Alertmanager shows a firing alert's EndsAt as the zero time.
        ends_at = alert.ends_at if alert.status(now) == "resolved" else None
        self.status = alert.status(now)
        self.fields: dict[str, object] = {
            "Status": self.status,
            "Labels": KV(alert.labels),
            "Annotations": KV(alert.annotations),
            "StartsAt": _time(alert.starts_at),
            "EndsAt": _time(ends_at),
            "GeneratorURL": alert.generator_url,
            "Fingerprint": alert.fingerprint,
        }

    def go_fields(self) -> list[tuple[str, object]]:
        return list(self.fields.items())

    def field(self, name: str) -> tuple[bool, object]:
        return (name in self.fields), self.fields.get(name)


class Alerts(GoSlice, GoMethods):
    """``template.Alerts`` with its ``Firing`` and ``Resolved`` methods."""

    def __init__(self, items: Iterable[AlertData] = ()) -> None:
        super().__init__(items, go_type="template.Alerts")

    def of_status(self, status: str) -> Alerts:
        return Alerts(a for a in self if isinstance(a, AlertData) and a.status == status)

    def method(self, name: str) -> tuple[list[str], Callable[..., object]] | None:
        if name in ("Firing", "Resolved"):
            return [], lambda: self.of_status(name.lower())
        return None


class Data(GoStruct):
    """``template.Data``: the dot of every notification template."""

    go_type = "*template.Data"
    is_pointer = True

    def __init__(self, notification: Notification) -> None:
        self.fields: dict[str, object] = {
            "Receiver": quote_meta(notification.receiver),
            "Status": notification.status(),
            "Alerts": Alerts(AlertData(a, notification.created_at) for a in notification.alerts),
            "GroupLabels": KV(notification.group_labels),
            "CommonLabels": KV(notification.common_labels()),
            "CommonAnnotations": KV(notification.common_annotations()),
            "ExternalURL": notification.external_url,
        }

    def go_fields(self) -> list[tuple[str, object]]:
        return list(self.fields.items())

    def field(self, name: str) -> tuple[bool, object]:
        return (name in self.fields), self.fields.get(name)


def _join(separator: str, values: object) -> str:
    if not isinstance(values, list):
        raise CallError(f"wrong type for value; expected []string; got {type(values).__name__}")
    return separator.join(str(v) for v in values)


def _funcs() -> dict[str, GoFunc]:
    """Alertmanager's template functions (template.DefaultFuncs) this engine offers."""
    prometheus = prometheus_funcs(None, "")
    names = ("toUpper", "toLower", "title", "match", "reReplaceAll", "safeHtml")
    return {
        **{name: prometheus[name] for name in names},
        "trimSpace": GoFunc(("string",), str.strip),
        "join": GoFunc(("string", ANY), _join),
        "stringSlice": GoFunc(("string",), lambda *s: _strings(s), variadic=True),
        "humanizeDuration": GoFunc((ANY,), humanize_duration),
        "safeUrl": GoFunc(("string",), HTML),
    }


FUNCS = _funcs()

# The defaults, as Alertmanager's default.tmpl names them (shorter bodies); user templates may call them.
# __alertmanagerURL is healwatch's status page. Templates run as Go's text/template: unlike Alertmanager's
# html/template for email html, nothing is escaped unless piped through html, as these defaults do.
DEFAULTS = """\
{{ define "__subject" }}[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] \
{{ .GroupLabels.SortedPairs.Values | join " " }} \
{{ if gt (len .CommonLabels) (len .GroupLabels) }}({{ with .CommonLabels.Remove .GroupLabels.Names }}\
{{ .Values | join " " }}{{ end }}){{ end }}{{ end }}
{{ define "__alertmanagerURL" }}{{ .ExternalURL }}/{{ end }}
{{ define "__text_alert_list" }}{{ range . }}Labels:
{{ range .Labels.SortedPairs }} - {{ .Name }} = {{ .Value }}
{{ end }}Annotations:
{{ range .Annotations.SortedPairs }} - {{ .Name }} = {{ .Value }}
{{ end }}Source: {{ .GeneratorURL }}
{{ end }}{{ end }}
{{ define "email.default.subject" }}{{ template "__subject" . }}{{ end }}
{{ define "email.default.text" }}{{ template "__subject" . }}
{{ if gt (len .Alerts.Firing) 0 }}
{{ .Alerts.Firing | len }} firing:
{{ template "__text_alert_list" .Alerts.Firing }}{{ end }}{{ if gt (len .Alerts.Resolved) 0 }}
{{ .Alerts.Resolved | len }} resolved:
{{ template "__text_alert_list" .Alerts.Resolved }}{{ end }}{{ end }}
{{ define "__html_alert_list" }}{{ range . }}<tr><td style="padding:8px 0;border-top:1px solid #e6e6e6">\
<strong>{{ .Labels.alertname | html }}</strong>{{ with .Annotations.summary }} &mdash; {{ . | html }}{{ end }}<br>\
{{ with .Annotations.description }}{{ . | html }}<br>{{ end }}\
{{ with .Annotations.check_reason }}Why: {{ . | html }}<br>{{ end }}\
<small>{{ range .Labels.SortedPairs }}{{ .Name | html }}={{ .Value | html }} {{ end }}</small>\
{{ with .GeneratorURL }}<br><a href="{{ . | html }}">Source</a>{{ end }}</td></tr>
{{ end }}{{ end }}
{{ define "email.default.html" }}<!DOCTYPE html>
<html><body style="font-family:sans-serif;font-size:14px;margin:0;padding:16px">
<table style="max-width:640px;width:100%;border-collapse:collapse">
<tr><td style="padding:12px;color:#fff;background:{{ if eq .Status "firing" }}#e45959{{ else }}#68b90f{{ end }}">\
{{ if eq .Status "firing" }}{{ .Alerts.Firing | len }} firing{{ else }}Resolved{{ end }}: \
{{ .GroupLabels.SortedPairs.Values | join " " | html }}</td></tr>
{{ if gt (len .Alerts.Firing) 0 }}<tr><td style="padding-top:12px"><strong>Firing</strong></td></tr>
{{ template "__html_alert_list" .Alerts.Firing }}{{ end }}\
{{ if gt (len .Alerts.Resolved) 0 }}<tr><td style="padding-top:12px"><strong>Resolved</strong></td></tr>
{{ template "__html_alert_list" .Alerts.Resolved }}{{ end }}\
<tr><td style="padding-top:12px"><a href="{{ .ExternalURL | html }}/">Open healwatch</a></td></tr>
</table></body></html>{{ end }}
"""


class TemplateError(Exception):
    """A template that does not parse: ``str`` is Go's message; ``line``/``column`` (1-based) are in its text."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


def _parse_into(tree_set: dict[str, Tree], name: str, text: str) -> None:
    try:
        Tree(name, name, text, set(FUNCS) | set(BUILTINS), tree_set).parse_text()
    except ParseError as err:
        before = text.encode()[:err.pos].decode(errors="replace")
        raise TemplateError(err.message, err.line, len(before) - (before.rfind("\n") + 1) + 1) from None
    except RecursionError:
        raise TemplateError(f"template: {name}:1: max expression depth exceeded", 1, 1) from None


def template_files(patterns: Sequence[str]) -> list[Path]:
    """The files the ``templates`` globs match, sorted per glob as Alertmanager reads them."""
    found: list[Path] = []
    for pattern in patterns:
        found.extend(Path(p) for p in sorted(glob.glob(pattern)) if Path(p).is_file())
    return found


class FileTemplateError(Exception):
    """A template file that does not parse; ``str`` is ``FILE:LINE:COL: Go's message``."""


def parse_files(files: Sequence[Path]) -> dict[str, Tree]:
    """The defaults and ``files`` in one set of templates, as Alertmanager reads them; raises FileTemplateError."""
    trees: dict[str, Tree] = {}
    _parse_into(trees, "default.tmpl", DEFAULTS)
    for path in files:
        try:
            _parse_into(trees, path.name, path.read_text())
        except TemplateError as err:
            raise FileTemplateError(f"{path}:{err.line}:{err.column}: {err}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise FileTemplateError(f"{path}: cannot read: {err}") from None
    return trees


def check_text(text: str, name: str) -> None:
    """Parse one receiver text, raising TemplateError where it fails."""
    _parse_into({}, name, text)


# Told of a text that failed at send time: receiver, template name, Go's error.
OnError = Callable[[str, str, str], None]


class TemplateSet:
    """The defaults and the ``templates`` files, parsed once; receivers' texts render against them."""

    def __init__(self, files: Sequence[Path] = (), on_error: OnError = lambda receiver, name, error: None) -> None:
        self.trees = parse_files(files)
        self.on_error = on_error

    def parse(self, receiver: str, field: str, source: str) -> Text:
        """The receiver's ``field`` (title, text, html, a header) parsed; it may call every defined template."""
        trees = dict(self.trees)
        name = f"{receiver}/{field}"
        _parse_into(trees, name, source)
        return Text(self, receiver, name, trees[name])

    def text(self, receiver: str, field: str, source: str | None) -> Text | None:
        """``parse``, or None when the field is not configured."""
        return None if source is None else self.parse(receiver, field, source)

    def named(self, receiver: str, name: str) -> Text:
        """A text that is a defined template, e.g. ``email.default.html``."""
        return Text(self, receiver, name, self.trees[name])


@dataclass(frozen=True)
class Text:
    """One parsed receiver text."""

    templates: TemplateSet
    receiver: str
    name: str
    tree: Tree

    def execute(self, notification: Notification) -> str:
        """The rendered text; raises ExecError when the template fails."""
        return execute(self.tree, FUNCS, BUILTINS, Data(notification))

    def render(self, notification: Notification, fallback: Callable[[], str]) -> str:
        """The rendered text, or ``fallback()`` (logged and counted) when it fails: a notification is never lost."""
        try:
            return self.execute(notification)
        except (ExecError, RecursionError) as err:
            error = str(err)
        except Exception as err:  # noqa: BLE001 - any failure of a user's template falls back, as promised
            error = f"{type(err).__name__}: {err}"
        self.templates.on_error(self.receiver, self.name, error)
        return fallback()


def render(text: Text | None, notification: Notification, default: Callable[[], str]) -> str:
    """``text`` rendered (falling back to ``default`` on failure), or ``default()`` when none is configured."""
    return default() if text is None else text.render(notification, default)
