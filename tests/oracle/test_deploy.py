"""The deployment examples: Kubernetes manifests against the API schema, compose files against their tools.

No container engine or cluster runs here: the manifests are checked with kubernetes-validate's
bundled OpenAPI schemas (strict: unknown fields are errors), the embedded healwatch config and
rules with healwatch's own parsers, and the compose stack's Prometheus and Alertmanager configs
with promtool and amtool on the file tree the compose mounts would produce.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agent.config import AgentConfig, parse_config
from rules.rulefile import parse_rules
from harness.processes import require_binary

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yaml"
# The oldest Kubernetes minor still widely run and the newest whose schema kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.30", "1.37")
TOOL_TIMEOUT_S = 10


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc)
        for path in sorted(KUBERNETES.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


MANIFESTS = _manifests()


def _one(kind: str, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        doc for _, doc in MANIFESTS if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} named {name!r}, found {len(found)}"
    return found[0]


def _pod_spec() -> dict[str, Any]:
    template: dict[str, Any] = _one("Deployment", "web")["spec"]["template"]
    return template


def _container(name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in _pod_spec()["spec"]["containers"] if c["name"] == name]
    (container,) = found
    return container


def _mount_path(container: dict[str, Any], volume: str) -> str:
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume]
    return str(mount["mountPath"])


def _healwatch_configmap() -> dict[str, str]:
    return dict(_one("ConfigMap", "healwatch-config")["data"])


def _kubernetes_agent_config() -> AgentConfig:
    return parse_config(_healwatch_configmap()["agent.yaml"], "configmap.yaml:agent.yaml")


def _dockerfile_entrypoint() -> list[str]:
    match = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "Dockerfile has no exec-form ENTRYPOINT"
    return list(yaml.safe_load(match.group(1)))


def test_manifests_are_found() -> None:
    """The manifest directory holds the Deployment, the Service, both ConfigMaps and the Secret."""
    kinds = sorted(doc["kind"] for _, doc in MANIFESTS)
    assert kinds == ["ConfigMap", "ConfigMap", "Deployment", "Secret", "Service"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("name", "manifest"), MANIFESTS, ids=[name for name, _ in MANIFESTS])
def test_manifest_validates_against_kubernetes_schema(name: str, manifest: dict[str, Any], version: str) -> None:
    """Every manifest is valid for the stated Kubernetes version, unknown fields included."""
    try:
        validated = kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(part) for part in exc.absolute_path)
        pytest.fail(f"{name} is invalid for Kubernetes {version} at {where}: {exc.message}")
    assert validated == version


def test_schema_check_rejects_a_misspelt_field() -> None:
    """The strict schema check fails a Deployment with a typo, so the validation above has teeth."""
    deployment = yaml.safe_load((KUBERNETES / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    pod["shareProcessNamespaces"] = pod.pop("shareProcessNamespace")
    with pytest.raises(kubernetes_validate.ValidationError, match="shareProcessNamespaces"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_pod_shares_processes_and_is_scraped() -> None:
    """The pod shares its PID namespace and carries Prometheus scrape annotations for healwatch's /metrics."""
    template = _pod_spec()
    assert template["spec"]["shareProcessNamespace"] is True
    port = _container("healwatch")["ports"][0]["containerPort"]
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }


def test_app_readiness_asks_healwatch() -> None:
    """The app's readinessProbe hits /-/ready/{service} on the port the image's entrypoint listens on."""
    probe = _container("web")["readinessProbe"]["httpGet"]
    entrypoint = _dockerfile_entrypoint()
    listen = entrypoint[entrypoint.index("--listen") + 1]
    assert listen.startswith("0.0.0.0:")
    assert probe["port"] == int(listen.rsplit(":", 1)[1]) == _container("healwatch")["ports"][0]["containerPort"]
    service = probe["path"].removeprefix("/-/ready/")
    assert probe["path"].startswith("/-/ready/") and service in _kubernetes_agent_config().services


def test_containers_run_locked_down_as_the_image_user() -> None:
    """Both containers run as the Dockerfile's uid (needed to signal across containers), read-only and without capabilities."""
    pod = _pod_spec()["spec"]
    uid = re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text())
    assert uid and pod["securityContext"]["runAsUser"] == int(uid.group(1))
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert "requests" in container["resources"] and "limits" in container["resources"]


def test_every_mount_and_reference_resolves() -> None:
    """Every volumeMount names a pod volume, and every ConfigMap and Secret a volume uses is in the manifests."""
    pod = _pod_spec()["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for container in pod["containers"]:
        for mount in container["volumeMounts"]:
            assert mount["name"] in volumes, f"{container['name']} mounts unknown volume {mount['name']}"
    for volume in volumes.values():
        if "configMap" in volume:
            _one("ConfigMap", volume["configMap"]["name"])
        if "secret" in volume:
            _one("Secret", volume["secret"]["secretName"])
    service = _one("Service", "web")
    assert service["spec"]["selector"] == _pod_spec()["metadata"]["labels"]
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in _container("web")["ports"]}


def test_configmap_config_is_valid_and_wired_to_the_pod() -> None:
    """The embedded agent.yaml parses and points at the pod's state volume, token Secret and web process."""
    config = _kubernetes_agent_config()
    healwatch = _container("healwatch")
    assert Path(config.state_path).parent == Path(_mount_path(healwatch, "state"))
    assert config.api.token_file is not None
    assert Path(config.api.token_file).parent == Path(_mount_path(healwatch, "api-token"))
    assert Path(config.api.token_file).name in _one("Secret", "healwatch-api-token")["data"]
    assert healwatch["args"] == ["-c", f"{_mount_path(healwatch, 'config')}/agent.yaml"]
    web = config.services["web"]
    assert web.process is not None and web.process.name == _container("web")["command"][0]
    assert web.restart is not None and web.restart.signal == "SIGKILL"
    assert web.traffic is not None and web.traffic.readiness is not None
    assert not web.autoheal  # the two playbooks below take its place, for a runtime that restarts containers
    triggers = {playbook.name: playbook.when[0] for playbook in config.playbooks}
    assert triggers["web-exited"].process_exited is not None and triggers["web-unhealthy"].check_failed is not None
    assert {check.name for check in web.checks} >= {"http"}


def test_configmap_rules_are_valid_and_loaded() -> None:
    """The embedded rule file parses as a Prometheus rule file and matches the config's rule_files glob."""
    data = _healwatch_configmap()
    rule_keys = [key for key in data if key != "agent.yaml"]
    assert rule_keys, "the ConfigMap holds no rule file"
    for key in rule_keys:
        assert any(Path(key).match(pattern) for pattern in _kubernetes_agent_config().rule_files)
        groups = parse_rules(data[key], f"configmap.yaml:{key}")
        assert sum(len(group.rules) for group in groups) > 0


def test_kubernetes_and_compose_share_the_web_rules() -> None:
    """The rule file in the ConfigMap is the compose example's web.rules.yaml, so the two cannot drift."""
    assert _healwatch_configmap()["web.rules.yaml"] == (COMPOSE_DIR / "web.rules.yaml").read_text()


def test_webapp_configmap_is_the_example_app() -> None:
    """The app.py shipped in the webapp ConfigMap is examples/webapp/app.py verbatim."""
    assert _one("ConfigMap", "webapp")["data"]["app.py"] == (ROOT / "examples" / "webapp" / "app.py").read_text()


# -- docker compose ------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE_FILE.read_text()))


def _bind_mounts(service: str) -> list[tuple[Path, str]]:
    """(host source, container target) of a compose service's bind mounts; named volumes are left out."""
    mounts = []
    for volume in _compose()["services"][service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((COMPOSE_DIR / source).resolve(), target))
    return mounts


def _container_tree(service: str, root: Path) -> Path:
    """Lay the service's bind mounts out under ``root`` as the container would see them."""
    for source, target in _bind_mounts(service):
        destination = root / target.lstrip("/")
        if source.is_dir():
            shutil.copytree(source, destination)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
    return root


def test_compose_references_existing_files() -> None:
    """Every bind-mounted file, the build context and the Dockerfile exist relative to the compose file."""
    compose = _compose()
    assert set(compose["services"]) == {"web", "healwatch", "prometheus", "alertmanager"}
    for service in compose["services"]:
        for source, target in _bind_mounts(service):
            assert source.exists(), f"{service} mounts missing {source} at {target}"
    build = compose["services"]["healwatch"]["build"]
    assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).is_file()
    sources = {volume.split(":")[0] for spec in compose["services"].values() for volume in spec.get("volumes", [])}
    for named in sources - {source for source in sources if source.startswith((".", "/"))}:
        assert named in compose["volumes"], f"undeclared named volume {named}"


def test_compose_healwatch_config_is_valid(tmp_path: Path) -> None:
    """healwatch's compose config parses, finds its mounted rule files and pushes to the alertmanager service."""
    command = _compose()["services"]["healwatch"]["command"]
    config_path = _container_tree("healwatch", tmp_path) / command[command.index("-c") + 1].lstrip("/")
    config = parse_config(config_path.read_text(), str(config_path))
    for pattern in config.rule_files:
        found = sorted(config_path.parent.glob(pattern))
        assert found, f"rule_files {pattern!r} matches no mounted file"
        for path in found:
            parse_rules(path.read_text(), str(path))
    (receiver,) = config.notify.receivers
    assert receiver.alertmanager is not None
    port = _compose()["services"]["alertmanager"]["ports"][0].rsplit(":", 1)[1]
    assert receiver.alertmanager.urls == [f"http://alertmanager:{port}"]
    assert {check.http.url for check in config.services["web"].checks if check.http} == {"http://web:8080/health"}


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    """promtool accepts the Prometheus config and the rule files as mounted, and it scrapes the healwatch service."""
    promtool = require_binary("promtool")
    config_path = _container_tree("prometheus", tmp_path) / "etc" / "prometheus" / "prometheus.yml"
    result = subprocess.run(
        [promtool, "check", "config", str(config_path)],
        capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shipped = len(list((ROOT / "rules").glob("*.rules.yaml")))
    assert f"SUCCESS: {shipped + 1} rule files found" in result.stdout + result.stderr
    (job,) = yaml.safe_load(config_path.read_text())["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["healwatch:9877"]


def test_compose_alertmanager_config_passes_amtool() -> None:
    """amtool accepts the Alertmanager config the compose stack mounts."""
    amtool = require_binary("amtool")
    (source, target), = _bind_mounts("alertmanager")
    assert target == "/etc/alertmanager/alertmanager.yml"
    result = subprocess.run(
        [amtool, "check-config", str(source)],
        capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
