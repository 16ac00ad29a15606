"""Stopping the real agent: SIGTERM ends it promptly and cleanly, also with a scraper's connection held open."""

from __future__ import annotations

import http.client
import signal
import time
from pathlib import Path

from harness.agent import AgentProcess

# A regression guard, not a timing test: a stop takes ~0.2 s here; before, a stop bounded by timeouts took ~2 s.
STOP_BOUND_S = 3.0


def test_sigterm_ends_a_running_agent_promptly(tmp_path: Path) -> None:
    """A ready agent (host collector on, a keep-alive scrape connection open) exits 0 within 3 s of SIGTERM."""
    config = tmp_path / "agent.yaml"
    config.write_text(f"state_path: {tmp_path / 'state.db'}\n")
    agent = AgentProcess(config, tmp_path)
    try:
        scraper = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=5)
        scraper.request("GET", "/metrics")
        assert scraper.getresponse().read()
        started = time.monotonic()
        agent.signal(signal.SIGTERM)
        assert agent.process.wait(STOP_BOUND_S * 2) == 0
        assert time.monotonic() - started < STOP_BOUND_S
        assert any(line.get("event") == "agent stopped" for line in agent.logs())
        scraper.close()
    finally:
        agent.stop()
