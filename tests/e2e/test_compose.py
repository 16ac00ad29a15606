"""deploy/compose/ run as its equivalent pod: Prometheus scrapes healwatch, Alertmanager gets its alerts.

Compose itself cannot run here: its containers find each other by name over a bridge network
(this machine's tests use loopback only) and its Prometheus and Alertmanager images cannot be
pulled (no registry). So the compose file is translated into one pod, run by `podman kube play`
with only loopback: the same commands, environment and mounts (the compose file's own files,
bind-mounted), each service name resolving to 127.0.0.1 (an /etc/hosts mounted into every
container: podman 4.3 ignores ``hostAliases``), named volumes as emptyDirs. Prometheus and
Alertmanager are Debian's binaries (2.42 and 0.25 rather than the pinned v3.5.0 and v0.28.1) with
Alertmanager's templates, mounted into the Debian-made base; Alertmanager runs with clustering
off (``--cluster.listen-address=``), as it finds no private address to gossip on here.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.containers import base_image, build_image, podman
from harness.processes import require_binary, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "compose"
POD = "healwatch-demo"
HEALWATCH = f"{POD}-healwatch"
# What the prom/* images run by default, with the binaries where the pod mounts them.
IMAGE_COMMANDS = {
    "prometheus": ["/usr/local/bin/prometheus", "--config.file=/etc/prometheus/prometheus.yml",
                   "--storage.tsdb.path=/prometheus"],
    "alertmanager": ["/usr/local/bin/alertmanager", "--config.file=/etc/alertmanager/alertmanager.yml",
                     "--storage.path=/alertmanager", "--cluster.listen-address="],
}
DATA_DIRS = {"alertmanager": "/alertmanager"}
ALERTMANAGER_TEMPLATES = "/usr/share/prometheus/alertmanager"  # where Debian's binary looks for them  # the image's writable data directory, an emptyDir here
GET = (
    "import sys, urllib.request\n"
    "print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())\n"
)


def _pod(compose: dict[str, Any], images: dict[str, str], binaries: dict[str, str], hosts: Path) -> dict[str, Any]:
    """The compose project as one Pod manifest; ``hosts`` is mounted as every container's /etc/hosts."""
    containers: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []

    def volume(name: str, source: dict[str, Any]) -> str:
        volumes.append({"name": name, **source})
        return name

    for service, spec in compose["services"].items():
        mounts = []
        for index, entry in enumerate(spec.get("volumes", [])):
            source, target, *mode = entry.split(":")
            if source.startswith("."):
                host_path = (COMPOSE_DIR / source).resolve()
                name = volume(f"{service}-bind-{index}", {"hostPath": {"path": str(host_path)}})
            else:
                name = volume(f"{POD}-{source}", {"emptyDir": {}})
            mounts.append({"name": name, "mountPath": target, "readOnly": mode == ["ro"]})
        mounts.append({"name": volume(f"{service}-hosts", {"hostPath": {"path": str(hosts), "type": "File"}}),
                       "mountPath": "/etc/hosts", "readOnly": True})
        for index, target in enumerate(spec.get("tmpfs", [])):
            name = volume(f"{service}-tmpfs-{index}", {"emptyDir": {"medium": "Memory"}})
            mounts.append({"name": name, "mountPath": target})
        container: dict[str, Any] = {"name": service, "image": images[service], "volumeMounts": mounts}
        if service in IMAGE_COMMANDS:
            binary = volume(f"{service}-binary", {"hostPath": {"path": binaries[service], "type": "File"}})
            mounts.append({"name": binary, "mountPath": IMAGE_COMMANDS[service][0], "readOnly": True})
            container["command"] = IMAGE_COMMANDS[service]
        if service == "alertmanager":
            templates = volume("alertmanager-templates", {"hostPath": {"path": ALERTMANAGER_TEMPLATES}})
            mounts.append({"name": templates, "mountPath": ALERTMANAGER_TEMPLATES, "readOnly": True})
        if service in DATA_DIRS:
            mounts.append({"name": volume(f"{service}-data", {"emptyDir": {}}), "mountPath": DATA_DIRS[service]})
        if "build" in spec:
            container["args"] = spec["command"]  # appended to the image's entrypoint, as in compose
        elif "command" in spec:
            container["command"] = spec["command"]
        if "environment" in spec:
            container["env"] = [{"name": k, "value": str(v).replace("${HEALWATCH_TOKEN:-}", "")}
                                for k, v in spec["environment"].items()]
        if "user" in spec:
            uid, gid = spec["user"].split(":")
            container["securityContext"] = {"runAsUser": int(uid), "runAsGroup": int(gid)}
        containers.append(container)
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD},
        "spec": {"containers": containers, "volumes": volumes},
    }


def _get(url: str) -> Any:
    """GET a JSON URL from inside the pod."""
    return json.loads(podman("exec", HEALWATCH, "python", "-c", GET, url).stdout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[float]:
    image, _ = build_image()
    base = base_image()
    compose = yaml.safe_load((COMPOSE_DIR / "docker-compose.yaml").read_text())
    images = {"web": base, "healwatch": image, "prometheus": base, "alertmanager": base}
    assert set(images) == set(compose["services"]), "a service was added to the compose file"
    binaries = {"prometheus": require_binary("prometheus"),
                "alertmanager": require_binary("prometheus-alertmanager")}
    binaries = {name: str(Path(path).resolve()) for name, path in binaries.items()}
    work = tmp_path_factory.mktemp("compose")
    work.chmod(0o755)
    hosts = work / "hosts"
    hosts.write_text(f"127.0.0.1 localhost {' '.join(compose['services'])}\n")
    hosts.chmod(0o644)
    pod_file = work / "pod.yaml"
    pod_file.write_text(yaml.safe_dump(_pod(compose, images, binaries, hosts)))
    podman("pod", "rm", "--force", "--time", "0", POD, check=False)
    started = time.monotonic()
    try:
        podman("kube", "play", "--network", "none", str(pod_file), timeout_s=120)
        yield started
    finally:
        podman("kube", "down", str(pod_file), check=False, timeout_s=60)
        podman("pod", "rm", "--force", "--time", "0", POD, check=False)
        podman("volume", "rm", "--force", f"{POD}-healwatch-state", f"{POD}-prometheus-data", check=False)


def test_prometheus_scrapes_healwatch(demo: float) -> None:
    """Prometheus' healwatch job is up and has the compose deployment label, and it loaded the same rule files."""
    query = urllib.parse.quote('up{job="healwatch"}')

    def up() -> bool:
        result = _get(f"http://127.0.0.1:9090/api/v1/query?query={query}")["data"]["result"]
        return bool(result) and result[0]["value"][1] == "1" and result[0]["metric"]["deployment"] == "compose-demo"

    wait_for(up, timeout_s=60, interval_s=1)
    print(f"\ncompose pod: Prometheus scraped healwatch {time.monotonic() - demo:.1f} s after the start")
    groups = _get("http://127.0.0.1:9090/api/v1/rules")["data"]["groups"]
    assert {"web"} <= {group["name"] for group in groups}


def test_alertmanager_receives_healwatch_alerts(demo: float) -> None:
    """With the web app answering 500s, healwatch's ServiceCheckFailing reaches Alertmanager with the rule's labels."""
    wait_for(lambda: podman("exec", HEALWATCH, "python", "-c", GET, "http://web:8080/health").returncode == 0,
             timeout_s=60, interval_s=1)
    broken_at = time.monotonic()
    podman("exec", HEALWATCH, "python", "-c",
           "import urllib.request; urllib.request.urlopen(urllib.request.Request("
           "'http://web:8080/control/sick?mode=errors', method='POST'), timeout=3)")

    def received() -> dict[str, Any] | None:
        for alert in _get("http://127.0.0.1:9093/api/v2/alerts"):
            if alert["labels"].get("alertname") == "ServiceCheckFailing":
                return dict(alert)
        return None

    alert = wait_for(received, timeout_s=120, interval_s=1)
    assert isinstance(alert, dict)
    print(f"\ncompose pod: ServiceCheckFailing in Alertmanager {time.monotonic() - broken_at:.1f} s after the break")
    assert alert["labels"]["service"] == "web" and alert["labels"]["severity"] == "critical"
