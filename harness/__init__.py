"""Real parts the tests and the benchmarks share: child processes, HTTP servers and stores on loopback.

Not shipped: no package under agent/, rules/, healers/ or exporters/ imports it, and it never
imports tests/ (tests/unit/test_architecture.py checks both).

- ``processes``: find a real program (or skip), a free port, wait for a condition, stop a child.
- ``agent``: ``healwatch run`` and the example web service as child processes.
- ``receivers``: an HTTP server that records what notifiers send.
- ``endpoints``: loopback endpoints that hang, trickle or send 50 MB.
- ``stores``: throwaway redis-server and etcd, and their pytest fixtures.
- ``fleet``: agents beside their services in one fleet group, and how to read their heals.
"""
