"""Agent footprint: RSS and CPU of healwatch next to node_exporter + Monit, idle and with 50 services.

Run from the repository root: ``python3 -m bench.footprint --output PATH [--quick] [--tls]``.

Two phases, each with both sides running at the same time on this host (so load from other
processes falls on both alike), each measured after a warm-up over a fixed window:

  idle    the real agent (``python3 -m agent.cli run``, built-in default config, temp working
          directory for its state database) next to prometheus-node-exporter and Monit with a
          minimal control file (``set daemon 1``; its implicit system check only).
  loaded  50 real sleeping processes, each tracked by pidfile and each with a process check plus
          an HTTP (even services) or TCP (odd services) check at 1 s against a loopback endpoint,
          and 500 generated alerting rules over the host and service series; the agent watches
          them, and so does Monit (same pidfiles, same endpoints, 1 s cycle) next to node_exporter.
          With ``--tls`` every endpoint speaks TLS (a certificate made for the run): the HTTP checks
          are HTTPS and the TCP checks TLS handshakes, on both sides, certificates not verified.

RSS is sampled every second (the agent with any children, node_exporter plus Monit summed);
CPU is user+system seconds of each process tree over the window. The agent's /metrics and
node_exporter's /metrics are scraped throughout, as a Prometheus would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.output import run_and_write
from rules.rulefile import parse_rules
from harness.processes import free_port, stop
from harness.tlscerts import TestCA

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
MONIT = "/usr/bin/monit"
NETDATA = "/usr/sbin/netdata"  # the second peer, when installed (Debian netdata)
SLEEP = "/usr/bin/sleep"  # the watched services: real processes that cost next to nothing
SERVICES = 50
RULE_GROUPS = 10
RULES_PER_GROUP = 50
RULES = RULE_GROUPS * RULES_PER_GROUP
CHECK_INTERVAL_S = 1
STARTUP_TIMEOUT_S = 30.0
# What Prometheus 2.x asks a text-format exporter for.
SCRAPE_HEADERS = {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "gzip"}
PEER_NAME_FALLBACK = "node_exporter + Monit"
MONIT_ERROR = re.compile(r"^\[[^]]*\]\s+error\s*:")


@dataclass(frozen=True)
class Timing:
    """How long each phase warms up and measures, and how often /metrics is scraped."""

    warmup_s: int
    window_s: int
    scrape_every_s: int


FULL = Timing(warmup_s=20, window_s=60, scrape_every_s=15)
QUICK = Timing(warmup_s=8, window_s=15, scrape_every_s=5)


def wait_until(what: str, condition: Any, process: subprocess.Popen[bytes]) -> None:
    """Poll ``condition()`` until true; fail early if ``process`` exits, or after a bound."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} while starting")
        try:
            if condition():
                return
        except (httpx.HTTPError, OSError):
            pass  # not listening yet
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready within {STARTUP_TIMEOUT_S:g} s")


def tree_of(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_rss_bytes(pids: list[int]) -> int:
    """RSS of the processes and all their living descendants."""
    total = 0
    for pid in pids:
        for process in tree_of(pid):
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                pass  # a child that exited between listing and reading
    return total


def tree_cpu_seconds(pids: list[int]) -> float:
    """User+system CPU of the processes, their living descendants and the children they reaped."""
    total = 0.0
    for pid in pids:
        for process in tree_of(pid):
            try:
                t = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system + t.children_user + t.children_system
    return total


def versions() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return (result.stdout or result.stderr).strip().splitlines()[0]

    return {
        "python": platform.python_version(),
        "node_exporter": first_line([NODE_EXPORTER, "--version"]),
        "monit": first_line([MONIT, "-V"]),
        **({"netdata": first_line([NETDATA, "-v"])} if Path(NETDATA).exists() else {}),
    }


def peer_name(found: dict[str, str]) -> str:
    """"node_exporter 1.5.0 + Monit 5.33.0" from the programs' version lines."""
    try:
        node = found["node_exporter"].split("version ")[1].split()[0]
        monit = found["monit"].split("version ")[1].split()[0]
    except (KeyError, IndexError):
        return PEER_NAME_FALLBACK
    return f"node_exporter {node} + Monit {monit}"


# -- the loaded scenario's workload ---------------------------------------------------------


def service_name(index: int) -> str:
    return f"s{index:02d}"


def probe_kind(index: int) -> str:
    return "http" if index % 2 == 0 else "tcp"


def _rule(n: int) -> tuple[str, str, str]:
    """The n-th rule (0..499): alert name, expression and ``for``; each service gets every shape once."""
    shape = n % 10
    svc = service_name((n // 10) % SERVICES)
    sel = f'service="{svc}"'
    if shape == 0:
        return "ServiceMemoryHigh", f"healwatch_process_resident_memory_bytes{{{sel}}} > {512 + n} * 2^20", "5m"
    if shape == 1:
        busy = f"sum by (service) (rate(healwatch_process_cpu_seconds_total{{{sel}}}[5m]))"
        return "ServiceCPUBusy", f"{busy} > {0.8 + n / 5000}", "10m"
    if shape == 2:
        return "ServiceSlowProbe", f"avg_over_time(probe_duration_seconds{{{sel}}}[5m]) > {0.5 + n / 5000}", "5m"
    if shape == 3:
        return "ServiceManyFds", f"max_over_time(healwatch_process_open_fds{{{sel}}}[5m]) > {1000 + n}", "0s"
    if shape == 4:
        return "ServiceFlapping", f"min_over_time(probe_success{{{sel}}}[1m]) < 1", "1m"
    if shape == 5:
        return "ServiceCheckErrors", f'increase(healwatch_check_runs_total{{{sel},result="failure"}}[5m]) > {3 + n % 7}', "0s"
    if shape == 6:
        return "ServiceDown", f"healwatch_process_up{{{sel}}} == 0", "30s"
    if shape == 7:
        return "ServiceProbeP90", f"quantile_over_time(0.9, probe_duration_seconds{{{sel}}}[5m]) > {0.8 + n / 5000}", "5m"
    if shape == 8:  # host series, aggregated
        host = n % 3
        if host == 0:
            idle = 'avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))'
            return "HostCPUBusy", f"1 - {idle} > {0.9 + n / 10000}", "10m"
        if host == 1:
            return "HostNetworkBusy", f"sum by (device) (rate(node_network_receive_bytes_total[5m])) > {1e8 + n}", "5m"
        return "HostDiskFull", f'min(node_filesystem_avail_bytes / node_filesystem_size_bytes) < {0.01 + n / 100000}', "5m"
    # shape 9: across services
    across = n % 3
    if across == 0:
        return "ServicesDown", f"count(healwatch_process_up == 1) < {SERVICES - 1 - n % 5}", "1m"
    if across == 1:
        return "ChecksSlow", f"max by (check) (probe_duration_seconds) > {0.9 + n / 10000}", "2m"
    return "ServicesMemory", f"sum(healwatch_process_resident_memory_bytes) > {64 + n} * 1024 * 1024 * 1024", "5m"


def build_rules_yaml() -> str:
    """10 groups of 50 alerting rules: thresholds, rate, *_over_time and aggregations over host and service series."""
    lines = ["groups:"]
    for group in range(RULE_GROUPS):
        lines += [f"  - name: footprint-{group}", "    rules:"]
        for slot in range(RULES_PER_GROUP):
            n = group * RULES_PER_GROUP + slot
            name, expr, wait = _rule(n)
            lines += [
                f"      - alert: {name}{n}",
                f"        expr: '{expr}'",
                f"        for: {wait}",
                "        labels: {severity: warning}",
                "        annotations:",
                '          summary: "{{ $labels.service }} {{ $labels.instance }} at {{ $value | humanize }}"',
            ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Workload:
    """The 50 watched services: pidfiles of the sleepers, the endpoint port of each, and whether they speak TLS."""

    pidfiles: list[Path]
    ports: list[int]
    tls: bool = False


def agent_loaded_yaml(workload: Workload, rule_file: str) -> str:
    lines = [f"rule_files: [{rule_file}]", "services:"]
    for index, (pidfile, port) in enumerate(zip(workload.pidfiles, workload.ports, strict=True)):
        if probe_kind(index) == "http":
            scheme, unverified = ("https", ", tls_verify: false") if workload.tls else ("http", "")
            probe = f'http: {{url: "{scheme}://127.0.0.1:{port}/health"{unverified}}}'
        elif workload.tls:
            probe = f'tcp: {{address: "127.0.0.1:{port}", tls: true, tls_config: {{insecure_skip_verify: true}}}}'
        else:
            probe = f'tcp: {{address: "127.0.0.1:{port}"}}'
        lines += [
            f"  {service_name(index)}:",
            f"    process: {{pidfile: {pidfile}}}",
            "    checks:",
            f"      - {{name: alive, process: {{}}, interval: {CHECK_INTERVAL_S}s}}",
            f"      - {{name: {probe_kind(index)}, {probe}, interval: {CHECK_INTERVAL_S}s}}",
        ]
    return "\n".join(lines) + "\n"


def monit_control(workdir: Path, workload: Workload | None) -> str:
    """A control file with a 1 s cycle, its files in ``workdir``, no httpd; the services if given."""
    lines = [
        f"set daemon {CHECK_INTERVAL_S}",
        f"set logfile {workdir / 'monit.log'}",
        f"set pidfile {workdir / 'monit.pid'}",
        f"set idfile {workdir / 'monit.id'}",
        f"set statefile {workdir / 'monit.state'}",
    ]
    for index, (pidfile, port) in enumerate(zip(workload.pidfiles, workload.ports, strict=True) if workload else []):
        test = 'protocol http request "/health"' if probe_kind(index) == "http" else "type tcp"
        if workload is not None and workload.tls:
            test = test.replace("protocol http", "protocol https") + " with ssl options {verify: disable}"
        lines += [
            f"check process {service_name(index)} with pidfile {pidfile}",
            f"  if failed host 127.0.0.1 port {port} {test} with timeout 1 seconds then alert",
        ]
    return "\n".join(lines) + "\n"


class Endpoints:
    """Tiny loopback servers on ``count`` ports in one asyncio thread; count HTTP requests and bare connects."""

    def __init__(self, count: int, tls: ssl.SSLContext | None = None) -> None:
        self.counts: Counter[str] = Counter()
        self.ports: list[int] = []
        self._tls = tls
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(count,), daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or len(self.ports) != count:
            raise RuntimeError("loopback endpoints did not start")

    def _run(self, count: int) -> None:
        asyncio.set_event_loop(self._loop)
        for _ in range(count):
            server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._tls))
            self._servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])
        self._ready.set()
        self._loop.run_forever()
        for server in self._servers:
            server.close()
        self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests = 0
        try:
            while True:  # keep-alive: a client that reuses its connection may send more
                head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).lower()
                requests += 1
                self.counts["http_monit" if b"user-agent: monit" in head else "http_other"] += 1
                close = b"connection: close" in head
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                    + (b"Connection: close\r\n" if close else b"")
                    + b"\r\nok\n"
                )
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError, ssl.SSLError):
            pass  # the client closed (a TCP check sends nothing) or went quiet
        finally:
            if requests == 0:
                self.counts["tcp_connect"] += 1
            writer.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


# -- running the sides -------------------------------------------------------------------


@dataclass
class Started:
    """Child processes started for one measurement, stopped (and reaped) in reverse order."""

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def add(self, process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            stop(process)


def start_agent(started: Started, workdir: Path, config: Path | None) -> tuple[subprocess.Popen[bytes], str]:
    """The real agent, its cwd (and so its state database) in ``workdir``; its base URL once ready."""
    url = f"http://127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "agent.cli", "run", "--listen", url.removeprefix("http://")]
    if config is not None:
        argv += ["-c", str(config)]
    with open(workdir / "agent.log", "wb") as log:
        agent = started.add(
            subprocess.Popen(
                argv, cwd=workdir, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        )
    wait_until("the agent", lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, agent)
    return agent, url


def start_node_exporter(started: Started, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    url = f"http://127.0.0.1:{free_port()}"
    with open(workdir / "node_exporter.log", "wb") as log:
        process = started.add(
            subprocess.Popen(
                [NODE_EXPORTER, f"--web.listen-address={url.removeprefix('http://')}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        )
    wait_until("node_exporter", lambda: httpx.get(f"{url}/metrics", timeout=5).status_code == 200, process)
    return process, url


def start_monit(started: Started, workdir: Path, workload: Workload | None) -> subprocess.Popen[bytes]:
    control = workdir / "monitrc"
    control.write_text(monit_control(workdir, workload))
    control.chmod(0o600)  # Monit refuses a control file others can read
    with open(workdir / "monit.out", "wb") as out:
        process = started.add(
            subprocess.Popen([MONIT, "-c", str(control), "-I"], stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        )
    wait_until("Monit", lambda: "started" in (workdir / "monit.log").read_text(), process)
    return process


def netdata_conf(workdir: Path, port: int) -> str:
    """Netdata in the foreground: RAM database, ML, registry, cloud and statsd off, web on 127.0.0.1 only."""
    dirs = {name: workdir / name for name in ("etc", "cache", "lib", "log", "lock")}
    for folder in dirs.values():
        folder.mkdir(exist_ok=True)
    (dirs["etc"] / ".opt-out-from-anonymous-statistics").touch()  # no telemetry
    (dirs["etc"] / "cloud.conf").write_text("[global]\n    enabled = no\n")
    return "\n".join([
        "[global]", "    run as user = root", "    hostname = footprint",
        "[db]", "    mode = ram", "    update every = 1",
        "[directories]", f"    config = {dirs['etc']}", "    stock config = /usr/lib/netdata/conf.d",
        f"    cache = {dirs['cache']}", f"    lib = {dirs['lib']}", f"    log = {dirs['log']}", f"    lock = {dirs['lock']}",
        "[logs]", f"    error = {dirs['log'] / 'error.log'}", "    access = none", "    debug = none",
        "[web]", f"    bind to = 127.0.0.1:{port}",
        "[ml]", "    enabled = no",
        "[registry]", "    enabled = no",
        "[cloud]", "    enabled = no",
        "[statsd]", "    enabled = no",
    ]) + "\n"


def start_netdata(started: Started, workdir: Path) -> subprocess.Popen[bytes]:
    port = free_port()
    conf = workdir / "netdata.conf"
    conf.write_text(netdata_conf(workdir, port))
    with open(workdir / "netdata.out", "wb") as out:
        process = started.add(
            subprocess.Popen(
                [NETDATA, "-D", "-c", str(conf)], cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                env=dict(os.environ, DO_NOT_TRACK="1", DISABLE_TELEMETRY="1"),
            )
        )
    url = f"http://127.0.0.1:{port}/api/v1/info"
    wait_until("Netdata", lambda: httpx.get(url, timeout=5).status_code == 200, process)
    return process


@dataclass
class Window:
    """What was seen over one measured window, per side."""

    rss_mib: dict[str, list[float]]
    cpu_s: dict[str, float]
    parts_rss_mib: dict[str, float]
    parts_cpu_s: dict[str, float]
    scrapes: Counter[str]


def measure(sides: dict[str, dict[str, int]], scrape_urls: dict[str, str], timing: Timing) -> Window:
    """Warm up, then sample RSS every second and CPU around the window; scrape /metrics on the way.

    ``sides`` maps a side to its named processes ({"healwatch": {"agent": pid}, ...}).
    """
    parts = {name: pid for named in sides.values() for name, pid in named.items()}
    rss: dict[str, list[float]] = {side: [] for side in sides}
    scrapes: Counter[str] = Counter()
    cpu_start: dict[str, float] = {}
    started = time.monotonic()
    with httpx.Client(timeout=10.0, headers=SCRAPE_HEADERS) as client:
        for tick in range(timing.warmup_s + timing.window_s + 1):
            time.sleep(max(0.0, started + tick - time.monotonic()))
            if tick == timing.warmup_s:
                cpu_start = {name: tree_cpu_seconds([pid]) for name, pid in parts.items()}
            if tick % timing.scrape_every_s == 0:
                for target, url in scrape_urls.items():
                    try:
                        ok = client.get(url).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    scrapes[f"{target}_{'ok' if ok else 'failed'}"] += 1
            if tick > timing.warmup_s:
                for side, named in sides.items():
                    rss[side].append(tree_rss_bytes(list(named.values())) / 2**20)
        cpu_end = {name: tree_cpu_seconds([pid]) for name, pid in parts.items()}
    parts_cpu = {name: cpu_end[name] - cpu_start[name] for name in parts}
    return Window(
        rss_mib=rss,
        cpu_s={side: sum(parts_cpu[name] for name in named) for side, named in sides.items()},
        parts_rss_mib={name: tree_rss_bytes([pid]) / 2**20 for name, pid in parts.items()},
        parts_cpu_s=parts_cpu,
        scrapes=scrapes,
    )


def metric_sum(text: str, name: str, must_contain: str = "") -> float:
    """Sum of the samples of ``name`` (any labels) whose line contains ``must_contain``."""
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and must_contain in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def agent_health(url: str) -> dict[str, float]:
    """What the agent says about its own checks and rules, to show it did the work."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    lines = text.splitlines()
    return {
        "series_in_store": metric_sum(text, "healwatch_series"),
        "check_runs_success": metric_sum(text, "healwatch_check_runs_total", 'result="success"'),
        "check_runs_failure": metric_sum(text, "healwatch_check_runs_total", 'result="failure"'),
        "processes_up": metric_sum(text, "healwatch_process_up"),
        "rule_groups": float(sum(1 for line in lines if line.startswith("healwatch_rule_group_rules{"))),
        "rules": metric_sum(text, "healwatch_rule_group_rules"),
        "rule_evaluations": metric_sum(text, "healwatch_rule_evaluations_total"),
        "rule_evaluation_failures": metric_sum(text, "healwatch_rule_evaluation_failures_total"),
        # One evaluation of every group, back to back: the rules' share of each 15 s interval.
        "rule_groups_last_duration_s_sum": metric_sum(text, "healwatch_rule_group_last_duration_seconds"),
        "alerts_firing": float(sum(1 for line in lines if line.startswith("ALERTS{") and 'alertstate="firing"' in line)),
    }


def monit_log_problems(workdir: Path) -> int:
    """Lines Monit logged at error level (a process it could not find, a failed port test)."""
    return sum(1 for line in (workdir / "monit.log").read_text().splitlines() if MONIT_ERROR.match(line))


def summarise(window: Window, timing: Timing) -> dict[str, Any]:
    end = max(1, timing.window_s // 4)  # "at the end": the last quarter of the window
    sides = {}
    for side, samples in window.rss_mib.items():
        sides[side] = {
            "rss_mib_end_median": round(statistics.median(samples[-end:]), 2),
            "rss_mib_window_min": round(min(samples), 2),
            "rss_mib_window_max": round(max(samples), 2),
            "cpu_s": round(window.cpu_s[side], 3),
            "cpu_pct_of_one_core": round(100 * window.cpu_s[side] / timing.window_s, 3),
        }
    return {
        "sides": sides,
        "parts": {
            name: {"rss_mib_at_end": round(window.parts_rss_mib[name], 2), "cpu_s": round(window.parts_cpu_s[name], 3)}
            for name in window.parts_cpu_s
        },
        "rss_mib_samples": {side: [round(v, 2) for v in samples] for side, samples in window.rss_mib.items()},
        "metrics_scrapes": dict(window.scrapes),
    }


def run_phase(loaded: bool, timing: Timing, root: Path, tls: bool = False) -> dict[str, Any]:
    """One phase: start both sides (and the watched services when loaded), measure, stop everything."""
    workdir = root / ("loaded" if loaded else "idle")
    agent_dir, peer_dir = workdir / "agent", workdir / "peer"
    agent_dir.mkdir(parents=True)
    peer_dir.mkdir()
    started = Started()
    endpoints: Endpoints | None = None
    try:
        workload = None
        config = None
        if loaded:
            context = TestCA(workdir).issue("endpoints").server_context() if tls else None
            endpoints = Endpoints(SERVICES, context)
            pidfiles = []
            for index in range(SERVICES):
                sleeper = started.add(subprocess.Popen([SLEEP, "3600"], stdin=subprocess.DEVNULL))
                pidfile = workdir / f"{service_name(index)}.pid"
                pidfile.write_text(f"{sleeper.pid}\n")
                pidfiles.append(pidfile)
            workload = Workload(pidfiles, endpoints.ports, tls)
            (agent_dir / "bench.rules.yml").write_text(build_rules_yaml())
            config = agent_dir / "agent.yaml"
            config.write_text(agent_loaded_yaml(workload, "bench.rules.yml"))
        agent, agent_url = start_agent(started, agent_dir, config)
        node, node_url = start_node_exporter(started, peer_dir)
        monit = start_monit(started, peer_dir, workload)
        sides = {"healwatch": {"agent": agent.pid}, "peer": {"node_exporter": node.pid, "monit": monit.pid}}
        if Path(NETDATA).exists():
            netdata_dir = workdir / "netdata"
            netdata_dir.mkdir()
            sides["netdata"] = {"netdata": start_netdata(started, netdata_dir).pid}
        counts_before = Counter(endpoints.counts) if endpoints else Counter()
        health_before = agent_health(agent_url)
        window = measure(
            sides,
            {"healwatch": f"{agent_url}/metrics", "node_exporter": f"{node_url}/metrics"},
            timing,
        )
        health_after = agent_health(agent_url)
        result = summarise(window, timing)
        runs = [h["check_runs_success"] + h["check_runs_failure"] for h in (health_before, health_after)]
        result["agent"] = {
            "config": "built-in default (agent/config/default.yaml)" if config is None else f"{SERVICES} services, {RULES} rules",
            "at_end": health_after,
            "check_runs_in_measure": runs[1] - runs[0],
        }
        result["tls"] = tls
        result["monit_error_lines"] = monit_log_problems(peer_dir)
        if endpoints:
            seen = Counter(endpoints.counts)
            seen.subtract(counts_before)
            result["endpoint_hits_during_measure"] = dict(seen)
    finally:
        started.stop_all()
        if endpoints:
            endpoints.stop()
    return result


# -- the report ----------------------------------------------------------------------------


def report_rows(idle: dict[str, Any], loaded: dict[str, Any], peer: str, netdata: str) -> list[dict[str, Any]]:
    def row(row_id: str, what: str, unit: str, phase: dict[str, Any], key: str, side: str = "peer") -> dict[str, Any]:
        return {
            "row": row_id,
            "what": what,
            "unit": unit,
            "healwatch": phase["sides"]["healwatch"][key],
            "peer": phase["sides"][side][key],
            "peer_name": peer if side == "peer" else netdata,
            "lower_is_better": True,
        }

    over = " over TLS" if loaded.get("tls") else ""
    loaded_what = f"{SERVICES} services (process + HTTP/TCP check{over} at 1 s), {RULES} rules; Monit has no rule engine"
    idle_what = "default config; peer: node_exporter + Monit summed"
    return [
        row("footprint_idle_rss", f"RSS at idle, {idle_what}", "MiB", idle, "rss_mib_end_median"),
        row("footprint_idle_cpu", f"CPU at idle, % of one core, {idle_what}", "%", idle, "cpu_pct_of_one_core"),
        row("footprint_loaded_rss", f"RSS, {loaded_what}", "MiB", loaded, "rss_mib_end_median"),
        row("footprint_loaded_cpu", f"CPU, % of one core, {loaded_what}", "%", loaded, "cpu_pct_of_one_core"),
    ] + ([
        row(f"footprint_{phase}_{what}_netdata", f"{label} beside {netdata} (RAM database, ML off, default collectors)",
            unit, values, key, "netdata")
        for phase, values in (("idle", idle), ("loaded", loaded))
        for what, label, unit, key in (("rss", f"RSS, {phase}", "MiB", "rss_mib_end_median"),
                                       ("cpu", f"CPU, {phase}, % of one core", "%", "cpu_pct_of_one_core"))
    ] if "netdata" in idle["sides"] else [])


METHOD = {
    "sides": "Both sides run at the same time in each phase (idle, then loaded), so load from other "
    "processes on this shared host falls on both; each phase starts fresh processes.",
    "rss": "psutil RSS sampled every second over the window; healwatch: the agent process plus any "
    "children; peer: node_exporter + Monit summed. Reported: the median of the samples in the last "
    "quarter of the window. The agent's store keeps filling its 10-minute retention during the run, "
    "so its RSS is not yet at its 10-minute plateau.",
    "cpu": "user+system CPU seconds of each process tree (plus reaped children) between the start "
    "and the end of the window, divided by the window: percent of one core.",
    "scrapes": "The agent's /metrics and node_exporter's /metrics are both scraped (Prometheus' "
    "Accept header, gzip) on the window's clock, including the warm-up; node_exporter gathers "
    "its metrics only when scraped, so this is what makes its CPU comparable.",
    "idle": "healwatch: `python3 -m agent.cli run` with no -c (the built-in default config: host "
    "collector every 15 s, default rules) in a temp working directory holding its state database. "
    "Peer: node_exporter with its default collectors; Monit with `set daemon 1`, no httpd, no "
    "services (only its implicit system check).",
    "loaded": "50 sleeping processes (/usr/bin/sleep, pidfiles) and one loopback endpoint per service (one "
    "asyncio thread in the benchmark process, answering HTTP 200 with keep-alive; TCP checks just "
    "connect). healwatch: each service has a process check and an HTTP (even) or TCP (odd) check, "
    "both every 1 s, process metrics at the default 15 s, plus 500 generated alerting rules in 10 "
    "groups at the default 15 s (thresholds, rate, avg/max/min/quantile_over_time, increase, "
    "aggregations over host and service series) and the default rules. Monit: the same 50 "
    "pidfiles as `check process` with the same HTTP/TCP port test, 1 s cycle. Monit has no rule "
    "engine, so the peer evaluates no rules: what the 500 rules cost is inside healwatch's figures only.",
    "warm_up": "The phases last minutes, not hours: the rules' 5-minute range selectors hold at most "
    "the ~80 s of data collected so far, so rule evaluation costs less than at steady state "
    "(phases.loaded.agent.at_end.rule_groups_last_duration_s_sum is one evaluation of every group), "
    "and the store has not reached its retention.",
    "load_dependence": "A large share of the loaded agent's CPU is re-rendering /metrics: every "
    "finished job (100 check runs/s here) asks for a render, throttled to one per 0.25 s after the "
    "previous one ends (agent/daemon.py, MIN_RENDER_INTERVAL_S); a render of ~1,600 series (text and "
    "OpenMetrics, both gzipped) took ~35 ms, so up to ~3.5 renders/s, ~12% of a core. When other "
    "processes compete for the CPU a render takes longer and fewer happen: on this 2-core host the "
    "loaded figure was 27-29% of a core with a load average below 1 and ~12% with a load average "
    "of 3-4.5 from other work. Compare repeats, and read load_avg next to it.",
    "log_level": "the agent runs at its default log level (info), logs to a file.",
}


def run(timing: Timing, quick: bool, tls: bool) -> dict[str, Any]:
    found = versions()
    peer = peer_name(found)
    load_before = os.getloadavg()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    rules = parse_rules(build_rules_yaml(), "bench.rules.yml")  # fail before starting anything
    with tempfile.TemporaryDirectory(prefix="healwatch-footprint-") as tmp:
        idle = run_phase(False, timing, Path(tmp))
        loaded = run_phase(True, timing, Path(tmp), tls)
    return {
        "benchmark": "footprint",
        "command": " ".join(["python3", "-m", "bench.footprint", *sys.argv[1:]]),
        "started_at": started_at,
        "quick": quick,
        "tls": tls,
        "cpus": os.cpu_count(),
        "load_avg": list(os.getloadavg()),
        "load_avg_before": list(load_before),
        "versions": found,
        "timing": {
            "warmup_s": timing.warmup_s,
            "window_s": timing.window_s,
            "rss_sample_every_s": 1,
            "metrics_scrape_every_s": timing.scrape_every_s,
        },
        "rule_groups": len(rules),
        "rules": sum(len(group.rules) for group in rules),
        "method": METHOD,
        "phases": {"idle": idle, "loaded": loaded},
        "report": report_rows(idle, loaded, peer, found.get("netdata", "netdata")),
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"{'row':<30}{'unit':>5}{'healwatch':>11}{'peer':>10}{'ratio':>8}   ({result['report'][0]['peer_name']})")
    for row in result["report"]:
        ratio = row["healwatch"] / row["peer"] if row["peer"] else float("nan")
        print(f"{row['row']:<30}{row['unit']:>5}{row['healwatch']:>11.2f}{row['peer']:>10.2f}{ratio:>8.2f}")
    print(f"cpus {result['cpus']}, load average {result['load_avg_before'][0]:.2f} -> {result['load_avg'][0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.window_s} s windows instead of {FULL.window_s} s")
    parser.add_argument("--tls", action="store_true", help="the loaded phase's checks over TLS (HTTPS, TLS handshakes)")
    args = parser.parse_args()
    for program in (NODE_EXPORTER, MONIT, SLEEP):
        if not Path(program).exists():
            parser.error(f"{program} not found (Debian packages prometheus-node-exporter, monit, coreutils)")
    timing = QUICK if args.quick else FULL
    run_and_write("footprint", lambda: run(timing, args.quick, args.tls), args.output, print_table)


if __name__ == "__main__":
    main()
