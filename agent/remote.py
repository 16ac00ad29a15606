"""CLI commands that talk to a running agent's API: ``status``, ``alerts``, ``reload``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

import httpx

from agent.config import DEFAULT_LISTEN

TIMEOUT_S = 10.0


class RemoteError(Exception):
    """The agent could not be reached or refused the request; the message says why."""


def add_remote_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("HEALWATCH_URL", f"http://{DEFAULT_LISTEN}"),
                        help="the agent's address (default: $HEALWATCH_URL or http://%(default)s)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")


def call(args: argparse.Namespace, method: str, path: str) -> Any:
    """One API request; the token comes from $HEALWATCH_TOKEN. Returns the response's ``data``."""
    token = os.environ.get("HEALWATCH_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(method, args.url.rstrip("/") + path, headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise RemoteError(f"cannot reach the agent at {args.url}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        raise RemoteError(f"{args.url}{path} answered {response.status_code} without JSON") from None
    if body.get("status") != "success":
        raise RemoteError(f"{response.status_code}: {body.get('error', 'unknown error')}")
    return body["data"]


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run one remote command; errors go to stderr with exit code 1."""
    try:
        data = call(args, args.method, args.path)
    except RemoteError as exc:
        print(f"healwatch: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2), file=out)
    else:
        args.render(data, out)
    return 0


def render_status(data: dict[str, Any], out: TextIO) -> None:
    rows = [("SERVICE", "READY", "PROCESS", "CHECKS", "SCRAPE")]
    for name, service in sorted(data["services"].items()):
        process = service["process"]
        proc = "-" if process is None else (f"up pid {process['pid']}" if process["up"] else "down")
        checks = ", ".join(
            f"{c['name']} {'ok' if c['healthy'] else 'FAILING'}" for c in service["checks"]
        ) or "-"
        scrape = service["scrape"]
        scraped = "-" if scrape is None else ("up" if scrape["up"] else "DOWN")
        ready = {True: "yes", False: "NO", None: "-"}[service["ready"]]
        rows.append((name, ready, proc, checks, scraped))
    _table(rows, out)
    print(file=out)
    alerts = data["alerts"]
    print(f"{len(alerts)} active alerts" + (":" if alerts else ""), file=out)
    for alert in alerts:
        print(f"  {_alert_line(alert)}", file=out)
    for what in ("config", "rules"):
        for problem in data[what]["errors"]:
            print(f"{what} error: {problem}", file=out)


def render_alerts(data: dict[str, Any], out: TextIO) -> None:
    alerts = data["alerts"]
    if not alerts:
        print("no active alerts", file=out)
    for alert in alerts:
        print(_alert_line(alert), file=out)


def render_reload(data: dict[str, Any], out: TextIO) -> None:
    print("reloaded", file=out)


def _alert_line(alert: dict[str, Any]) -> str:
    labels = dict(alert["labels"])
    name = labels.pop("alertname", "?")
    rest = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    summary = alert["annotations"].get("summary", "")
    return f"{alert['state'].upper():8} {name} {{{rest}}} since {alert['activeAt']}" + (f": {summary}" if summary else "")


def _table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)
