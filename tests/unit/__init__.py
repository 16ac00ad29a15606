"""Fast tests: no child processes, nothing beyond in-process servers on loopback (well under a minute)."""
