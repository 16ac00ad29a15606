"""Go-typed values that templates see: the alert data, query results, times, HTML."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rules.golang.fmt import GoMap, GoSlice, GoString, GoStruct

MAP_STRING_STRING = "map[string]string"
MAP_STRING_ANY = "map[string]interface {}"
ANY = "interface {}"
REFLECT_VALUE = "reflect.Value"
QUERY_RESULT = "template.queryResult"
SAMPLE_PTR = "*template.sample"
TIME_PTR = "*time.Time"
TIME = "time.Time"
HTML_TYPE = "template.HTML"

# Types that can hold nil (reflect's canBeNil): interfaces, maps, pointers, slices.
NILLABLE = {ANY, REFLECT_VALUE, MAP_STRING_STRING, MAP_STRING_ANY, QUERY_RESULT, SAMPLE_PTR,
            TIME_PTR}


class GoMethods:
    """A value whose Go type has methods templates call (Alertmanager's ``KV.SortedPairs``, ``Alerts.Firing``)."""

    def method(self, name: str) -> tuple[list[str], Callable[..., object]] | None:
        """The method ``name`` as (parameter types, implementation), or None when the type has none of that name."""
        return None


class Missing:
    """Go's missingVal: no value has been piped into this command."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING = Missing()


class NilInterface:
    """A nil ``interface {}`` read from a map: unlike an absent value, it has a type."""

    go_type = ANY

    def __repr__(self) -> str:
        return "<nil interface>"


NIL_INTERFACE = NilInterface()


@dataclass(frozen=True)
class QuerySample:
    """One element of a query result handed to templates: its labels and value."""

    labels: dict[str, str] = field(default_factory=dict)
    value: float = 0.0


def string_map(items: dict[str, str] | None) -> GoMap:
    return GoMap(dict(items or {}), go_type=MAP_STRING_STRING, elem_zero="")


class SamplePtr(GoStruct):
    """A ``*template.sample``: what ``query`` returns elements of."""

    go_type = SAMPLE_PTR
    is_pointer = True

    def __init__(self, sample: QuerySample) -> None:
        self.labels = string_map(sample.labels)
        self.value = float(sample.value)

    def go_fields(self) -> list[tuple[str, object]]:
        return [("Labels", self.labels), ("Value", self.value)]

    def field(self, name: str) -> tuple[bool, object]:
        if name == "Labels":
            return True, self.labels
        if name == "Value":
            return True, self.value
        return False, None


class QueryResult(GoSlice):
    """``template.queryResult``: a slice of sample pointers."""

    def __init__(self, items: list[SamplePtr] | tuple[SamplePtr, ...] = ()) -> None:
        super().__init__(items, go_type=QUERY_RESULT)


class AlertData(GoStruct):
    """The dot of an alert template: Labels, ExternalLabels, ExternalURL and Value."""

    go_type = ("struct { Labels map[string]string; ExternalLabels map[string]string; "
               "ExternalURL string; Value interface {} }")

    def __init__(self, labels: dict[str, str], external_labels: dict[str, str],
                 external_url: str, value: float) -> None:
        self.fields: dict[str, object] = {
            "Labels": string_map(labels),
            "ExternalLabels": string_map(external_labels),
            "ExternalURL": external_url,
            "Value": float(value),
        }

    def go_fields(self) -> list[tuple[str, object]]:
        return list(self.fields.items())

    def field(self, name: str) -> tuple[bool, object]:
        if name in self.fields:
            return True, self.fields[name]
        return False, None


class HTML(GoString):
    """``html/template.HTML`` as returned by ``safeHtml``."""

    go_type = HTML_TYPE
