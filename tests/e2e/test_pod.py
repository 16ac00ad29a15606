"""deploy/kubernetes/ run for real with `podman kube play`: the example app and healwatch in one pod
sharing its process namespace, broken three ways and healed.

What differs from a cluster, and why (deploy/README.md says the same):
- The manifests are played as they are, with four test-only rewrites: one replica, the web
  container's ``python:3.11-slim`` replaced by the Debian-made base (no registry here), no
  ``ports:`` (podman 4.3 turns them into host port mappings, which need a network), and the
  Secret played first (podman stores it before a pod can mount it). service.yaml is not played:
  a Service needs a cluster.
- podman 4.3 ignores ``readinessProbe`` and runs no probe without systemd, so the test asks what
  the kubelet would ask: the web container's readinessProbe (path and port from the manifest),
  sent from inside the pod.
- The pod gets a network namespace of its own with only loopback (``--network none``): its 8080
  and 9877 touch no host port, and nothing leaves the machine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.containers import base_image, build_image, podman
from harness.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
POD = "web-pod-0"  # podman names a Deployment's pod <name>-pod-<n>
WEB, HEALWATCH = f"{POD}-web", f"{POD}-healwatch"
VOLUMES = ("healwatch-api-token", "healwatch-config", "webapp", "state", "tmp")  # kube play names them so

GET = (
    "import sys, urllib.request, urllib.error\n"
    "request = urllib.request.Request(sys.argv[2], method=sys.argv[1])\n"
    "try:\n"
    "    response = urllib.request.urlopen(request, timeout=3)\n"
    "    print(response.status); print(response.read().decode())\n"
    "except urllib.error.HTTPError as error:\n"
    "    print(error.code); print(error.read().decode())\n"
)
# The app's processes as seen from healwatch's container; with "kill" as argument, SIGKILLed too.
APP_PROCESSES = (
    "import os, signal, sys\n"
    "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try:\n"
    "        cmdline = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')\n"
    "    except OSError:\n"
    "        continue\n"
    "    if b'/app/app.py' in cmdline:\n"
    "        print(pid)\n"
    "        if sys.argv[1:] == ['kill']:\n"
    "            os.kill(int(pid), signal.SIGKILL)\n"
)


def _documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((KUBERNETES / name).read_text()) if doc]


def _down(secret_file: Path, pod_file: Path) -> None:
    podman("kube", "down", str(pod_file), check=False, timeout_s=60)
    podman("pod", "rm", "--force", "--time", "0", POD, check=False)
    podman("volume", "rm", "--force", *VOLUMES, check=False)
    podman("secret", "rm", "healwatch-api-token", check=False)


@dataclass
class Pod:
    started_at: float
    timings: dict[str, float] = field(default_factory=dict)

    def request(self, container: str, method: str, url: str) -> tuple[int, str]:
        """An HTTP request from inside one of the pod's containers (they share the pod's network)."""
        result = podman("exec", container, "python3", "-c", GET, method, url, check=False)
        if result.returncode != 0:
            return 0, result.stderr
        status, _, body = result.stdout.partition("\n")
        return int(status), body

    def healwatch(self, path: str) -> tuple[int, str]:
        return self.request(HEALWATCH, "GET", f"http://127.0.0.1:9877{path}")

    def kubelet_sees_web_ready(self) -> bool:
        """The web container's readinessProbe, as the kubelet sends it (an exec failure is a failure too)."""
        (deployment,) = _documents("deployment.yaml")
        (web,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "web"]
        probe = web["readinessProbe"]["httpGet"]
        status, _ = self.request(WEB, "GET", f"http://127.0.0.1:{probe['port']}{probe['path']}")
        return 200 <= status < 400

    def web_restarts(self) -> int:
        return int(podman("inspect", WEB, "--format", "{{.RestartCount}}").stdout.strip())

    def incidents(self) -> list[dict[str, Any]]:
        status, body = self.healwatch("/api/v1/incidents")
        assert status == 200, body
        return list(json.loads(body)["data"]["incidents"])

    def steps(self, incident_id: str) -> list[dict[str, Any]]:
        status, body = self.healwatch(f"/api/v1/incidents/{incident_id}")
        assert status == 200, body
        return list(json.loads(body)["data"]["steps"])


@pytest.fixture(scope="module")
def image() -> str:
    """The repository's image, built once for the module."""
    return build_image()[0]


@pytest.fixture
def pod(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """A fresh pod per test, so no fault waits out the cooldown an earlier test's heal started."""
    base = base_image()
    work = tmp_path_factory.mktemp("kube")
    (deployment,) = _documents("deployment.yaml")
    deployment["spec"]["replicas"] = 1
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        if container["image"] == "python:3.11-slim":
            container["image"] = base
        container.pop("ports")
    secret_file, pod_file = work / "secret.yaml", work / "pod.yaml"
    secret_file.write_text((KUBERNETES / "secret.yaml").read_text())
    pod_file.write_text(yaml.safe_dump_all(
        [*_documents("configmap.yaml"), *_documents("webapp-configmap.yaml"), deployment]))
    _down(secret_file, pod_file)
    podman("kube", "play", str(secret_file))
    started = time.monotonic()
    try:
        podman("kube", "play", "--network", "none", str(pod_file), timeout_s=120)
        yield Pod(started_at=started)
    finally:
        _down(secret_file, pod_file)


def _heal(pod: Pod, before: int, trigger: str) -> dict[str, Any]:
    """Wait for the incident after ``before`` incidents to end, and return it."""
    def ended() -> dict[str, Any] | None:
        incidents = pod.incidents()
        if len(incidents) > before and incidents[0].get("endedAt"):
            return incidents[0]
        return None

    incident = wait_for(ended, timeout_s=120, interval_s=0.5)
    assert isinstance(incident, dict)
    assert incident["outcome"] == "succeeded", incident
    assert trigger in incident["trigger"], incident
    return incident


def test_pod_starts_shares_processes_and_serves(pod: Pod) -> None:
    """Both containers run as uid 10001 in one PID namespace; healwatch sees the app and the kubelet's probe passes."""
    wait_for(lambda: pod.healwatch("/-/ready/web")[0] == 200, timeout_s=60, interval_s=0.5)
    wait_for(pod.kubelet_sees_web_ready, timeout_s=10, interval_s=0.5)
    pod.timings["pod start -> web ready"] = time.monotonic() - pod.started_at
    assert "pid" in podman("pod", "inspect", POD, "--format", "{{.SharedNamespaces}}").stdout
    for container in (WEB, HEALWATCH):
        assert podman("exec", container, "id", "-u").stdout.strip() == "10001"
    # healwatch's container lists the app's process: one process namespace for the pod.
    assert podman("exec", HEALWATCH, "python3", "-c", APP_PROCESSES).stdout.strip()
    wait_for(lambda: 'probe_success{check="alive",service="web"} 1' in pod.healwatch("/metrics")[1],
             timeout_s=20, interval_s=0.5)


def test_sigkilled_app_is_restarted_by_the_runtime_and_the_playbook_follows(pod: Pod) -> None:
    """A SIGKILLed app: the runtime restarts the container, healwatch's playbook (exit seen at once) waits for health, and the journal has it."""
    wait_for(pod.kubelet_sees_web_ready, timeout_s=60, interval_s=0.5)
    before, restarts = len(pod.incidents()), pod.web_restarts()
    killed_at = time.monotonic()
    assert podman("exec", HEALWATCH, "python3", "-c", APP_PROCESSES, "kill").stdout.strip()
    incident = _heal(pod, before, "exited")
    assert incident["playbook"] == "web-exited"
    assert pod.web_restarts() > restarts
    wait_for(pod.kubelet_sees_web_ready, timeout_s=30, interval_s=0.25)
    pod.timings["SIGKILL: kill -> ready again"] = time.monotonic() - killed_at
    pod.timings["SIGKILL: heal"] = incident["durationSeconds"]
    steps = pod.steps(incident["id"])
    assert [step["action"] for step in steps] == ["traffic cut", "wait_healthy", "traffic restore"]
    logs = podman("logs", HEALWATCH).stderr
    assert incident["id"] in logs  # every log line of the run carries its incident id


def test_errors_flip_readiness_then_heal(pod: Pod) -> None:
    """An app answering 500s turns /-/ready/web and the kubelet's probe to failing; the heal restarts it and both recover."""
    wait_for(pod.kubelet_sees_web_ready, timeout_s=60, interval_s=0.5)
    before, restarts = len(pod.incidents()), pod.web_restarts()
    broken_at = time.monotonic()
    assert pod.request(HEALWATCH, "POST", "http://127.0.0.1:8080/control/sick?mode=errors")[0] == 200
    wait_for(lambda: not pod.kubelet_sees_web_ready(), timeout_s=40, interval_s=0.25)
    pod.timings["errors: break -> not ready"] = time.monotonic() - broken_at
    incident = _heal(pod, before, "check web/http failed")
    assert pod.web_restarts() > restarts  # the runtime restarted the container after the app died
    wait_for(pod.kubelet_sees_web_ready, timeout_s=30, interval_s=0.25)
    pod.timings["errors: break -> ready again"] = time.monotonic() - broken_at
    pod.timings["errors: heal"] = incident["durationSeconds"]
    actions = [step["action"] for step in pod.steps(incident["id"])]
    assert actions == ["traffic cut", "restart", "wait_healthy", "traffic restore"]


def test_a_hung_app_is_killed_and_heals(pod: Pod) -> None:
    """A hung app (which ignores SIGTERM) fails its check by timeout; the SIGKILL restart heals it."""
    wait_for(pod.kubelet_sees_web_ready, timeout_s=60, interval_s=0.5)
    before, restarts = len(pod.incidents()), pod.web_restarts()
    broken_at = time.monotonic()
    assert pod.request(HEALWATCH, "POST", "http://127.0.0.1:8080/control/sick?mode=hang")[0] == 200
    wait_for(lambda: not pod.kubelet_sees_web_ready(), timeout_s=40, interval_s=0.25)
    pod.timings["hang: break -> not ready"] = time.monotonic() - broken_at
    incident = _heal(pod, before, "timed out")
    assert pod.web_restarts() > restarts
    wait_for(pod.kubelet_sees_web_ready, timeout_s=30, interval_s=0.25)
    pod.timings["hang: break -> ready again"] = time.monotonic() - broken_at
    pod.timings["hang: heal"] = incident["durationSeconds"]
    print("\n" + "\n".join(f"{name}: {seconds:.1f} s" for name, seconds in pod.timings.items()))
