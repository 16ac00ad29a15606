"""Run the real agent and the example web service as child processes for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from harness.processes import free_port, stop, wait_for

ROOT = Path(__file__).resolve().parent.parent


class AgentProcess:
    """``healwatch run`` in a child process, its JSON log lines captured to a file."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "agent.log"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "-c", str(config), "--listen", f"127.0.0.1:{self.port}",
             "--log-level", "debug"],
            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=self.log_path.open("wb"),
        )
        wait_for(lambda: httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200, timeout_s=15)

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=2).text

    def value(self, series: str) -> float | None:
        """The value of one exposed series, e.g. ``healwatch_process_up{service="web"}``."""
        for line in self.metrics().splitlines():
            name, _, value = line.rpartition(" ")
            if name == series:
                return float(value)
        return None

    def logs(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def stop(self) -> None:
        stop(self.process)


class WebApp:
    """The example web service on a free loopback port, writing its pidfile."""

    def __init__(self, pidfile: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "examples/webapp/app.py"), "--port", str(self.port), "--pidfile", str(pidfile)]
        )
        wait_for(lambda: httpx.get(f"{self.url}/health", timeout=1).status_code == 200)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(5)

    def stop(self) -> None:
        stop(self.process)
