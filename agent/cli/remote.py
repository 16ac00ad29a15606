"""CLI commands that talk to a running agent's API: ``status``, ``alerts``, ``reload``, ``incidents``,
``heal``, ``traffic``, ``maintenance``, ``silence`` and ``notify test``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import queue
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TextIO
from urllib.parse import quote, urlencode

from agent.cli.render import (
    print_steps, render_alerts, render_incidents, render_maintenance, render_reload, render_reset,
    render_notify_test, render_silence_added, render_silences, render_status, render_traffic, seconds,
)
from agent.config import DEFAULT_LISTEN
from rules.durations import parse_duration

TIMEOUT_S = 10.0
NOTIFY_TEST_TIMEOUT_S = 45.0  # the agent waits up to 30 s for the receiver's final answers
HEAL_TIMEOUT_S = 900.0  # a manual heal answers when its playbook has finished: restarts and waits included
PROGRESS_POLL_S = 0.5  # how often a running heal's journal is read to show its steps
TOKEN_ENV = "HEALWATCH_TOKEN"
TOKEN_HELP = (f"The API token is read from ${TOKEN_ENV}: every command that changes something needs it, and reads "
              "do too when the agent sets api.auth: all.")
Request = tuple[str, str, "dict[str, Any] | None"]  # method, path, JSON body


class RemoteError(Exception):
    """The agent could not be reached or refused the request; the message says why."""


def add_remote_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("HEALWATCH_URL", f"http://{DEFAULT_LISTEN}"),
                        help="the agent's address (default: $HEALWATCH_URL or %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    parser.epilog = TOKEN_HELP


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register every command that talks to a running agent."""
    for name, method, path, render, help_text in (
        ("status", "GET", "/api/v1/status", render_status, "services, checks and alerts of a running agent"),
        ("alerts", "GET", "/api/v1/alerts", render_alerts, "active alerts of a running agent"),
        ("reload", "POST", "/-/reload", render_reload, "make a running agent re-read its config (token)"),
    ):
        command = commands.add_parser(name, help=help_text)
        add_remote_options(command)
        command.set_defaults(handler=run, request=_fixed(method, path), render=render)

    incidents = commands.add_parser("incidents", help="the healing journal, or one incident with its steps")
    incidents.add_argument("id", nargs="?", metavar="ID")
    incidents.add_argument("--service", help="only this service's incidents")
    incidents.add_argument("--limit", type=int, default=20, help="at most this many (default: %(default)s)")
    add_remote_options(incidents)
    incidents.set_defaults(handler=run, request=_incidents_request, render=render_incidents)

    heal = commands.add_parser("heal", help="run a service's playbook now, or `heal reset SERVICE` (token)",
                               usage="%(prog)s [-h] [--dry-run] [--playbook NAME] [--url URL] [--json] "
                                     "(SERVICE | reset SERVICE)")
    heal.add_argument("target", nargs="+", metavar="SERVICE | reset SERVICE")
    heal.add_argument("--dry-run", action="store_true", help="journal what would be done, touch nothing")
    heal.add_argument("--playbook", metavar="NAME", help="run this playbook of the service (default: its first)")
    add_remote_options(heal)
    heal.set_defaults(handler=_heal(heal))

    traffic = commands.add_parser("traffic", help="take a service out of rotation or put it back (token)")
    traffic.add_argument("op", choices=("cut", "restore"))
    traffic.add_argument("service", metavar="SERVICE")
    add_remote_options(traffic)
    traffic.set_defaults(handler=run, request=lambda a: ("POST", f"/api/v1/traffic/{_segment(a.service)}/{a.op}", None),
                         render=render_traffic)

    maintenance = commands.add_parser("maintenance", help="switch a service's maintenance on or off (token)")
    maintenance.add_argument("service", metavar="SERVICE")
    maintenance.add_argument("state", choices=("on", "off"))
    add_remote_options(maintenance)
    maintenance.set_defaults(
        handler=run, render=render_maintenance,
        request=lambda a: ("POST" if a.state == "on" else "DELETE", f"/api/v1/maintenance/{_segment(a.service)}", None),
    )

    silence = commands.add_parser("silence", help="add, list or expire silences")
    actions = silence.add_subparsers(title="actions", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="mute the alerts all MATCHERs accept (token)")
    add.add_argument("matchers", nargs="+", metavar="MATCHER", help='e.g. alertname="DiskFull" or service=~"web|db"')
    add.add_argument("--duration", type=_duration, default=7200.0, help="how long (default: 2h)")
    add.add_argument("--comment", default="", help="why")
    add.add_argument("--author", default=_user(), help="who (default: your login name)")
    add_remote_options(add)
    add.set_defaults(handler=run, request=_silence_request, render=render_silence_added)
    listing = actions.add_parser("list", help="silences: active, then pending, then expired")
    add_remote_options(listing)
    listing.set_defaults(handler=run, request=_fixed("GET", "/api/v1/silences"), render=render_silences)
    expire = actions.add_parser("expire", help="end a silence now (token)")
    expire.add_argument("id", metavar="ID")
    add_remote_options(expire)
    expire.set_defaults(handler=run, request=lambda a: ("DELETE", f"/api/v1/silences/{_segment(a.id)}", None),
                        render=lambda data, out: print(f"expired silence {data['silenceID']}", file=out))
    add_notify_commands(commands)


def add_notify_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``notify test``."""
    notify = commands.add_parser("notify", help="try notifications")
    actions = notify.add_subparsers(title="actions", metavar="ACTION", required=True)
    test = actions.add_parser("test", help="send a test firing, then resolved, notification to RECEIVER through the "
                                           "running agent's outbox and print what it answered (token)")
    test.add_argument("receiver", metavar="RECEIVER")
    test.add_argument("--labels", nargs="+", default=[], type=_label, metavar="NAME=VALUE",
                      help="labels of the test alert (alertname is HealwatchTestNotification)")
    add_remote_options(test)
    test.set_defaults(handler=notify_test)


def notify_test(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`notify test RECEIVER`: exit 0 when the receiver took both notifications, else 1."""
    body = {"receiver": args.receiver, "labels": dict(args.labels)}
    answered, data = _show(args, out, render_notify_test, "POST", "/api/v1/notify/test", body,
                           timeout_s=NOTIFY_TEST_TIMEOUT_S)
    if not answered:
        return 1
    delivered = all(n["final"] and n["attempts"][-1]["outcome"] == "ok" for n in data["notifications"])
    return 0 if delivered else 1


def call(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None,
    timeout_s: float = TIMEOUT_S,
) -> Any:
    """One API request with an optional JSON body; the token comes from $HEALWATCH_TOKEN. Returns ``data``."""
    token = os.environ.get(TOKEN_ENV, "")
    if method != "GET":
        require_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    import httpx  # here, so that --help and --version start without it

    try:
        response = httpx.request(method, args.url.rstrip("/") + path, headers=headers, json=body, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise RemoteError(f"cannot reach the agent at {args.url}: {exc}") from None
    try:
        answer = response.json()
    except ValueError:
        raise RemoteError(f"{args.url}{path} answered {response.status_code} without JSON") from None
    if answer.get("status") != "success":
        hint = ""
        if response.status_code == 401:
            hint = f" ({TOKEN_ENV} is not the agent's token)" if token else f" (set {TOKEN_ENV})"
        raise RemoteError(f"{response.status_code}: {answer.get('error', 'unknown error')}{hint}")
    return answer["data"]


def require_token() -> None:
    """Refuse before any request when $HEALWATCH_TOKEN is unset: the agent never runs a mutation without it."""
    if not os.environ.get(TOKEN_ENV, ""):
        raise RemoteError(f"this command needs the agent's API token: set {TOKEN_ENV} to the token the agent "
                          f"reads (api.token_file, or the agent's own {TOKEN_ENV})")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run one remote command, printing to ``out`` (default: the current stdout); errors go to stderr, exit 1."""
    answered, _ = _show(args, out, args.render, *args.request(args))
    return 0 if answered else 1


def _show(args: argparse.Namespace, out: TextIO | None, render: Callable[[Any, TextIO], None], *request: Any,
          **options: Any) -> tuple[bool, Any]:
    """Call the agent and print its answer (as JSON with --json); (False, None) once an error went to stderr."""
    out = out or sys.stdout
    try:
        data = call(args, *request, **options)
    except RemoteError as exc:
        print(f"healwatch: {exc}", file=sys.stderr)
        return False, None
    if args.json:
        print(json.dumps(data, indent=2), file=out)
    else:
        render(data, out)
    return True, data


def _heal(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """`heal SERVICE` runs the playbook, printing progress; `heal reset SERVICE` lifts a suspension."""

    def handler(args: argparse.Namespace, out: TextIO | None = None) -> int:
        out = out or sys.stdout
        if len(args.target) == 2 and args.target[0] == "reset":
            if args.dry_run or args.playbook:
                parser.error("--dry-run and --playbook do not apply to `heal reset`")
            args.request = _fixed("POST", f"/api/v1/heal/{_segment(args.target[1])}/reset")
            args.render = render_reset
            return run(args, out)
        if len(args.target) != 1:
            parser.error("expected SERVICE or `reset SERVICE`")
        service = args.target[0]
        try:
            require_token()  # before the progress line: a heal without it cannot start
        except RemoteError as exc:
            print(f"healwatch: {exc}", file=sys.stderr)
            return 1
        if not args.json:
            # Shown before the call: it answers only when the playbook has finished.
            with_playbook = f" with {args.playbook}" if args.playbook else ""
            print(f"healing {service}{with_playbook}{' (dry run)' if args.dry_run else ''}...", file=out, flush=True)
        progress = None if args.json else _HealProgress(args, service, out)
        try:
            data = _heal_request(args, service, progress)
        except RemoteError as exc:
            print(f"healwatch: {exc}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(data, indent=2), file=out)
        else:
            assert progress is not None
            progress.finish(data["steps"])
            print(f"{service}: {data['outcome']} in {seconds(data['durationSeconds'])} (incident {data['id']})"
                  + (f": {data['detail']}" if data["detail"] else ""), file=out)
            if data["trafficLeftCut"]:
                print(f"{service} is still out of rotation", file=out)
        return 0 if data["outcome"] == "succeeded" else 1

    return handler


def _heal_request(args: argparse.Namespace, service: str, progress: _HealProgress | None) -> Any:
    """POST the heal from a thread; meanwhile let ``progress`` poll the journal every ``PROGRESS_POLL_S``.

    The thread is a daemon so that Ctrl-C ends the command at once instead of waiting for the playbook.
    """
    answers: queue.Queue[tuple[Any, RemoteError | None]] = queue.Queue(maxsize=1)

    def request() -> None:
        try:
            body = {"dry_run": args.dry_run, **({"playbook": args.playbook} if args.playbook else {})}
            answers.put((call(args, "POST", f"/api/v1/heal/{_segment(service)}", body,
                              HEAL_TIMEOUT_S), None))
        except RemoteError as exc:
            answers.put((None, exc))

    threading.Thread(target=request, name="heal-request", daemon=True).start()
    while True:
        try:
            data, failure = answers.get(timeout=PROGRESS_POLL_S)
        except queue.Empty:
            if progress is not None:
                progress.poll()
            continue
        if failure is not None:
            raise failure
        return data


class _HealProgress:
    """Prints a running heal's steps from the journal as they finish, each once.

    On a terminal a started step shows as ``running...`` and is overwritten in place when it finishes, so a
    piped output holds exactly one line per step, the same lines whether the heal took a second or ten minutes.
    """

    def __init__(self, args: argparse.Namespace, service: str, out: TextIO) -> None:
        self.args = args
        self.service = service
        self.out = out
        self.live = out.isatty()
        self.incident_id: str | None = None
        try:
            self.before = self._latest_id()  # the incident already newest before this heal: not ours
            self.enabled = True
        except RemoteError:
            self.enabled = False  # without knowing which incident is new, a poll could show an old one
        self.printed = 0  # steps printed as finished
        self.running: int | None = None  # index of the step shown as running (terminal only)

    def poll(self) -> None:
        """Fetch this heal's incident and print what changed; an unreachable journal only skips a beat."""
        if not self.enabled:
            return
        try:
            if self.incident_id is None:
                latest = self._latest_id()
                if latest is None or latest == self.before:
                    return
                self.incident_id = latest
            steps = call(self.args, "GET", f"/api/v1/incidents/{_segment(self.incident_id)}")["steps"]
        except (RemoteError, KeyError, TypeError):
            return
        self._show([step for step in steps if step["endedAt"] is not None])
        current = next((step for step in steps if step["endedAt"] is None), None)
        if self.live and current is not None and current["index"] != self.running:
            self._clear_running()
            self.running = current["index"]
            print(f"  {current['index'] + 1}. {current['action']:<18} running...", end="", file=self.out, flush=True)

    def finish(self, steps: list[dict[str, Any]]) -> None:
        """Print the steps the polls did not show yet, from the heal's final answer."""
        self._show(steps)

    def _show(self, finished: list[dict[str, Any]]) -> None:
        new = finished[self.printed:]
        if not new:
            return
        self._clear_running()
        print_steps(new, self.out)
        self.out.flush()
        self.printed += len(new)

    def _clear_running(self) -> None:
        if self.running is not None:
            print("\r\033[K", end="", file=self.out)
            self.running = None

    def _latest_id(self) -> str | None:
        query = urlencode({"service": self.service, "limit": 1})
        incidents = call(self.args, "GET", f"/api/v1/incidents?{query}")["incidents"]
        return incidents[0]["id"] if incidents else None


def _fixed(method: str, path: str) -> Callable[[argparse.Namespace], Request]:
    return lambda args: (method, path, None)


def _incidents_request(args: argparse.Namespace) -> Request:
    if args.id is not None:
        return "GET", f"/api/v1/incidents/{_segment(args.id)}", None
    query = urlencode({"limit": args.limit, **({"service": args.service} if args.service else {})})
    return "GET", f"/api/v1/incidents?{query}", None


def _silence_request(args: argparse.Namespace) -> Request:
    start = datetime.now(timezone.utc)
    end = start + timedelta(seconds=args.duration)
    return "POST", "/api/v1/silences", {
        "matchers": args.matchers, "startsAt": start.isoformat(), "endsAt": end.isoformat(),
        "createdBy": args.author, "comment": args.comment,
    }


def _label(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _user() -> str:
    """$LOGNAME or $USER, else the name of the process' user: cron jobs and containers often set neither."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # a uid without a passwd entry
        return ""


def _segment(text: str) -> str:
    """``text`` as one path segment: a ``/`` in an id or a service name cannot change the path."""
    return quote(text, safe="")


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
