"""The healing and silence endpoints in-process, against a real service the agent restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from agent.config import parse_config
from agent.daemon import Agent
from harness.agent import ROOT, AgentProcess
from harness.processes import free_port, wait_for

TOKEN = "heal-token"

# Run by the exec restart backend: stop the service named by the pidfile, start a new one detached.
RESTART_SCRIPT = """\
import os, signal, socket, subprocess, sys, time
app, port, pidfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    os.kill(int(open(pidfile).read()), signal.SIGKILL)
except (FileNotFoundError, ValueError, ProcessLookupError):
    pass
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        time.sleep(0.02)
    except OSError:
        break
subprocess.Popen([sys.executable, app, "--port", str(port), "--pidfile", pidfile], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""


class Service:
    """The example web app, started and restarted by a detaching script, as a real deployment would."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.pidfile = workdir / "web.pid"
        script = workdir / "restart.py"
        script.write_text(RESTART_SCRIPT)
        self.restart = [sys.executable, str(script), str(ROOT / "examples/webapp/app.py"), str(self.port),
                        str(self.pidfile)]
        subprocess.run(self.restart, check=True, timeout=10)
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200)

    def pid(self) -> int:
        return int(self.pidfile.read_text())

    def config(self) -> str:
        """The agent's ``services:`` entry for it: pidfile, an HTTP check, exec restart, readiness traffic."""
        return (
            "  web:\n"
            f"    process: {{pidfile: {self.pidfile}}}\n"
            f"    checks:\n      - {{name: http, http: {{url: 'http://127.0.0.1:{self.port}/health'}}, interval: 200ms,"
            " timeout: 500ms, failure_threshold: 1}\n"
            f"    restart: {{exec: {self.restart!r}}}\n"
            "    traffic: {readiness: {}}\n"
            "    autoheal: true\n"
        )

    def kill(self) -> None:
        try:
            os.kill(self.pid(), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass


def running_agent_process(workdir: Path, settings: str, playbooks: str, token: str) -> Iterator[AgentProcess]:
    """The real agent (``settings``, then a restartable ``web`` Service, then ``playbooks``), ready, with a token."""
    service = Service(workdir)
    config = workdir / "agent.yaml"
    config.write_text(settings + "services:\n" + service.config() + playbooks)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HEALWATCH_TOKEN", token)
        process = AgentProcess(config, workdir)
    try:
        wait_for(lambda: httpx.get(f"{process.url}/-/ready/web", timeout=1).status_code == 200)
        yield process
    finally:
        process.stop()
        service.kill()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    web = Service(tmp_path)
    yield web
    web.kill()


def agent_config(tmp_path: Path, services: str, state_path: str = ":memory:") -> Path:
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{free_port()}\nstate_path: '{state_path}'\nhost: {{enabled: false}}\ndefault_rules: false\n"
        "api: {max_body_bytes: 4096}\n"
        "services:\n  db:\n    checks:\n      - {name: port, tcp: {address: '127.0.0.1:1'}, interval: 1s}\n"
        + services
    )
    return config


def run_agent(
    tmp_path: Path, body: Callable[[Agent, httpx.AsyncClient], Awaitable[None]], services: str = "",
    state_path: str = ":memory:",
) -> None:
    """Start the agent in-process with the token set, run ``body`` with a client sending the token, stop it."""
    config = agent_config(tmp_path, services, state_path)

    async def main() -> None:
        agent = Agent(parse_config(config.read_text(), str(config)), config_path=str(config))
        await agent.start()
        assert agent.server is not None
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.server.port}", timeout=30,
                                         headers={"Authorization": f"Bearer {TOKEN}"}) as client:
                async with asyncio.timeout(30):
                    await body(agent, client)
        finally:
            await agent.stop()

    asyncio.run(main())


async def until_ready(agent: Agent, service: str) -> None:
    while agent.ready(service) is not True:
        await asyncio.sleep(0.05)


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALWATCH_TOKEN", TOKEN)


def test_a_dry_run_touches_nothing_and_a_heal_restarts_the_service(tmp_path: Path, service: Service) -> None:
    """POST /heal/web with dry_run journals would-be steps; without it the service is restarted and journaled."""
    first_pid = service.pid()

    async def body(agent: Agent, client: httpx.AsyncClient) -> None:
        await until_ready(agent, "web")
        dry = await client.post("/api/v1/heal/web", json={"dry_run": True})
        assert dry.status_code == 200, dry.text
        dry_run = dry.json()["data"]
        assert (dry_run["outcome"], dry_run["dryRun"], dry_run["service"]) == ("succeeded", True, "web")
        assert [step["result"] for step in dry_run["steps"]] == ["dry_run"] * 4
        assert service.pid() == first_pid

        healed = (await client.post("/api/v1/heal/web")).json()["data"]
        assert (healed["outcome"], healed["dryRun"], healed["trafficLeftCut"]) == ("succeeded", False, False)
        assert [(s["action"], s["result"]) for s in healed["steps"]] == [
            ("traffic cut", "ok"), ("restart", "ok"), ("wait_healthy", "ok"), ("traffic restore", "ok")]
        assert all(s["durationSeconds"] >= 0 for s in healed["steps"])
        assert service.pid() != first_pid

        listed = (await client.get("/api/v1/incidents", params={"service": "web"})).json()["data"]["incidents"]
        assert [i["id"] for i in listed] == [healed["id"], dry_run["id"]]
        assert "steps" not in listed[0]
        newest = (await client.get("/api/v1/incidents", params={"limit": 1})).json()["data"]["incidents"]
        assert [i["id"] for i in newest] == [healed["id"]]
        one = (await client.get(f"/api/v1/incidents/{healed['id']}")).json()["data"]
        assert one["steps"] == healed["steps"] and one["trigger"] == "manual"

    run_agent(tmp_path, body, service.config())


def test_maintenance_traffic_and_reset_are_operator_switches(tmp_path: Path, service: Service) -> None:
    """Maintenance refuses a heal (409) until deleted; a traffic cut fails readiness until restored."""

    async def body(agent: Agent, client: httpx.AsyncClient) -> None:
        await until_ready(agent, "web")
        on = await client.post("/api/v1/maintenance/web")
        assert on.json()["data"] == {"service": "web", "maintenance": True}
        refused = await client.post("/api/v1/heal/web", params={"dry_run": "true"})
        assert refused.status_code == 409 and refused.json()["error"] == "web is in maintenance"
        off = await client.delete("/api/v1/maintenance/web")
        assert off.json()["data"] == {"service": "web", "maintenance": False}
        assert (await client.post("/api/v1/heal/web", params={"dry_run": "true"})).status_code == 200

        cut = await client.post("/api/v1/traffic/web/cut")
        assert cut.status_code == 200 and cut.json()["data"]["traffic"] == "cut"
        assert (await client.get("/-/ready/web")).status_code == 503
        assert agent.healing is not None and agent.healing.runtime.journal.service_state("web").traffic_cut_by == "operator"
        restored = await client.post("/api/v1/traffic/web/restore")
        assert restored.status_code == 200 and restored.json()["data"]["traffic"] == "restored"
        assert (await client.get("/-/ready/web")).status_code == 200
        assert agent.healing.runtime.journal.service_state("web").traffic_cut_by is None

        reset = await client.post("/api/v1/heal/web/reset")
        assert reset.json()["data"] == {"service": "web", "reset": True}

    run_agent(tmp_path, body, service.config())


def test_a_reset_the_locked_state_db_cannot_save_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    """While another connection holds the state DB's write lock past the busy timeout, a reset is a 503
    that leaves the service suspended; once the lock is gone the reset is saved and lifts the suspension."""
    state_db = tmp_path / "state.db"

    async def body(agent: Agent, client: httpx.AsyncClient) -> None:
        assert agent.healing is not None
        agent.healing.runtime.safety.suspend("db", "restart budget exhausted")
        agent.healing.runtime.journal.set_suspended("db", "restart budget exhausted")
        other = sqlite3.connect(state_db, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # a real write lock, as a backup tool or a second agent would hold
            refused = await client.post("/api/v1/heal/db/reset")
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"].startswith("reset of db not saved, nothing changed; try again: ")
            assert agent.healing.runtime.safety.state("db").suspended
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert agent.healing.runtime.journal.service_state("db").budget_reset_at is None
        saved = await client.post("/api/v1/heal/db/reset")
        assert saved.status_code == 200 and not agent.healing.runtime.safety.state("db").suspended
        state = agent.healing.runtime.journal.service_state("db")
        assert state.suspended_reason is None and state.budget_reset_at is not None

    run_agent(tmp_path, body, state_path=str(state_db))


def test_bad_requests_get_json_errors(tmp_path: Path) -> None:
    """Unknown services, traversal ids, bad bodies and a wrong token are JSON errors with reasons."""

    async def body(agent: Agent, client: httpx.AsyncClient) -> None:
        for method, path in (("POST", "/api/v1/heal/nope"), ("POST", "/api/v1/heal/nope/reset"),
                             ("POST", "/api/v1/traffic/nope/cut"), ("DELETE", "/api/v1/maintenance/nope")):
            response = await client.request(method, path)
            assert response.status_code == 404, path
            assert response.json() == {"status": "error", "errorType": "bad_data", "error": "unknown service 'nope'"}
        no_playbook = await client.post("/api/v1/heal/db")
        assert no_playbook.status_code == 409 and no_playbook.json()["error"] == "no playbook heals 'db'"
        no_backend = await client.post("/api/v1/traffic/db/cut")
        assert no_backend.status_code == 409 and "no traffic backend" in no_backend.json()["error"]
        not_name = await client.post("/api/v1/heal/db", json={"playbook": 3})
        assert not_name.status_code == 400 and "playbook must be a playbook's name" in not_name.json()["error"]

        traversal = await client.get("/api/v1/incidents/..%2Fstate.db")
        assert traversal.status_code == 400 and traversal.json()["error"].startswith("invalid id")
        assert (await client.get("/api/v1/incidents/0123456789ab")).status_code == 404
        assert (await client.get("/api/v1/incidents", params={"limit": "many"})).status_code == 400

        malformed = await client.post("/api/v1/heal/db", content=b"{not json")
        assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["error"]
        not_bool = await client.post("/api/v1/heal/db", json={"dry_run": "yes"})
        assert not_bool.status_code == 400 and "dry_run must be true or false" in not_bool.json()["error"]
        oversized = await client.post("/api/v1/silences", content=b"[" * 5000)
        assert oversized.status_code == 413
        wrong = await client.post("/api/v1/heal/db/reset", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401

    run_agent(tmp_path, body)


def test_silences_are_added_listed_and_expired(tmp_path: Path) -> None:
    """POST /silences takes string or object matchers; GET lists them; DELETE expires one once."""

    async def body(agent: Agent, client: httpx.AsyncClient) -> None:
        added = await client.post("/api/v1/silences", json={
            "matchers": ['alertname="DiskFull"'], "createdBy": "ops", "comment": "disk swap"})
        assert added.status_code == 200, added.text
        first = added.json()["data"]["silenceID"]
        second = (await client.post("/api/v1/silences", json={
            "matchers": [{"name": "service", "value": "web|db", "isRegex": True}],
            "startsAt": "2030-01-01T00:00:00Z", "endsAt": "2030-01-01T02:00:00+00:00"})).json()["data"]["silenceID"]

        silences = (await client.get("/api/v1/silences")).json()["data"]["silences"]
        assert [(s["id"], s["status"]["state"]) for s in silences] == [(first, "active"), (second, "pending")]
        assert silences[0]["matchers"] == [{"name": "alertname", "value": "DiskFull", "isRegex": False,
                                            "isEqual": True}]
        assert (silences[0]["createdBy"], silences[0]["comment"]) == ("ops", "disk swap")
        assert (silences[1]["startsAt"], silences[1]["endsAt"]) == ("2030-01-01T00:00:00Z", "2030-01-01T02:00:00Z")

        expired = await client.delete(f"/api/v1/silences/{first}")
        assert expired.json()["data"] == {"silenceID": first, "expired": True}
        states = {s["id"]: s["status"]["state"] for s in (await client.get("/api/v1/silences")).json()["data"]["silences"]}
        assert states == {first: "expired", second: "pending"}
        again = await client.delete(f"/api/v1/silences/{first}")
        assert again.status_code == 409 and "already expired" in again.json()["error"]
        assert (await client.delete("/api/v1/silences/no-such-id")).status_code == 404
        assert (await client.delete("/api/v1/silences/..%2Fx")).status_code == 400

    run_agent(tmp_path, body)


@pytest.mark.parametrize(("payload", "reason"), [
    (b'{"matchers": ["alertname"]}', "bad matcher format"),
    (b'{"matchers": ["job=~\\"(\\""]}', "invalid regular expression"),
    (b'{"matchers": ["job=~\\".*\\""]}', "matches everything"),
    (b'{"matchers": []}', "matchers must be a non-empty list"),
    (b'{"matchers": [{"name": "a-b", "value": "x"}]}', "invalid label name"),
    (b'{"matchers": ["a=\\"b\\""], "startsAt": "2030-01-02T00:00:00Z", "endsAt": "2030-01-01T00:00:00Z"}',
     "end time must not be before its start"),
    (b'{"matchers": ["a=\\"b\\""], "endsAt": "2001-01-01T00:00:00Z"}', "end time must not be before"),
    (b'{"matchers": ["a=\\"b\\""], "endsAt": "tomorrow"}', "endsAt is not an RFC 3339 time"),
    (b'{"matchers": ["a=\\"b\\""], "endsAt": "2030-01-01T00:00:00"}', "endsAt needs a time zone"),
    (b'{"matchers": ["a=\\"b\\""], "comment": 5}', "comment must be a string"),
    (b'{"matchers": ["a=\\"b\\""]', "malformed JSON"),
    (b'["a=\\"b\\""]', "the JSON body must be an object"),
])
def test_invalid_silences_are_400_with_the_reason(tmp_path: Path, payload: bytes, reason: str) -> None:
    """Each kind of bad silence is refused with 400 and a message naming the problem; nothing is stored."""

    async def body(agent: Agent, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/v1/silences", content=payload)
        assert response.status_code == 400
        assert reason in response.json()["error"]
        assert (await client.get("/api/v1/silences")).json()["data"]["silences"] == []

    run_agent(tmp_path, body)
