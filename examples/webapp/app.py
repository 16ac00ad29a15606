"""A tiny web service to watch: /health, Prometheus /metrics, and a control endpoint to make it sick.

    python3 examples/webapp/app.py --port 8080 [--pidfile /tmp/web.pid]

POST /control/sick?mode=errors|hang|ok makes /health (and /) fail or hang until set back to ok.
Standard library only, so it runs anywhere healwatch's tests do.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

MODES = ("ok", "errors", "hang")


class State:
    def __init__(self) -> None:
        self.mode = "ok"
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}

    def count(self, code: int) -> None:
        with self.lock:
            self.requests[str(code)] = self.requests.get(str(code), 0) + 1


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            if path == "/metrics":
                self._reply(200, self._metrics(), "text/plain; version=0.0.4; charset=utf-8")
                return
            if state.mode == "hang":
                time.sleep(3600)
            code = 500 if state.mode == "errors" else 200
            state.count(code)
            self._reply(code, b"ok\n" if code == 200 else b"sick\n", "text/plain")

        def do_POST(self) -> None:
            url = urlparse(self.path)
            mode = parse_qs(url.query).get("mode", ["ok"])[0]
            if url.path != "/control/sick" or mode not in MODES:
                self._reply(404, b"unknown control\n", "text/plain")
                return
            state.mode = mode
            self._reply(200, f"mode={mode}\n".encode(), "text/plain")

        def _metrics(self) -> bytes:
            with state.lock:
                counts = dict(state.requests)
            lines = ["# HELP http_requests_total Requests served.", "# TYPE http_requests_total counter"]
            lines += [f'http_requests_total{{code="{code}"}} {n}' for code, n in sorted(counts.items())]
            lines += ["# HELP webapp_up Always 1.", "# TYPE webapp_up gauge", "webapp_up 1"]
            return ("\n".join(lines) + "\n").encode()

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
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(State()))
    if args.pidfile:  # written once the port is ours, so a pidfile always names a serving process
        Path(args.pidfile).write_text(f"{os.getpid()}\n")
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
