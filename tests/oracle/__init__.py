"""The same input through healwatch and through Prometheus, promtool, Alertmanager or node_exporter, compared."""
