"""The agent's HTTP server: /metrics, health endpoints, the JSON API, the query API and the status page."""
