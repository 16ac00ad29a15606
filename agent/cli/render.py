"""How the commands that call a running agent print its answers: tables and one-line summaries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO


def render_status(data: dict[str, Any], out: TextIO) -> None:
    """The services' table, then why each failing part fails and what holds healing back, then the alerts."""
    rows = [("SERVICE", "READY", "PROCESS", "CHECKS", "SCRAPE", "HEALING")]
    notes: list[str] = []
    for name, service in sorted(data["services"].items()):
        process = service["process"]
        proc = "-" if process is None else (f"up pid {process['pid']}" if process["up"] else "down")
        checks = ", ".join(
            f"{c['name']} {'ok' if c['healthy'] else 'FAILING'}" for c in service["checks"]
        ) or "-"
        scrape = service["scrape"]
        scraped = "-" if scrape is None else ("up" if scrape["up"] else "DOWN")
        ready = {True: "yes", False: "NO", None: "-"}[service["ready"]]
        healing = service.get("healing") or {}
        held = [what for what, key in (("maintenance", "maintenance"), ("traffic cut", "trafficCutBy"),
                                       ("auto-heal suspended", "suspendedReason")) if healing.get(key)]
        rows.append((name, ready, proc, checks, scraped, ", ".join(held) or "-"))
        notes.extend(f"{name}: {note}" for note in _service_notes(service))
    _table(rows, out)
    if notes:
        print(file=out)
    for note in notes:
        print(note, file=out)
    print(file=out)
    alerts = data["alerts"]
    print(plural(len(alerts), "active alert") + (":" if alerts else ""), file=out)
    for alert in alerts:
        print(f"  {_alert_line(alert)}", file=out)
    for what in ("config", "rules"):
        for problem in data[what]["errors"]:
            print(f"{what} error: {problem}", file=out)


def _service_notes(service: dict[str, Any]) -> list[str]:
    """Why a check or the scrape fails, and what holds healing back, each in a line of its own."""
    notes = []
    for check in service["checks"]:
        if not check["healthy"]:
            reason = check["agentError"] or check["lastError"] or "no result yet"
            notes.append(f"check {check['name']} failing ({plural(check['consecutiveFailures'], 'failure')} "
                         f"in a row): {reason}")
    scrape = service["scrape"]
    if scrape is not None and not scrape["up"]:
        notes.append(f"scrape down: {scrape['lastError']}")
    healing = service.get("healing") or {}
    if healing.get("maintenance"):
        notes.append("in maintenance: no healing, alerts silenced")
    if healing.get("trafficCutBy"):
        notes.append(f"out of rotation: traffic cut by incident {healing['trafficCutBy']}")
    if healing.get("suspendedReason"):
        notes.append(f"auto-heal suspended: {healing['suspendedReason']} (`healwatch heal reset` lifts it)")
    return notes


def render_alerts(data: dict[str, Any], out: TextIO) -> None:
    alerts = data["alerts"]
    if not alerts:
        print("no active alerts", file=out)
    for alert in alerts:
        print(_alert_line(alert), file=out)


def render_reload(data: dict[str, Any], out: TextIO) -> None:
    print("reloaded", file=out)


def render_incidents(data: dict[str, Any], out: TextIO) -> None:
    if "incidents" not in data:
        _incident_detail(data, out)
        return
    if not data["incidents"]:
        print("no incidents", file=out)
        return
    rows = [("ID", "SERVICE", "PLAYBOOK", "OUTCOME", "STARTED", "TOOK", "TRIGGER")]
    for incident in data["incidents"]:
        outcome = incident["outcome"] + (" (dry run)" if incident["dryRun"] else "")
        rows.append((incident["id"], incident["service"], incident["playbook"], outcome, incident["startedAt"],
                     seconds(incident["durationSeconds"]), incident["trigger"]))
    _table(rows, out)


def render_reset(data: dict[str, Any], out: TextIO) -> None:
    print(f"auto-healing of {data['service']} reset", file=out)


def render_traffic(data: dict[str, Any], out: TextIO) -> None:
    print(f"traffic of {data['service']} {data['traffic']}: {data['detail']}", file=out)


def render_maintenance(data: dict[str, Any], out: TextIO) -> None:
    print(f"maintenance of {data['service']} {'on' if data['maintenance'] else 'off'}", file=out)


def render_silence_added(data: dict[str, Any], out: TextIO) -> None:
    print(data["silenceID"], file=out)


def render_silences(data: dict[str, Any], out: TextIO) -> None:
    if not data["silences"]:
        print("no silences", file=out)
        return
    rows = [("ID", "STATE", "ENDS", "MATCHERS", "CREATED BY", "COMMENT")]
    for silence in data["silences"]:
        matchers = ", ".join(
            m["name"] + {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}[
                (m["isRegex"], m["isEqual"])] + json.dumps(m["value"])
            for m in silence["matchers"]
        )
        rows.append((silence["id"], silence["status"]["state"], silence["endsAt"], matchers,
                     silence["createdBy"] or "-", silence["comment"] or "-"))
    _table(rows, out)


def render_notify_test(data: dict[str, Any], out: TextIO) -> None:
    """Each test notification's last answer, then every attempt the receiver answered."""
    for notification in data["notifications"]:
        attempts = notification["attempts"]
        if not notification["final"]:
            verdict = "no final answer yet; the outbox keeps retrying"
        else:
            verdict = attempts[-1]["outcome"] + _answer(attempts[-1])
        print(f"{notification['status']} -> {data['receiver']}: {verdict}", file=out)
        for number, attempt in enumerate(attempts, start=1):
            print(f"  attempt {number}: {attempt['outcome']}{_answer(attempt)}", file=out)


def _answer(attempt: dict[str, Any]) -> str:
    if attempt["detail"]:
        return f" ({attempt['detail']})"  # a refusal's detail starts with its HTTP status
    return f" (HTTP {attempt['httpStatus']})" if attempt["httpStatus"] is not None else ""


def _incident_detail(incident: dict[str, Any], out: TextIO) -> None:
    dry = " (dry run)" if incident["dryRun"] else ""
    print(f"incident {incident['id']}: {incident['service']} / {incident['playbook']} {incident['outcome']}{dry}",
          file=out)
    print(f"  trigger: {incident['trigger']}", file=out)
    print(f"  started {incident['startedAt']}, took {seconds(incident['durationSeconds'])}", file=out)
    if incident["detail"]:
        print(f"  detail: {incident['detail']}", file=out)
    print_steps(incident["steps"], out)


def print_steps(steps: list[dict[str, Any]], out: TextIO) -> None:
    for step in steps:
        line = f"  {step['index'] + 1}. {step['action']:<18} {step['result']:<8} {seconds(step['durationSeconds'])}"
        print(line + (f"  {step['error']}" if step["error"] else ""), file=out)
        if step.get("attachment"):
            print("     evaluations:" if step["action"].startswith("verify") else
                  f"     captured output ({len(step['attachment'].encode())} bytes):", file=out)
            for text in step["attachment"].splitlines():
                print(f"     | {text}", file=out)


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def plural(count: int, noun: str) -> str:
    """``1 active alert``, ``2 active alerts``."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _alert_line(alert: dict[str, Any]) -> str:
    """State, name, labels and since when; then whether its notifications are muted, and the summary."""
    labels = dict(alert["labels"])
    name = labels.pop("alertname", "?")
    rest = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    muted = (["maintenance"] if alert.get("maintenance") else []) + (
        ["silenced by " + ", ".join(alert["silencedBy"])] if alert.get("silencedBy") else [])
    summary = alert["annotations"].get("summary", "")
    return (f"{alert['state'].upper():8} {name} {{{rest}}} since {alert['activeAt']}"
            + (f" [{'; '.join(muted)}]" if muted else "") + (f": {summary}" if summary else ""))


def _table(rows: Sequence[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)
