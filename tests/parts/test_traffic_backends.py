"""Traffic backends against a real HAProxy with real servers behind it, real files, and real commands."""

from __future__ import annotations

import asyncio
import collections
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from healers.backends import (
    ActionContext,
    ActionResult,
    ExecTraffic,
    FileTraffic,
    HaproxyTraffic,
    ReadinessGate,
    ReadinessTraffic,
    TrafficBackend,
    make_traffic_backend,
)
from harness.processes import free_port, require_binary, stop, wait_for

pytestmark = pytest.mark.timeout(30)

REQUESTS_PER_ROUND = 40
PYTHON = Path(sys.executable).name


def context(**overrides: Any) -> ActionContext:
    return ActionContext(**{"service": "api", "incident_id": "inc-9", "timeout_s": 5.0, **overrides})


def act(backend: TrafficBackend, action: str, **ctx: Any) -> ActionResult:
    result: ActionResult = asyncio.run(getattr(backend, action)(context(**ctx)))
    return result


def read_back(backend: TrafficBackend) -> bool | None:
    return asyncio.run(backend.is_cut())


# --- haproxy (real HAProxy, real servers) -------------------------------------------------------


@dataclass
class Haproxy:
    socket: str
    address: str
    frontend: str

    def answers(self, count: int = REQUESTS_PER_ROUND) -> collections.Counter[str]:
        """Which server answered each of ``count`` requests, one connection per request."""
        with httpx.Client(base_url=self.frontend, headers={"Connection": "close"}, timeout=2) as client:
            return collections.Counter(client.get("/who").text for _ in range(count))

    def backend(self, server: str = "s1", **settings: Any) -> TrafficBackend:
        return make_traffic_backend(HaproxyTraffic(**{"backend": "api", "server": server, "socket": self.socket, **settings}), ReadinessGate())


HAPROXY_CONF = """
global
  stats socket {tmp}/admin.sock level admin
  stats socket 127.0.0.1:{admin_port} level admin

defaults
  mode http
  timeout connect 1s
  timeout client 5s
  timeout server 5s

frontend web
  bind 127.0.0.1:{frontend_port}
  default_backend api

backend api
  balance roundrobin
  server s1 127.0.0.1:{s1_port}
  server s2 127.0.0.1:{s2_port}

backend pair
  server lead 127.0.0.1:{s1_port} check inter 10s
  server follower 127.0.0.1:{s2_port} track pair/lead
"""


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Haproxy]:
    binary = require_binary("haproxy")
    tmp = tmp_path_factory.mktemp("haproxy")
    ports = {name: free_port() for name in ("admin_port", "frontend_port", "s1_port", "s2_port")}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("s1", "s2"):
            (tmp / name).mkdir()
            (tmp / name / "who").write_text(name)
            argv = [sys.executable, "-m", "http.server", str(ports[f"{name}_port"]), "--bind", "127.0.0.1"]
            processes.append(
                subprocess.Popen(argv + ["--directory", str(tmp / name)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        conf = tmp / "haproxy.cfg"
        conf.write_text(HAPROXY_CONF.format(tmp=tmp, **ports))
        with open(tmp / "haproxy.log", "wb") as log:
            processes.append(subprocess.Popen([binary, "-f", str(conf), "-db"], stdout=log, stderr=log))
        running = Haproxy(str(tmp / "admin.sock"), f"127.0.0.1:{ports['admin_port']}", f"http://127.0.0.1:{ports['frontend_port']}")
        wait_for(lambda: set(running.answers(4)) == {"s1", "s2"})
        yield running
    finally:
        for process in reversed(processes):
            stop(process)


def test_haproxy_maint_keeps_every_request_off_the_server_until_restored(haproxy: Haproxy) -> None:
    """While s1 is cut (maint) all 40 requests reach s2; after restore s1 serves again; read-back follows."""
    backend = haproxy.backend("s1")
    assert read_back(backend) is False

    cut = act(backend, "cut")

    assert cut == ActionResult(True, "haproxy server api/s1 set to maint (read back: maint (forced))")
    assert read_back(backend) is True
    assert haproxy.answers() == {"s2": REQUESTS_PER_ROUND}

    restored = act(backend, "restore")

    assert restored == ActionResult(True, "haproxy server api/s1 set to ready (read back: ready)")
    assert read_back(backend) is False
    assert haproxy.answers() == {"s1": REQUESTS_PER_ROUND // 2, "s2": REQUESTS_PER_ROUND // 2}


def test_haproxy_drain_over_tcp_keeps_new_requests_off_the_server(haproxy: Haproxy) -> None:
    """Drain mode through the TCP runtime API sends no new request to s2 and reads back as drain."""
    backend = haproxy.backend("s2", socket=None, address=haproxy.address, mode="drain")

    cut = act(backend, "cut")

    assert cut == ActionResult(True, "haproxy server api/s2 set to drain (read back: drain (forced))")
    assert haproxy.answers() == {"s1": REQUESTS_PER_ROUND}
    assert act(backend, "restore").ok
    assert set(haproxy.answers(4)) == {"s1", "s2"}


@pytest.mark.parametrize(
    ("settings", "detail"),
    [
        ({"backend": "nope"}, "haproxy refused to set nope/s1 to maint: No such backend."),
        ({"server": "nope"}, "haproxy refused to set api/nope to maint: No such server."),
    ],
)
def test_haproxy_unknown_names_fail_with_haproxys_message(haproxy: Haproxy, settings: dict[str, str], detail: str) -> None:
    """A wrong backend or server name gives ok=False carrying HAProxy's own answer, and is_cut is unknown."""
    backend = make_traffic_backend(HaproxyTraffic(**{"backend": "api", "server": "s1", "socket": haproxy.socket, **settings}), ReadinessGate())

    assert act(backend, "cut") == ActionResult(False, detail)
    assert read_back(backend) is None


def test_haproxy_restore_is_not_confirmed_while_the_server_inherits_maint(haproxy: Haproxy) -> None:
    """A tracking server stays out of rotation while its tracked server is in maint; restore says so."""
    lead = make_traffic_backend(HaproxyTraffic("pair", "lead", socket=haproxy.socket), ReadinessGate())
    follower = make_traffic_backend(HaproxyTraffic("pair", "follower", socket=haproxy.socket), ReadinessGate())
    assert act(lead, "cut").ok
    try:
        restored = act(follower, "restore")

        assert restored == ActionResult(
            False, "haproxy server pair/follower is still maint (inherited from a tracked server) after setting it to ready"
        )
        assert read_back(follower) is True
    finally:
        assert act(lead, "restore").ok
    assert read_back(follower) is False


def test_haproxy_dry_run_leaves_the_server_in_rotation(haproxy: Haproxy) -> None:
    """In dry run nothing is sent to HAProxy."""
    backend = haproxy.backend("s1")

    assert act(backend, "cut", dry_run=True) == ActionResult(True, "dry run: would set haproxy server api/s1 to maint")
    assert read_back(backend) is False


def test_haproxy_unreachable_socket_fails(tmp_path: Path) -> None:
    """A socket nobody listens on gives ok=False and an unknown read-back."""
    socket_path = str(tmp_path / "admin.sock")
    backend = make_traffic_backend(HaproxyTraffic("api", "s1", socket=socket_path), ReadinessGate())

    assert act(backend, "cut") == ActionResult(False, f"cannot reach haproxy at {socket_path}: No such file or directory")
    assert read_back(backend) is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (HaproxyTraffic("api", "s1; shutdown sessions", socket="/a.sock"), "server name 's1; shutdown sessions' may hold only"),
        (HaproxyTraffic("api\nx", "s1", socket="/a.sock"), "backend name 'api\\\\nx' may hold only"),
        (HaproxyTraffic("api", "s1"), "exactly one of socket and address"),
        (HaproxyTraffic("api", "s1", socket="/a.sock", address="127.0.0.1:1"), "exactly one of socket and address"),
        (HaproxyTraffic("api", "s1", socket="/a.sock", mode="off"), "mode 'off' is not one of maint, drain"),
        (HaproxyTraffic("api", "s1", address="localhost"), "address 'localhost' is not host:port"),
        (FileTraffic(""), "needs the flag file's path"),
        (ExecTraffic((), ("true",)), "traffic cut command must be a non-empty list"),
    ],
)
def test_traffic_settings_that_cannot_work_are_rejected(settings: Any, message: str) -> None:
    """Bad traffic settings raise ValueError with a readable message; names cannot smuggle commands."""
    with pytest.raises(ValueError, match=message):
        make_traffic_backend(settings, ReadinessGate())


# --- readiness ----------------------------------------------------------------------------------


def test_readiness_cut_and_restore_flip_only_that_service() -> None:
    """Cutting api marks only api as cut in the gate; restore clears it; dry run changes nothing."""
    gate = ReadinessGate()
    backend = make_traffic_backend(ReadinessTraffic(), gate, service="api")

    assert read_back(backend) is False
    assert act(backend, "cut", dry_run=True).detail == "dry run: would make /-/ready/api answer 503 (not ready)"
    assert not gate.is_cut("api")
    assert act(backend, "cut") == ActionResult(True, "/-/ready/api now answers 503 (not ready)")
    assert (gate.is_cut("api"), gate.is_cut("db"), gate.cut_services()) == (True, False, frozenset({"api"}))
    assert read_back(backend) is True
    assert act(backend, "restore").ok
    assert gate.cut_services() == frozenset()


def test_readiness_without_a_bound_service_acts_on_the_context_service() -> None:
    """An unbound readiness backend cuts ctx.service and reads back unknown until it has acted."""
    gate = ReadinessGate()
    backend = make_traffic_backend(ReadinessTraffic(), gate)

    assert read_back(backend) is None
    assert act(backend, "cut", service="db").ok
    assert gate.cut_services() == frozenset({"db"})
    assert read_back(backend) is True


# --- file ---------------------------------------------------------------------------------------


def test_file_cut_creates_the_flag_and_restore_removes_it(tmp_path: Path) -> None:
    """Cut creates the flag file (idempotently), restore removes it (idempotently), is_cut reads the disk."""
    flag = tmp_path / "api.down"
    backend = make_traffic_backend(FileTraffic(str(flag)), ReadinessGate())

    assert act(backend, "cut") == ActionResult(True, f"created {flag}")
    assert act(backend, "cut").ok
    assert flag.read_text() == "traffic cut by healwatch for api, incident inc-9\n"
    assert read_back(backend) is True
    assert sorted(tmp_path.iterdir()) == [flag]
    assert act(backend, "restore") == ActionResult(True, f"removed {flag}")
    assert act(backend, "restore") == ActionResult(True, f"{flag} was already absent")
    assert read_back(backend) is False


def test_file_cut_in_a_missing_directory_fails(tmp_path: Path) -> None:
    """A flag file that cannot be created gives ok=False naming it."""
    flag = tmp_path / "missing" / "api.down"

    result = act(make_traffic_backend(FileTraffic(str(flag)), ReadinessGate()), "cut")

    assert result == ActionResult(False, f"cannot create {flag}: No such file or directory")


def test_file_dry_run_creates_nothing(tmp_path: Path) -> None:
    """In dry run no flag file appears."""
    flag = tmp_path / "api.down"

    result = act(make_traffic_backend(FileTraffic(str(flag)), ReadinessGate()), "cut", dry_run=True)

    assert result == ActionResult(True, f"dry run: would create {flag}")
    assert not flag.exists()


# --- exec ---------------------------------------------------------------------------------------


def test_exec_traffic_runs_the_cut_and_restore_commands_with_context(tmp_path: Path) -> None:
    """Cut and restore run their argv with the service and incident id in the environment; state is unknown."""
    record = tmp_path / "record"
    script = "import os, sys; open(sys.argv[1], 'a').write(sys.argv[2] + ' ' + os.environ['HEALWATCH_SERVICE'] + ' ' + os.environ['HEALWATCH_INCIDENT_ID'] + '\\n')"
    backend = make_traffic_backend(
        ExecTraffic((sys.executable, "-c", script, str(record), "cut"), (sys.executable, "-c", script, str(record), "restore")),
        ReadinessGate(),
    )

    assert act(backend, "cut").ok
    assert act(backend, "cut", dry_run=True).detail == f"dry run: would run the traffic cut command {PYTHON}"
    assert act(backend, "restore").ok
    assert record.read_text() == "cut api inc-9\nrestore api inc-9\n"
    assert read_back(backend) is None


def test_exec_traffic_failure_is_reported() -> None:
    """A cut command that exits non-zero gives ok=False with its output."""
    script = "import sys; print('lb unreachable'); sys.exit(2)"
    backend = make_traffic_backend(ExecTraffic((sys.executable, "-c", script), ("true",)), ReadinessGate())

    result = act(backend, "cut")

    assert result == ActionResult(False, f"the traffic cut command {PYTHON} exited with status 2", "lb unreachable\n")
