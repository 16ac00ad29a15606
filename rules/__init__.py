"""Series and rules: everything between the samples collectors take and the alerts notifiers send.

- The data: ``model`` (samples, labels), ``window`` (one series' samples in numpy buffers),
  ``store`` (the in-memory series store), ``matchers``, ``durations``.
- The rules: ``rulefile`` and ``yamlfile`` (Prometheus rule files, every error positioned),
  ``group`` (evaluating a rule group at a time), ``alerting`` (the alert state machine),
  ``persistence`` (alert state kept across restarts), ``unittest`` (promtool-format rule tests).
- ``promql/``: the PromQL subset -- lexer, parser, printer and evaluator with Prometheus 3 semantics.
- ``template/``: alert label and annotation templates, rendered as Prometheus renders them.
- ``golang/``: what Go's standard library does that Prometheus' output depends on (fmt and
  strconv's value formatting, RE2 regular expressions, time.Time), so both of the above match it.
- ``errors``: positioned errors, importing nothing.
"""
