"""Progressive restore through a real HAProxy: requests counted per server at each stage, and the guard's re-cut.

The guard reads a real store through the agent's engine (``StoreEvaluator``); the test writes the
error series into that store at the stage where it wants the guard to fire.
"""

from __future__ import annotations

import asyncio
import collections
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import structlog

from agent.healing import StoreEvaluator
from agent.state import StateDB
from healers.backends.base import ActionContext, ActionResult
from healers.backends.traffic import ExecTrafficBackend, FileTrafficBackend, HaproxyTrafficBackend
from healers.journal import MIGRATIONS, Journal
from healers.playbook import PlaybookSpec, StepSpec
from healers.ramp import Ramp, ramp_up
from healers.runner import Notice, Runner, ServiceActions
from harness.processes import free_port, require_binary, stop, wait_for
from rules.model import Labels
from rules.promql import Engine
from rules.store import SeriesStore

pytestmark = pytest.mark.timeout(60)

REQUESTS_PER_STAGE = 110
HOLD_S = 0.3
GUARD = 'http_errors_total{service="$service"} > 0'

HAPROXY_CONF = """
global
  stats socket {tmp}/admin.sock level admin

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
  server s1 127.0.0.1:{s1_port} weight 100
  server s2 127.0.0.1:{s2_port} weight 100
"""


@dataclass
class Haproxy:
    socket: str
    frontend: str

    def answers(self, count: int) -> collections.Counter[str]:
        """Which server answered each of ``count`` requests, one connection per request."""
        with httpx.Client(base_url=self.frontend, headers={"Connection": "close"}, timeout=2) as client:
            return collections.Counter(client.get("/who").text for _ in range(count))


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Haproxy]:
    binary = require_binary("haproxy")
    tmp = tmp_path_factory.mktemp("haproxy-ramp")
    ports = {name: free_port() for name in ("frontend_port", "s1_port", "s2_port")}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("s1", "s2"):
            (tmp / name).mkdir()
            (tmp / name / "who").write_text(name)
            argv = [sys.executable, "-m", "http.server", str(ports[f"{name}_port"]), "--bind", "127.0.0.1",
                    "--directory", str(tmp / name)]
            processes.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        conf = tmp / "haproxy.cfg"
        conf.write_text(HAPROXY_CONF.format(tmp=tmp, **ports))
        with open(tmp / "haproxy.log", "wb") as log:
            processes.append(subprocess.Popen([binary, "-f", str(conf), "-db"], stdout=log, stderr=log))
        running = Haproxy(str(tmp / "admin.sock"), f"http://127.0.0.1:{ports['frontend_port']}")
        wait_for(lambda: set(running.answers(4)) == {"s1", "s2"})
        yield running
    finally:
        for process in reversed(processes):
            stop(process)


@dataclass
class Traffic:
    """Sends a batch of requests through HAProxy at every pause of the ramp and counts them by the share then set.

    It stands in for the clients: the ramp's ``sleep`` is its hook. ``errors_at`` makes the service
    start failing (its error counter, in the real store the guard reads) once that share is reached.
    """

    haproxy: Haproxy
    backend: HaproxyTrafficBackend
    store: SeriesStore = field(default_factory=lambda: SeriesStore(retention_s=None))
    errors_at: int | None = None
    counts: dict[int, collections.Counter[str]] = field(default_factory=dict)

    async def current_share(self) -> int:
        answer = await self.backend._command("get weight api/s1")  # noqa: SLF001 - reading HAProxy's own answer
        return int(answer.split()[0])

    async def sleep(self, seconds: float) -> None:
        share = await self.current_share()
        if await self.backend.is_cut():
            share = 0
        batch = await asyncio.to_thread(self.haproxy.answers, REQUESTS_PER_STAGE)
        self.counts.setdefault(share, collections.Counter()).update(batch)
        errors = 1.0 if self.errors_at is not None and share >= self.errors_at else 0.0
        self.store.ingest("scrape:api", [(Labels.of("http_errors_total", {"service": "api"}), errors)],
                          round(time.time() * 1000))
        await asyncio.sleep(seconds)


def setup(haproxy: Haproxy, errors_at: int | None = None) -> tuple[Traffic, StoreEvaluator]:
    backend = HaproxyTrafficBackend("api", "s1", socket_path=haproxy.socket)
    traffic = Traffic(haproxy, backend, errors_at=errors_at)
    traffic.store.ingest("scrape:api", [(Labels.of("http_errors_total", {"service": "api"}), 0.0)],
                         round(time.time() * 1000))
    return traffic, StoreEvaluator(Engine(), traffic.store)


def ctx() -> ActionContext:
    return ActionContext("api", "inc-ramp", 5.0)


def test_each_stage_gives_the_server_its_weighted_share_of_real_requests(haproxy: Haproxy) -> None:
    """10%, 50%, 100% of weight 100 beside a server of weight 100: about 9%, 33% and 50% of the requests."""
    traffic, evaluate = setup(haproxy)
    assert asyncio.run(traffic.backend.cut(ctx())).ok
    assert haproxy.answers(20) == {"s2": 20}
    started = time.monotonic()
    result = asyncio.run(ramp_up(traffic.backend, ctx(), Ramp((10, 50, 100), HOLD_S, GUARD), evaluate,
                                 now=time.time, sleep=traffic.sleep))
    took = time.monotonic() - started
    assert result.ok, result
    assert result.detail == "traffic ramped 10% -> 50% -> 100%, each held 0.3s, the guard empty throughout"
    assert sorted(traffic.counts) == [10, 50, 100]
    for weight, expected in ((10, 10 / 110), (50, 50 / 150), (100, 100 / 200)):
        share = traffic.counts[weight]["s1"] / sum(traffic.counts[weight].values())
        assert abs(share - expected) <= 0.04, (weight, traffic.counts[weight])
    assert "haproxy server api/s1 at 10%: weight 10 (initial 100), ready" in result.attachment
    assert "guard empty" in result.attachment
    print(f"ramp 10/50/100 with {HOLD_S}s holds and {REQUESTS_PER_STAGE} requests a stage took {took:.2f}s; "
          f"s1 shares {[round(traffic.counts[w]['s1'] / REQUESTS_PER_STAGE, 3) for w in (10, 50, 100)]}")


def test_a_guard_that_fires_cuts_traffic_again_and_the_run_escalates_with_traffic_kept_cut(
    haproxy: Haproxy, tmp_path: Path
) -> None:
    """Errors from 50% on: the guard fires, s1 is put back in maint (0 requests after), the run escalates."""
    traffic, evaluate = setup(haproxy, errors_at=50)
    db = StateDB(str(tmp_path / "state.db"))
    db.migrate("healers", MIGRATIONS)
    journal = Journal(db.conn)
    notices: list[Notice] = []
    runner = Runner(journal, notify=notices.append, log=structlog.get_logger("test"), clock=time.time,
                    sleep=traffic.sleep)

    async def healthy(context: ActionContext) -> ActionResult:
        return ActionResult(True, "checks passed")

    actions = ServiceActions("api", None, traffic.backend, healthy, lambda: None, evaluate=evaluate)
    ramp = StepSpec("traffic", {"op": "restore", "ramp": Ramp((10, 50, 100), HOLD_S, GUARD)}, timeout_s=20,
                    on_failure="escalate")
    playbook = PlaybookSpec("ramp-api", "api", (), (StepSpec("traffic", {"op": "cut"}, timeout_s=5), ramp))
    result = asyncio.run(runner.run(playbook, actions, incident_id="inc-ramp", trigger="test"))
    assert result.outcome == "escalated" and result.traffic_left_cut, result
    assert "the guard fired at 50%: 1 series: " in result.detail and result.detail.endswith("traffic cut again")
    assert sorted(traffic.counts) == [10, 50]  # no stage after the one that failed
    assert asyncio.run(traffic.backend.is_cut()) is True
    assert haproxy.answers(40) == {"s2": 40}
    assert journal.service_state("api").traffic_cut_by == "inc-ramp"
    steps = journal.steps("inc-ramp")
    assert [step.action for step in steps] == ["traffic cut", "traffic ramp 10/50/100%"]
    assert steps[1].result == "failed" and "guard 1 series" in steps[1].attachment
    assert "set to maint" in steps[1].attachment.splitlines()[-1]
    assert notices[-1].severity == "critical" and "stays out of rotation" in notices[-1].summary
    assert asyncio.run(traffic.backend.restore(ctx())).ok  # for the next test: full weight, in rotation
    assert set(haproxy.answers(4)) == {"s1", "s2"}


def test_file_and_exec_backends_get_the_percentage(tmp_path: Path) -> None:
    """The file backend writes each share to its weight file; the exec backend runs its weight argv with it."""
    flag, weight, log = tmp_path / "api.down", tmp_path / "api.weight", tmp_path / "weights.log"
    file_backend = FileTrafficBackend(str(flag), str(weight))
    assert asyncio.run(file_backend.cut(ctx())).ok and flag.exists()
    shares: list[str] = []

    async def note_share(seconds: float) -> None:
        shares.append(weight.read_text().strip() + (" cut" if flag.exists() else ""))

    result = asyncio.run(ramp_up(file_backend, ctx(), Ramp((25, 100), 0.01), None, now=time.time, sleep=note_share))
    assert result.ok and shares[0] == "25" and shares[-1] == "100" and not flag.exists()
    code = "import os, sys; open(sys.argv[1], 'a').write(sys.argv[2] + ' ' + os.environ['HEALWATCH_TRAFFIC_PERCENT'] + '\\n')"
    exec_backend = ExecTrafficBackend(["true"], ["true"], weight=[sys.executable, "-c", code, str(log), "$PERCENT"])
    result = asyncio.run(ramp_up(exec_backend, ctx(), Ramp((10, 50, 100), 0.0), None, now=time.time,
                                 sleep=asyncio.sleep))
    assert result.ok and log.read_text() == "10 10\n50 50\n100 100\n"
