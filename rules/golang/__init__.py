"""Go's standard library where Prometheus' output depends on it, so PromQL and templates print as Go does.

- ``fmt``: fmt and strconv value formatting (Sprint, Sprintf, FormatFloat, Quote) and the Go-shaped
  values (maps, slices, structs, Stringers) templates print.
- ``regexp``: Go (RE2) regular expressions on top of ``re``: syntax, Go's error messages, ReplaceAll.
- ``time``: Go's time.Time as templates see it (UTC): String(), Format(layout) and its accessors.
- ``yaml``: how gopkg.in/yaml.v3 resolves a plain scalar (YAML 1.2 booleans, Go's numbers), as Prometheus
  reads its rule and test files.

The module names are Go's package names; only absolute imports are used in rules/, so they never
shadow the standard library's ``time`` or ``re``.
"""
