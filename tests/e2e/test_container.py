"""The image built from the repository's Dockerfile, run for real with podman.

The Dockerfile is built as users build it; the test only names a base made from Debian's archive
(no registry is reachable here; tests/containerparts.py says how and why). Each container gets
a network namespace of its own with only loopback (``--network none``), so the agent listens on
0.0.0.0:9877 inside exactly as in production, without touching the host's ports, and the test
asks it from inside with ``podman exec``.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.containers import build_image, image_size_bytes, podman, remove_container
from harness.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

FETCH = (
    "import sys, urllib.request\n"
    "try:\n"
    "    response = urllib.request.urlopen('http://127.0.0.1:9877' + sys.argv[1], timeout=2)\n"
    "    print(response.status); print(response.read().decode())\n"
    "except urllib.error.HTTPError as error:\n"
    "    print(error.code); print(error.read().decode())\n"
)


@pytest.fixture(scope="module")
def image() -> str:
    name, build_s = build_image()
    print(f"\nimage {name}: built in {build_s:.0f} s, {image_size_bytes(name) / 1e6:.0f} MB")
    return name


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Containers and volumes a test creates, removed afterwards whatever happened."""
    created: list[str] = []
    yield created
    for name in created:
        if name.startswith("volume:"):
            podman("volume", "rm", "--force", name.removeprefix("volume:"), check=False)
        else:
            remove_container(name)


def run(image: str, names: list[str], *args: str, options: tuple[str, ...] = ()) -> str:
    name = f"healwatch-test-{uuid.uuid4().hex[:8]}"
    names.append(name)
    podman("run", "--detach", "--name", name, "--network", "none", *options, image, *args)
    return name


def fetch(container: str, path: str) -> tuple[int, str]:
    """GET a path of the agent inside the container, from inside it."""
    result = podman("exec", container, "python", "-c", FETCH, path, check=False)
    if result.returncode != 0:
        return 0, result.stderr
    status, _, body = result.stdout.partition("\n")
    return int(status), body


def host_metrics(container: str) -> str | None:
    """/metrics once it holds the host collection."""
    status, body = fetch(container, "/metrics")
    return body if status == 200 and "node_cpu_seconds_total" in body else None


def ready(container: str) -> bool:
    return fetch(container, "/-/ready")[0] == 200


def test_image_runs_as_10001_and_serves_host_metrics_on_all_addresses(image: str, names: list[str]) -> None:
    """With no arguments the built-in config runs as uid 10001, ready and serving node_* metrics on 0.0.0.0:9877."""
    started = time.monotonic()
    container = run(image, names)
    wait_for(lambda: ready(container), timeout_s=30, interval_s=0.2)
    print(f"\ncontainer start -> /-/ready 200: {time.monotonic() - started:.1f} s")
    assert podman("exec", container, "id", "-u").stdout.strip() == "10001"
    # Ready means /metrics is rendered; the first host collection lands within a second or so.
    metrics = str(wait_for(lambda: host_metrics(container), timeout_s=10, interval_s=0.2))
    assert "node_memory_MemAvailable_bytes" in metrics
    # 0.0.0.0:9877 (hex 2695) listening (state 0A) in the container's own network namespace.
    assert " 00000000:2695 00000000:0000 0A " in podman("exec", container, "cat", "/proc/net/tcp").stdout
    config = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"][:3] == ["tini", "-s", "--"]


def test_mounted_config_is_used_with_c(image: str, names: list[str], tmp_path: Path) -> None:
    """A config mounted read-only and passed with -c is the one the agent runs (its service appears)."""
    config = tmp_path / "agent.yaml"
    config.write_text(
        "state_path: /var/lib/healwatch/healwatch.db\n"
        "services:\n  self:\n    checks:\n      - {name: port, tcp: {address: '127.0.0.1:9877'}, interval: 1s}\n"
    )
    config.chmod(0o644)
    container = run(image, names, "-c", "/etc/healwatch/agent.yaml",
                    options=("--volume", f"{config}:/etc/healwatch/agent.yaml:ro,Z", "--read-only"))
    wait_for(lambda: fetch(container, "/-/ready/self")[0] == 200, timeout_s=30, interval_s=0.2)
    wait_for(lambda: 'probe_success{check="port",service="self"} 1' in fetch(container, "/metrics")[1],
             timeout_s=10, interval_s=0.2)


def test_healthcheck_passes(image: str, names: list[str]) -> None:
    """The image's HEALTHCHECK command succeeds on a running agent (podman healthcheck run)."""
    container = run(image, names)
    wait_for(lambda: ready(container), timeout_s=30, interval_s=0.2)
    result = podman("healthcheck", "run", container, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sigterm_stops_it_within_two_seconds_through_tini(image: str, names: list[str]) -> None:
    """`podman stop` (SIGTERM to tini, forwarded to the agent) ends the container cleanly in under 2 s."""
    container = run(image, names)
    wait_for(lambda: ready(container), timeout_s=30, interval_s=0.2)
    processes = podman("exec", container, "cat", "/proc/1/comm").stdout.strip()
    assert processes == "tini"
    started = time.monotonic()
    podman("stop", "--time", "10", container)
    stop_s = time.monotonic() - started
    print(f"\npodman stop: {stop_s:.2f} s")
    assert stop_s < 2.0
    state = json.loads(podman("inspect", container).stdout)[0]["State"]
    assert state["ExitCode"] == 0  # the agent exited by itself; it was not killed after the grace period


def test_state_volume_keeps_alert_state_and_outbox_across_a_restart(image: str, names: list[str], tmp_path: Path) -> None:
    """An alert pending in `for` and an undeliverable notification both survive a container restart on the volume."""
    volume = f"healwatch-test-{uuid.uuid4().hex[:8]}"
    names.append(f"volume:{volume}")
    podman("volume", "create", volume)
    rules = tmp_path / "always.rules.yaml"
    rules.write_text(
        "groups:\n  - name: always\n    interval: 1s\n    rules:\n"
        "      - alert: AlwaysFiring\n        expr: vector(1)\n        for: 1h\n"
        "      - alert: FiringNow\n        expr: vector(1)\n"
    )
    config = tmp_path / "agent.yaml"
    config.write_text(
        "state_path: /var/lib/healwatch/healwatch.db\n"
        "rule_files: ['*.rules.yaml']\n"
        "default_rules: false\n"
        "evaluation: {for_grace_period: 1m}\n"
        "notify:\n  receivers:\n    - name: nowhere\n      webhook: {url: 'http://127.0.0.1:9/hook'}\n"
        "  route: {receiver: nowhere, group_wait: 0s}\n"
    )
    for path in (rules, config):
        path.chmod(0o644)
    tmp_path.chmod(0o755)  # the agent's uid reads the mounted directory
    options = ("--volume", f"{volume}:/var/lib/healwatch", "--volume", f"{tmp_path}:/etc/healwatch:ro,Z")
    container = run(image, names, "-c", "/etc/healwatch/agent.yaml", options=options)

    def alert_state() -> dict[str, dict[str, Any]]:
        status, body = fetch(container, "/api/v1/alerts")
        assert status == 200, body
        return {alert["labels"]["alertname"]: alert for alert in json.loads(body)["data"]["alerts"]}

    def outbox_pending() -> float:
        for line in fetch(container, "/metrics")[1].splitlines():
            if line.startswith("healwatch_outbox_pending") and not line.startswith("#"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def active_at() -> float:
        stamp = str(alert_state()["AlwaysFiring"]["activeAt"])
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()

    wait_for(lambda: "AlwaysFiring" in alert_state() and outbox_pending() >= 1, timeout_s=30, interval_s=0.3)
    pending_before = time.time() - active_at()
    time.sleep(max(0.0, 3.0 - pending_before))  # pending long enough that a fresh start would show
    restarted_at = time.time()
    podman("restart", "--time", "10", container)
    wait_for(lambda: ready(container), timeout_s=30, interval_s=0.2)
    wait_for(lambda: "AlwaysFiring" in alert_state(), timeout_s=30, interval_s=0.3)
    wait_for(lambda: "alert state restored" in podman("logs", container).stderr, timeout_s=10, interval_s=0.3)
    # Prometheus' restore: the time pending before the restart still counts (the downtime does not),
    # so the alert's active-since lies before the restart; a fresh start would put it after.
    assert active_at() < restarted_at
    assert outbox_pending() >= 1  # the undelivered notification is still queued
