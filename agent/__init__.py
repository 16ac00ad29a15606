"""The composition root: config, collectors, scheduling, state, HTTP server and CLI."""

__version__ = "0.1.0"
