"""The composition root: config, collectors, scheduling, state, HTTP server and CLI."""
