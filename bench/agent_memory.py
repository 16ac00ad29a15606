"""Agent RSS while it holds 10,000 scraped series at a 15 s interval with 10-minute retention.

    python3 bench/agent_memory.py [--minutes 10] [--series 10000]

Starts a loopback metrics server exposing --series gauges whose values change on
every scrape, runs the real agent (`healwatch run`) scraping it, samples the
agent's RSS every 15 s, and writes bench/results/agent_memory.json.
Target: <= 60 MB after 10 minutes (node_exporter idles at ~20 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil

from harness.processes import free_port

ROOT = Path(__file__).resolve().parent.parent


def serve_series(count: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            lines = ["# TYPE bench_value gauge"]
            lines += [f'bench_value{{shard="{i % 100}",id="{i}"}} {random.random()}' for i in range(count)]
            body = ("\n".join(lines) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--series", type=int, default=10_000)
    args = parser.parse_args()
    target = serve_series(args.series)
    workdir = Path(tempfile.mkdtemp(prefix="healwatch-bench-"))
    port = target.server_address[1]
    config = workdir / "agent.yaml"
    config.write_text(
        "state_path: ':memory:'\nstore: {retention: 10m}\n"
        "services:\n  bench:\n"
        f"    scrape: {{url: 'http://127.0.0.1:{port}/metrics', interval: 15s, timeout: 10s, max_bytes: 67108864}}\n"
    )
    listen = f"127.0.0.1:{free_port()}"
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(config), "--listen", listen, "--log-level", "warning"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    process = psutil.Process(agent.pid)
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(15)
            samples.append((time.monotonic() - started, process.memory_info().rss / 2**20))
            print(f"{samples[-1][0]:6.0f} s  RSS {samples[-1][1]:6.1f} MiB", flush=True)
        metrics = httpx.get(f"http://{listen}/metrics", timeout=10).text
        series = next(float(l.split()[-1]) for l in metrics.splitlines() if l.startswith("healwatch_series "))
    finally:
        agent.terminate()
        agent.wait(10)
        target.shutdown()
    result = {
        "minutes": args.minutes,
        "scraped_series": args.series,
        "series_in_store": series,
        "rss_final_mib": samples[-1][1],
        "rss_max_mib": max(rss for _, rss in samples),
        "target_mib": 60,
        "cores": os.cpu_count(),
        "samples": samples,
    }
    out = ROOT / "bench/results/agent_memory.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"final RSS {result['rss_final_mib']:.1f} MiB, max {result['rss_max_mib']:.1f} MiB "
          f"with {series:.0f} series (target <= 60 MB); written to {out}")


if __name__ == "__main__":
    main()
