"""Series model, in-memory windows and (later) the PromQL-subset rule engine."""
