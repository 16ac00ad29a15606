"""A tiny web service to watch: /health, Prometheus /metrics, and a control endpoint to make it sick.

    python3 examples/webapp/app.py --port 8080 [--pidfile /tmp/web.pid]

POST /control/sick?mode=errors|hang|ok makes /health (and /) fail or hang until set back to ok;
mode=slow answers them after --slow-seconds, mode=leak keeps answering but grows its memory by
--leak-mb-per-second up to --leak-cap-mb, and mode=crash dies at once with SIGKILL. A hung process
ignores SIGTERM too, as stuck ones often do, so whatever restarts it has to SIGKILL it. A new process
starts in mode ok. Standard library only, so it runs anywhere healwatch's tests do.

--version-file names a file whose first line is the version to run, read once at start (a "deploy"
writes it and restarts the process); /metrics shows it as webapp_version_info{version}. A version
ending in "-bad" answers a share of the requests to / (--bad-error-share, every n-th one, not at
random) with 500, counted in http_requests_total{code="500"}; /health keeps answering 200, as a
shallow health check of a bad release does.
"""

from __future__ import annotations

import argparse
import bisect
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

MODES = ("ok", "errors", "hang", "slow", "leak", "crash")
# Upper bounds in seconds, as a Prometheus client library's defaults.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HANDLERS = ("/", "/health")
LEAK_CHUNK_BYTES = 1 << 20


class State:
    def __init__(self, slow_s: float, leak_bytes_per_s: float, leak_cap_bytes: int, version: str = "",
                 bad_share: float = 0.0) -> None:
        self.mode = "ok"
        self.version = version
        self.bad_share = bad_share if version.endswith("-bad") else 0.0
        self.served = 0  # requests to / so far, for the bad version's share
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        # (code, handler) -> (observations per bucket, not cumulative, the last one beyond every bound; [sum of seconds])
        self.durations: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
        self.slow_s = slow_s
        self.leak_bytes_per_s = leak_bytes_per_s
        self.leak_cap_bytes = leak_cap_bytes
        self.leaked: list[bytes] = []

    def count(self, code: int, handler: str, seconds: float) -> None:
        with self.lock:
            self.requests[str(code)] = self.requests.get(str(code), 0) + 1
            buckets, total = self.durations.setdefault((str(code), handler), ([0] * (len(BUCKETS) + 1), [0.0]))
            buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
            total[0] += seconds

    def bad_answer(self) -> bool:
        """Whether this request to / gets the bad version's 500: the n-th request fails when the share crosses a whole."""
        with self.lock:
            before, self.served = self.served, self.served + 1
        return int(self.served * self.bad_share) > int(before * self.bad_share)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == "ok":
            self.leaked.clear()

    def leak_forever(self) -> None:
        """While in mode leak, keep touched memory (so it counts as RSS) growing at the set rate, up to the cap."""
        while True:
            time.sleep(LEAK_CHUNK_BYTES / self.leak_bytes_per_s)
            if self.mode == "leak" and len(self.leaked) * LEAK_CHUNK_BYTES < self.leak_cap_bytes:
                self.leaked.append(b"\x01" * LEAK_CHUNK_BYTES)


def metrics_text(state: State) -> bytes:
    with state.lock:
        counts = dict(state.requests)
        durations = {key: (list(buckets), total[0]) for key, (buckets, total) in state.durations.items()}
    lines = ["# HELP http_requests_total Requests served.", "# TYPE http_requests_total counter"]
    lines += [f'http_requests_total{{code="{code}"}} {n}' for code, n in sorted(counts.items())]
    lines += ["# HELP http_request_duration_seconds Time to answer a request.",
              "# TYPE http_request_duration_seconds histogram"]
    for (code, handler), (buckets, total) in sorted(durations.items()):
        labels = f'code="{code}",handler="{handler}"'
        cumulative = 0
        for bound, n in zip(BUCKETS, buckets):
            cumulative += n
            lines.append(f'http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {cumulative}')
        count = sum(buckets)
        lines.append(f'http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {count}')
        lines.append(f"http_request_duration_seconds_sum{{{labels}}} {total}")
        lines.append(f"http_request_duration_seconds_count{{{labels}}} {count}")
    lines += ["# HELP webapp_up Always 1.", "# TYPE webapp_up gauge", "webapp_up 1"]
    if state.version:
        lines += ["# HELP webapp_version_info The version this process runs.", "# TYPE webapp_version_info gauge",
                  f'webapp_version_info{{version="{state.version}"}} 1']
    return ("\n".join(lines) + "\n").encode()


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            if path == "/metrics":
                self._reply(200, metrics_text(state), "text/plain; version=0.0.4; charset=utf-8")
                return
            start = time.monotonic()
            if state.mode == "hang":
                time.sleep(3600)
            if state.mode == "slow":
                time.sleep(state.slow_s)
            code = 500 if state.mode == "errors" or (path == "/" and state.bad_answer()) else 200
            state.count(code, path if path in HANDLERS else "other", time.monotonic() - start)
            self._reply(code, b"ok\n" if code == 200 else b"sick\n", "text/plain")

        def do_POST(self) -> None:
            url = urlparse(self.path)
            mode = parse_qs(url.query).get("mode", ["ok"])[0]
            if url.path != "/control/sick" or mode not in MODES:
                self._reply(404, b"unknown control\n", "text/plain")
                return
            if mode == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
            state.set_mode(mode)
            self._reply(200, f"mode={mode}\n".encode(), "text/plain")

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--pidfile")
    parser.add_argument("--slow-seconds", type=float, default=0.4, help="how long mode=slow takes per request")
    parser.add_argument("--leak-mb-per-second", type=float, default=8.0, help="how fast mode=leak grows memory")
    parser.add_argument("--leak-cap-mb", type=int, default=256, help="mode=leak stops growing here")
    parser.add_argument("--version-file", help="file whose first line is the version to run, read at start")
    parser.add_argument("--bad-error-share", type=float, default=0.25,
                        help="share of requests to / a version ending in -bad answers with 500")
    args = parser.parse_args()
    if args.slow_seconds < 0 or args.leak_mb_per_second <= 0 or args.leak_cap_mb < 0:
        parser.error("--slow-seconds and --leak-cap-mb must be >= 0, --leak-mb-per-second > 0")
    if not 0 <= args.bad_error_share <= 1:
        parser.error("--bad-error-share must be between 0 and 1")
    version = ""
    if args.version_file:
        lines = Path(args.version_file).read_text().splitlines()
        version = lines[0].strip() if lines else ""
    state = State(args.slow_seconds, args.leak_mb_per_second * (1 << 20), args.leak_cap_mb << 20, version,
                  args.bad_error_share)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(state))
    threading.Thread(target=state.leak_forever, name="leak", daemon=True).start()
    if args.pidfile:  # written once the port is ours, so a pidfile always names a serving process
        Path(args.pidfile).write_text(f"{os.getpid()}\n")
    server.daemon_threads = True

    def on_sigterm(signum: int, frame: object) -> None:
        if state.mode != "hang":
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    server.serve_forever()


if __name__ == "__main__":
    main()
