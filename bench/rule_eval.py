"""Rule evaluation: 500 alerting rules over 10,000 series, healwatch next to Prometheus 2.42.

Run from the repository root: ``python3 -m bench.rule_eval [--quick] [--output PATH]``. Both sides get the
same 10,000 series (one sample per second) and the same rule file, 10 groups of
50 alerting rules with 5-minute windows.

healwatch: a ``SeriesStore`` holding 5 minutes (300 samples per series) and
``RuleGroup.evaluate`` of every group, timed (wall and CPU) over repeated
evaluations, 10 s of new samples fed (untimed) between them as the agent would.

Prometheus: started on 127.0.0.1 with an empty rule file and an empty data
directory; the series are pushed into its head through its remote-write
receiver (5 minutes back and a few minutes ahead of now, so every evaluation
during the run sees full 300-sample windows), then the rules are written and
loaded with ``/-/reload``. Its ``prometheus_rule_group_last_duration_seconds``,
summed over the groups, is one evaluation.

Also: alert agreement (healwatch evaluated at each Prometheus group's own
evaluation timestamp, same data), 5 vs 30 minutes retained, cost against series
touched (10 to 100 series per rule), and the time of one rule per rule shape.
Prints a table and writes bench/results/rule_eval.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from bench.output import write_json
from bench.scrape_latency import listening_port, version_number
from harness.processes import stop
from rules.group import RuleGroup
from rules.model import Labels
from rules.promql import Engine
from rules.promql.ast import Expr, VectorSelector, children
from rules.rulefile import parse_rules
from rules.store import SeriesStore

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = REPO_ROOT / "bench" / "results" / "rule_eval.json"
PROMETHEUS = "/usr/bin/prometheus"
RULE_FILE = "bench.rules.yml"
INTERVAL_S = 10
WINDOW_S = 300
TARGET_MS = 50.0
TARGET_RATIO = 3.0

COUNTER_NAMES = 40
GAUGE_NAMES = 40
HISTOGRAM_NAMES = 20
JOBS = 10
INSTANCES = 10
BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf")
# Counters start from this epoch second so values stay exact integers in float64.
COUNTER_ORIGIN_S = 1_700_000_000
RESET_PERIOD_S = 240  # every 25th counter resets this often: one reset in most 5-minute windows
GROUPS = 10
RULES_PER_GROUP = 50


@dataclass(frozen=True)
class BenchSeries:
    """One synthetic series: its labels and how its value moves with time."""

    labels: Labels
    kind: str  # "counter" | "gauge"
    slope: float  # counters: increase per second
    level: float  # gauges: mean value
    phase: float  # gauges: sine phase
    resets: bool = False

    def values(self, seconds: np.ndarray) -> np.ndarray:
        """Values at whole epoch ``seconds``."""
        if self.kind == "counter":
            elapsed = seconds - COUNTER_ORIGIN_S
            if self.resets:
                elapsed = elapsed % RESET_PERIOD_S
            return self.slope * elapsed.astype(np.float64)
        return self.level + 5.0 * np.sin(seconds / 37.0 + self.phase)


def _job(j: int) -> str:
    return f"job-{j}"


def _instance(k: int) -> str:
    return f"host-{k}:9100"


def build_series() -> list[BenchSeries]:
    """10,000 series: 40 counters and 40 gauges by job x instance, 20 histograms by job x le."""
    series: list[BenchSeries] = []
    for i in range(COUNTER_NAMES):
        for j in range(JOBS):
            for k in range(INSTANCES):
                labels = Labels.of(f"bench_requests_{i}_total", {"job": _job(j), "instance": _instance(k)})
                index = len(series)
                series.append(BenchSeries(labels, "counter", 1.0 + (i * 7 + j * 3 + k) % 20, 0.0, 0.0, index % 25 == 0))
    for i in range(GAUGE_NAMES):
        for j in range(JOBS):
            for k in range(INSTANCES):
                labels = Labels.of(f"bench_gauge_{i}", {"job": _job(j), "instance": _instance(k)})
                series.append(BenchSeries(labels, "gauge", 0.0, 10.0 * (1 + (i + j + k) % 10), 0.1 * (i + k), False))
    for i in range(HISTOGRAM_NAMES):
        # Cumulative share of observations at or below each bound; the tail grows with i.
        tail = 0.002 + 0.001 * (i % 10)
        shares = [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0 - tail, 1.0]
        for j in range(JOBS):
            for le, share in zip(BUCKETS, shares):
                labels = Labels.of(f"bench_latency_{i}_seconds_bucket", {"job": _job(j), "le": le})
                series.append(BenchSeries(labels, "counter", share * (10 + j), 0.0, 0.0, False))
    return series


def _rule_exprs(n: int) -> tuple[str, str]:
    """The n-th rule (0..499): a name and a PromQL expression touching about 20-100 series."""
    shape = n % 25
    c = n % COUNTER_NAMES
    g = (n * 3) % GAUGE_NAMES
    h = n % HISTOGRAM_NAMES
    counter = f"bench_requests_{c}_total"
    gauge = f"bench_gauge_{g}"
    if shape < 5:  # 100 rules, 50 series each
        return "RateHigh", f'rate({counter}{{job=~"job-[0-4]"}}[5m]) > {19.5 + 2 * shape}'
    if shape < 9:  # 80 rules, 100 series in, 10 out
        return "JobRateHigh", f"sum by (job) (rate({counter}[5m])) > {150 + 20 * (shape - 5)}"
    if shape < 13:  # 80 rules, 50 series
        return "GaugeAvgHigh", f'avg_over_time({gauge}{{instance=~"host-[0-4]:9100"}}[5m]) > {99 + 5 * (shape - 9)}'
    if shape < 17:  # 80 rules, 100 series
        return "GaugeMaxHigh", f"max_over_time({gauge}[5m]) > {104.5 + 1.5 * (shape % 4)}"
    if shape < 20:  # 60 rules, 20 series
        return "IncreaseHigh", f'increase({counter}{{job=~"job-[78]"}}[5m]) > {5700 + 500 * (shape - 17)}'
    if shape < 24:  # 80 rules, 30 + 30 series
        return "RateAndGauge", (
            f'rate({counter}{{job=~"job-[0-2]"}}[5m]) > {15.5 - shape % 4} '
            f'and on (job, instance) {gauge}{{job=~"job-[0-2]"}} > {80 + 5 * (shape % 4)}'
        )
    # 20 rules, 100 series
    return "LatencyP99High", (
        f"histogram_quantile(0.99, sum by (le) (rate(bench_latency_{h}_seconds_bucket[5m]))) > {1.0 + 0.05 * (n % 7)}"
    )


def build_rules_yaml() -> str:
    """Ten groups of 50 alerting rules; a tenth wait 10 minutes (stay pending), the rest fire at once."""
    lines = ["groups:"]
    for group in range(GROUPS):
        lines += [f"  - name: bench-{group}", "    rules:"]
        for slot in range(RULES_PER_GROUP):
            n = group * RULES_PER_GROUP + slot
            name, expr = _rule_exprs(n)
            lines += [
                f"      - alert: {name}{n}",
                f"        expr: '{expr}'",
                f"        for: {'10m' if n % 10 == 9 else '0s'}",
                "        labels: {severity: warning}",
                "        annotations:",
                '          summary: "{{ $labels.job }} {{ $labels.instance }} at {{ $value }}"',
            ]
    return "\n".join(lines) + "\n"


def load_groups(text: str) -> list[RuleGroup]:
    engine = Engine()
    return [RuleGroup(spec, float(INTERVAL_S), engine) for spec in parse_rules(text, RULE_FILE)]


def evaluate_all(groups: list[RuleGroup], store: SeriesStore, now_s: float) -> None:
    for group in groups:
        group.evaluate(store, now_s)


def spread(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2), "max": round(max(values), 2)}


# -- healwatch -------------------------------------------------------------------------


@dataclass
class Timed:
    """One store and its groups, with the timings of their evaluations."""

    retained_s: int
    store: SeriesStore
    groups: list[RuleGroup]
    wall_ms: list[float] = dataclasses.field(default_factory=list)
    cpu_ms: list[float] = dataclasses.field(default_factory=list)
    busy_ms: list[float] = dataclasses.field(default_factory=list)

    def evaluate(self, now_s: int) -> None:
        wall_started, cpu_started = time.perf_counter(), time.process_time()
        evaluate_all(self.groups, self.store, now_s)
        self.wall_ms.append((time.perf_counter() - wall_started) * 1000)
        self.cpu_ms.append((time.process_time() - cpu_started) * 1000)
        self.busy_ms.append(sum(g.stats.last_duration_s for g in self.groups) * 1000)

    def report(self) -> dict[str, Any]:
        rules = [rule for group in self.groups for rule in group.rules]
        touched = sum(len(self.store.select(s.matchers)) for rule in rules for s in selectors(rule.expr))
        return {
            "retained_s": self.retained_s,
            "samples_retained_per_series": len(self.store.select([])[0]),
            "runs": len(self.wall_ms),
            "wall_ms": spread(self.wall_ms),
            "cpu_ms": spread(self.cpu_ms),
            "sum_group_last_duration_ms": spread(self.busy_ms),
            "active_alerts": sum(len(r.active) for g in self.groups for r in g.alerting_rules()),
            "series_touched": touched,
        }


def time_healwatch(
    series: list[BenchSeries], text: str, end_s: int, runs: int, retentions: list[int]
) -> tuple[list[Timed], int]:
    """Evaluate every group ``runs`` times per retention, alternating stores so host load falls on all alike.

    Before each timed evaluation 10 s of samples are fed and expired ones evicted (untimed),
    as the agent does between evaluations. Returns the timings and the last evaluation time.
    """
    setups = []
    for retained_s in retentions:
        store = fill_store(series, end_s - retained_s + 1, end_s, retention_s=retained_s)
        setups.append(Timed(retained_s, store, load_groups(text)))
    for setup in setups:
        evaluate_all(setup.groups, setup.store, end_s)  # warm-up: parses templates, creates ALERTS series
    now_s = end_s
    for _ in range(runs):
        now_s += INTERVAL_S
        for setup in setups:
            feed(setup.store, series, now_s - INTERVAL_S + 1, now_s)
            setup.store.evict(now_s * 1000)
            setup.evaluate(now_s)
    return setups, now_s


def touched_scaling(store: SeriesStore, now_s: int, runs: int) -> list[dict[str, Any]]:
    """500 never-firing rules selecting 1, 2, 5 or 10 jobs (10 to 100 series each): cost per series touched."""
    configs = {}
    for jobs in (1, 2, 5, 10):
        matcher = f'job=~"job-[0-{jobs - 1}]"'
        lines = ["groups:"]
        for group in range(GROUPS):
            lines += [f"  - name: touched-{group}", "    rules:"]
            for slot in range(RULES_PER_GROUP):
                n = group * RULES_PER_GROUP + slot
                expr = (
                    f"rate(bench_requests_{n % COUNTER_NAMES}_total{{{matcher}}}[5m]) > 1e9"
                    if n % 2 == 0
                    else f"max_over_time(bench_gauge_{n % GAUGE_NAMES}{{{matcher}}}[5m]) > 1e9"
                )
                lines += [f"      - alert: Touched{n}", f"        expr: '{expr}'"]
        groups = load_groups("\n".join(lines) + "\n")
        evaluate_all(groups, store, now_s)
        configs[jobs] = Timed(WINDOW_S, store, groups)
    for _ in range(runs):
        for timed in configs.values():
            timed.evaluate(now_s)
    out = []
    for jobs, timed in configs.items():
        median_ms = statistics.median(timed.busy_ms)
        touched = jobs * INSTANCES * GROUPS * RULES_PER_GROUP
        out.append({
            "series_per_rule": jobs * INSTANCES,
            "series_touched": touched,
            "sum_group_last_duration_ms": spread(timed.busy_ms),
            "us_per_series_touched": round(median_ms * 1000 / touched, 2),
        })
    return out


def feed(store: SeriesStore, series: list[BenchSeries], first_s: int, last_s: int) -> None:
    """Append one sample per second from ``first_s`` to ``last_s`` to every series, time-major."""
    seconds = np.arange(first_s, last_s + 1, dtype=np.int64)
    columns = [s.values(seconds).tolist() for s in series]
    for offset, second in enumerate(seconds.tolist()):
        t_ms = second * 1000
        for item, column in zip(series, columns):
            store.append(item.labels, t_ms, column[offset])


def fill_store(series: list[BenchSeries], first_s: int, last_s: int, retention_s: float) -> SeriesStore:
    """A store holding one sample per second from ``first_s`` to ``last_s`` for every series."""
    store = SeriesStore(retention_s=retention_s, max_series=len(series) + 10_000)
    chunk_s = 60
    for chunk_start in range(first_s, last_s + 1, chunk_s):
        feed(store, series, chunk_start, min(chunk_start + chunk_s - 1, last_s))
    return store


def selectors(expr: Expr) -> Iterator[VectorSelector]:
    """Every vector selector in ``expr`` (inside matrix selectors too)."""
    if isinstance(expr, VectorSelector):
        yield expr
        return
    for child in children(expr):
        yield from selectors(child)


# -- Prometheus remote write: protobuf by hand, snappy as one literal -------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _samples_bytes(seconds: np.ndarray, values: np.ndarray) -> bytes:
    """Repeated ``Sample{value=1 double, timestamp=2 int64}`` fields, built column-wise with numpy."""
    ms = seconds.astype(np.uint64) * np.uint64(1000)
    digits = 1
    while (int(ms.max()) >> (7 * digits)) > 0:
        digits += 1
    if (int(ms.min()) >> (7 * (digits - 1))) == 0:
        raise ValueError("timestamps of one batch must share a varint length")
    body = 1 + 8 + 1 + digits
    rows = np.empty((len(ms), 2 + body), dtype=np.uint8)
    rows[:, 0] = 2 << 3 | 2
    rows[:, 1] = body
    rows[:, 2] = 1 << 3 | 1
    rows[:, 3:11] = values.astype("<f8").view(np.uint8).reshape(-1, 8)
    rows[:, 11] = 2 << 3
    for i in range(digits):
        byte = (ms >> np.uint64(7 * i)) & np.uint64(0x7F)
        rows[:, 12 + i] = byte | (np.uint64(0x80) if i < digits - 1 else np.uint64(0))
    return rows.tobytes()


def write_request(batch: list[BenchSeries], seconds: np.ndarray) -> bytes:
    """A snappy-framed remote-write ``WriteRequest`` with every sample of ``batch`` at ``seconds``."""
    message = bytearray()
    for item in batch:
        labels = b"".join(_field(1, _field(1, k.encode()) + _field(2, v.encode())) for k, v in item.labels)
        message += _field(1, labels + _samples_bytes(seconds, item.values(seconds)))
    # Snappy block format holding one literal: valid for any decoder, no compression needed on loopback.
    size = len(message)
    return _varint(size) + bytes([63 << 2]) + (size - 1).to_bytes(4, "little") + bytes(message)


def push(client: httpx.Client, url: str, series: list[BenchSeries], first_s: int, last_s: int) -> int:
    seconds = np.arange(first_s, last_s + 1, dtype=np.int64)
    headers = {
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }
    batch_size = 100
    for start in range(0, len(series), batch_size):
        response = client.post(url, content=write_request(series[start : start + batch_size], seconds), headers=headers)
        if response.status_code >= 300:
            raise RuntimeError(f"remote write answered {response.status_code}: {response.text[:300]}")
    return len(series) * len(seconds)


# -- Prometheus ----------------------------------------------------------------------------


def prometheus_version() -> str:
    result = subprocess.run([PROMETHEUS, "--version"], capture_output=True, text=True, timeout=10, check=False)
    return (result.stdout or result.stderr).splitlines()[0]


def metric_values(text: str, name: str) -> dict[str, float]:
    """``rule_group`` label -> value of metric ``name`` in a text exposition."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            group = labels.split('rule_group="', 1)[1].split('"', 1)[0]
            out[group] = float(value)
    return out


def run_prometheus(
    series: list[BenchSeries], text: str, workdir: Path, rounds: int, client: httpx.Client
) -> dict[str, Any]:
    """Push the series, load the rules, and read ``rounds`` evaluations of every group."""
    rule_path = workdir / RULE_FILE
    rule_path.write_text("groups: []\n")
    config = workdir / "prometheus.yml"
    config.write_text(
        f"global:\n  evaluation_interval: {INTERVAL_S}s\n  scrape_interval: 1m\nrule_files: [{rule_path}]\n"
    )
    start_s = int(time.time())
    # Enough future samples for the rounds, plus time to push and for the first round to come round.
    ahead_s = (rounds + 4) * INTERVAL_S + 60
    with open(workdir / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                "--storage.tsdb.retention.time=1d",
                "--web.listen-address=127.0.0.1:0",
                "--web.enable-remote-write-receiver",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=log,
        )
    try:
        base = f"http://127.0.0.1:{listening_port(process)}"
        wait_ready(client, base)
        push_started = time.perf_counter()
        pushed = push(client, f"{base}/api/v1/write", series, start_s - WINDOW_S - INTERVAL_S, start_s + ahead_s)
        push_s = time.perf_counter() - push_started
        rule_path.write_text(text)
        client.post(f"{base}/-/reload").raise_for_status()
        loaded_at = time.time()
        durations = collect_rounds(client, base, rounds, loaded_at, process.pid)
        agreement_input = snapshot_alerts(client, base)
        if time.time() > start_s + ahead_s - INTERVAL_S:
            raise RuntimeError("the run outlasted the pushed samples; windows were not full")
        return {
            "method": "remote write into the head (--web.enable-remote-write-receiver)",
            "samples_pushed": pushed,
            "push_s": round(push_s, 1),
            "data_s": [start_s - WINDOW_S - INTERVAL_S, start_s + ahead_s],
            **durations,
            "_alerts": agreement_input,
        }
    finally:
        stop(process)


def wait_ready(client: httpx.Client, base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if client.get(f"{base}/-/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("Prometheus did not become ready within 30 s")


def collect_rounds(client: httpx.Client, base: str, rounds: int, loaded_at: float, pid: int) -> dict[str, Any]:
    """Per group, the duration of each evaluation started after the rules loaded; summed round by round."""
    seen: dict[str, dict[float, float]] = {}
    cpu_start: tuple[float, float] | None = None
    deadline = time.monotonic() + (rounds + 3) * INTERVAL_S
    while time.monotonic() < deadline:
        page = client.get(f"{base}/metrics").text
        evaluated = metric_values(page, "prometheus_rule_group_last_evaluation_timestamp_seconds")
        duration = metric_values(page, "prometheus_rule_group_last_duration_seconds")
        for group, at in evaluated.items():
            if at > loaded_at + 0.5 and group in duration:
                seen.setdefault(group, {})[at] = duration[group]
        counts = [len(v) for v in seen.values()]
        if cpu_start is None and len(seen) == GROUPS and min(counts) >= 1:
            # CPU from the end of the first full round: the one after the reload is excluded.
            cpu_start = (cpu_seconds(pid), time.monotonic())
            first_round = {g: len(v) for g, v in seen.items()}
        if len(seen) == GROUPS and min(counts) >= rounds + 1:
            break
        time.sleep(0.5)
    if len(seen) < GROUPS or min(len(v) for v in seen.values()) < 2:
        raise RuntimeError("Prometheus did not evaluate every group in time")
    per_group = [[seen[g][at] for at in sorted(seen[g])] for g in sorted(seen)]
    # The first evaluation after a reload pays for compiling the rules; left out like our warm-up.
    usable = min(len(d) for d in per_group) - 1
    sums = [sum(d[k + 1] for d in per_group) * 1000 for k in range(usable)]
    assert cpu_start is not None
    evaluations = sum(len(v) - first_round[g] for g, v in seen.items()) / GROUPS
    cpu_ms = (cpu_seconds(pid) - cpu_start[0]) * 1000 / evaluations if evaluations else float("nan")
    return {
        "rounds": usable,
        "sum_group_last_duration_ms": spread(sums),
        "process_cpu_ms_per_round": round(cpu_ms, 2),
    }


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def snapshot_alerts(client: httpx.Client, base: str) -> dict[str, Any]:
    """Active alerts per rule and each group's evaluation timestamp (read back from its ALERTS samples)."""
    for _ in range(5):
        rules = client.get(f"{base}/api/v1/rules", params={"type": "alert"}).json()["data"]["groups"]
        stamps = client.get(f"{base}/api/v1/query", params={"query": "timestamp(ALERTS)"}).json()["data"]["result"]
        again = client.get(f"{base}/api/v1/rules", params={"type": "alert"}).json()["data"]["groups"]
        if [g["lastEvaluation"] for g in rules] != [g["lastEvaluation"] for g in again]:
            continue  # a group evaluated in between; read again
        group_of = {rule["name"]: group["name"] for group in rules for rule in group["rules"]}
        eval_s: dict[str, float] = {}
        for item in stamps:
            group = group_of[item["metric"]["alertname"]]
            eval_s[group] = max(eval_s.get(group, 0.0), float(item["value"][1]))
        alerts = {
            rule["name"]: sorted(tuple(sorted(a["labels"].items())) + (("state", a["state"]),) for a in rule["alerts"])
            for group in rules
            for rule in group["rules"]
        }
        last = {g["name"]: _rfc3339_s(g["lastEvaluation"]) for g in rules}
        if all(0 <= last[g] - eval_s.get(g, -1e9) < 1.0 for g in last):
            busy_us = {rule["name"]: rule["evaluationTime"] * 1e6 for group in rules for rule in group["rules"]}
            return {"eval_s": eval_s, "alerts": alerts, "rule_us": busy_us}
        time.sleep(0.3)
    raise RuntimeError("could not read a consistent alert snapshot from Prometheus")


def _rfc3339_s(text: str) -> float:
    whole, _, fraction = text.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(whole + "+00:00").timestamp()
    return seconds + (float("0." + fraction) if fraction else 0.0)


def agreement(series: list[BenchSeries], text: str, snapshot: dict[str, Any], data_s: list[int]) -> dict[str, Any]:
    """healwatch evaluated at each Prometheus group's own timestamp over the same samples: same alerts?"""
    store = fill_store(series, data_s[0], data_s[1], retention_s=data_s[1] - data_s[0] + 60)
    mismatched: list[str] = []
    rules = alerts = 0
    for group in load_groups(text):
        at_s = snapshot["eval_s"][group.spec.name]
        group.evaluate(store, at_s)
        for rule in group.alerting_rules():
            ours = sorted(
                tuple(sorted(alert.labels.as_dict().items())) + (("state", str(alert.state)),)
                for alert in rule.active.values()
            )
            theirs = [tuple(map(tuple, a)) for a in snapshot["alerts"][rule.name]]
            rules += 1
            alerts += len(theirs)
            if ours != theirs:
                mismatched.append(rule.name)
    return {"rules_compared": rules, "alerts_prometheus": alerts, "rules_disagreeing": mismatched}


# -- the run -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_before = os.getloadavg()
    series = build_series()
    text = build_rules_yaml()
    end_s = COUNTER_ORIGIN_S + 100_000
    # Our side first, then Prometheus: the two never share the CPUs.
    setups, now_s = time_healwatch(series, text, end_s, args.runs, [WINDOW_S, args.long_retention_s])
    ours, longer = (setup.report() for setup in setups)
    touched = touched_scaling(setups[0].store, now_s, args.runs)
    setups_last = {rule.spec.name: rule.last_duration_s * 1e6 for group in setups[0].groups for rule in group.rules}
    del setups
    with tempfile.TemporaryDirectory(prefix="healwatch-rule-bench-") as tmp, httpx.Client(timeout=60.0) as client:
        theirs = run_prometheus(series, text, Path(tmp), args.rounds, client)
    snapshot = theirs.pop("_alerts")
    agree = agreement(series, text, snapshot, theirs["data_s"])
    ours_ms = ours["sum_group_last_duration_ms"]["median"]
    theirs_ms = theirs["sum_group_last_duration_ms"]["median"]
    version = prometheus_version()
    return {
        "command": " ".join(["python3", "-m", "bench.rule_eval", *sys.argv[1:]]),
        "started_at": started_at,
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "host": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "numpy": np.__version__,
            "prometheus": version,
        },
        "workload": {
            "series": len(series),
            "rules": GROUPS * RULES_PER_GROUP,
            "groups": GROUPS,
            "window_s": WINDOW_S,
            "resolution_s": 1,
            "evaluation_interval_s": INTERVAL_S,
        },
        "healwatch": ours,
        "healwatch_long_retention": longer,
        "prometheus": theirs,
        "ratio_ours_over_theirs": round(ours_ms / theirs_ms, 2),
        "targets": {
            "ours_ms_max": TARGET_MS,
            "ratio_max": TARGET_RATIO,
            "ours_ms_met": ours_ms <= TARGET_MS,
            "ratio_met": ours_ms / theirs_ms <= TARGET_RATIO,
        },
        "retention_cost_ratio": round(
            longer["sum_group_last_duration_ms"]["median"] / ours["sum_group_last_duration_ms"]["median"], 2
        ),
        "touched_scaling": touched,
        "per_shape": per_shape(setups_last, snapshot["rule_us"]),
        "agreement": agree,
        "report": report_rows(ours, theirs, "Prometheus " + version_number(version)),
    }


def report_rows(ours: dict[str, Any], theirs: dict[str, Any], peer_name: str) -> list[dict[str, Any]]:
    """The rows of bench/report.py: one evaluation's duration and CPU, medians, healwatch next to Prometheus."""
    what = f"one evaluation of {GROUPS * RULES_PER_GROUP} rules over 10,000 series"
    common = {"unit": "ms", "peer_name": peer_name, "lower_is_better": True}
    return [
        {"row": "eval_ms", "what": f"{what}, sum of group durations", **common,
         "healwatch": ours["sum_group_last_duration_ms"]["median"],
         "peer": theirs["sum_group_last_duration_ms"]["median"]},
        {"row": "eval_cpu_ms", "what": f"{what}, CPU", **common,
         "healwatch": ours["cpu_ms"]["median"], "peer": theirs["process_cpu_ms_per_round"]},
    ]


def per_shape(ours_us: dict[str, float], theirs_us: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Median time of one rule per rule shape, from one evaluation on each side."""
    shapes: dict[str, list[str]] = {}
    for name in ours_us:
        shapes.setdefault(name.rstrip("0123456789"), []).append(name)
    out = {}
    for shape, names in shapes.items():
        ours = statistics.median(ours_us[n] for n in names)
        theirs = statistics.median(theirs_us[n] for n in names)
        out[shape] = {
            "rules": len(names),
            "example": _rule_exprs(int(names[0][len(shape):]))[1],
            "healwatch_us": round(ours),
            "prometheus_us": round(theirs),
            "ratio": round(ours / theirs, 2),
        }
    return out


def _ms(values: dict[str, float]) -> str:
    return f"{values['median']:9.1f} {values['min']:9.1f} {values['max']:9.1f}"


def print_table(report: dict[str, Any]) -> None:
    ours, longer, theirs = report["healwatch"], report["healwatch_long_retention"], report["prometheus"]
    cores = report["host"]["cpus"]
    print(f"one evaluation of {report['workload']['rules']} rules over {report['workload']['series']} series "
          f"({cores} CPUs; each side evaluates on one core at a time)")
    print(f"{'':44}{'median':>9} {'min':>9} {'max':>9}  ms")
    print(f"{'healwatch, sum of group durations':44}{_ms(ours['sum_group_last_duration_ms'])}")
    print(f"{'healwatch, wall':44}{_ms(ours['wall_ms'])}")
    print(f"{'healwatch, CPU':44}{_ms(ours['cpu_ms'])}")
    print(f"{'healwatch, 30 min retained (sum of groups)':44}{_ms(longer['sum_group_last_duration_ms'])}")
    print(f"{'Prometheus, sum of last_duration_seconds':44}{_ms(theirs['sum_group_last_duration_ms'])}")
    print(f"{'Prometheus, process CPU per round':44}{theirs['process_cpu_ms_per_round']:9.1f}")
    print(f"ratio healwatch/Prometheus (medians): {report['ratio_ours_over_theirs']}  "
          f"(targets: <= {TARGET_MS} ms, <= {TARGET_RATIO}x; met: {report['targets']})")
    print(f"cost 30 min / 5 min retained: {report['retention_cost_ratio']}")
    print("series touched per evaluation -> healwatch ms (median), us per series touched:")
    for row in report["touched_scaling"]:
        print(f"  {row['series_touched']:>7} -> {row['sum_group_last_duration_ms']['median']:8.1f}"
              f"  {row['us_per_series_touched']:6.2f}")
    print("one rule, by shape (us, median over the rules of one evaluation): healwatch, Prometheus, ratio")
    for shape, row in report["per_shape"].items():
        print(f"  {shape:<16}{row['rules']:>4} rules {row['healwatch_us']:>7} {row['prometheus_us']:>7} {row['ratio']:>6}")
    print(f"agreement with Prometheus: {report['agreement']}")


# --runs, --rounds and --long-retention-s of a full run and of --quick (a smoke test: the
# second store then retains only the window, so its cost ratio says nothing).
FULL = {"runs": 15, "rounds": 8, "long_retention_s": 1800}
QUICK = {"runs": 2, "rounds": 1, "long_retention_s": WINDOW_S}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help=f"timed healwatch evaluations per store (default {FULL['runs']})")
    parser.add_argument("--rounds", type=int, help=f"Prometheus evaluation rounds to read (default {FULL['rounds']})")
    parser.add_argument(
        "--long-retention-s", type=int, help=f"retention of the second store (default {FULL['long_retention_s']})"
    )
    parser.add_argument("--quick", action="store_true", help=f"a smoke test: {QUICK}")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="where to write the JSON")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.runs, args.rounds) < 1 or args.long_retention_s < WINDOW_S:
        parser.error(f"--runs and --rounds must be at least 1, --long-retention-s at least {WINDOW_S}")
    if not Path(PROMETHEUS).exists():
        parser.error(f"{PROMETHEUS} not found (Debian package prometheus)")
    report = run(args)
    print_table(report)
    write_json(args.output, report)


if __name__ == "__main__":
    main()
