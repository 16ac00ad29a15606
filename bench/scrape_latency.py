"""/metrics scrape latency and server CPU: healwatch's cached exposition next to node_exporter.

Run from the repository root: ``python3 -m bench.scrape_latency [--quick] [--output PATH]``. Starts
prometheus-node-exporter and a healwatch HttpServer subprocess on 127.0.0.1
ephemeral ports, scrapes each with one keep-alive client, sequentially, in
alternating blocks, at (a) node_exporter's own sample count on this host and
(b) about 10,000 samples (node_exporter reaches it through its textfile
collector). Prints a table and writes bench/results/scrape_latency.json.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.output import write_json
from bench.serve_synthetic import synthetic_families
from exporters.exposition import Exposition
from harness.processes import stop

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = REPO_ROOT / "bench" / "results" / "scrape_latency.json"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
# What a Prometheus scrape of a text-format exporter asks for; node_exporter
# serves text 0.0.4 only, so both sides send the same format.
SCRAPE_HEADERS = {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "gzip"}
STARTUP_TIMEOUT_S = 15.0
RENDER_REPEATS = 5


@dataclass(frozen=True)
class Target:
    name: str
    pid: int
    url: str


@dataclass(frozen=True)
class Measurement:
    target: str
    samples: int
    body_bytes: int
    requests: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    cpu_s_per_1000: float
    rss_mib: float


def listening_port(process: subprocess.Popen[bytes]) -> int:
    """The TCP port ``process`` listens on, waiting (bounded) for it to bind."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    observed = psutil.Process(process.pid)
    assert isinstance(process.args, list)  # started from an argv list
    program = os.fsdecode(process.args[0])
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{program} exited with status {process.returncode}")
        ports = [c.laddr.port for c in observed.net_connections("tcp") if c.status == "LISTEN"]
        if ports:
            return ports[0]
        time.sleep(0.05)
    raise RuntimeError(f"{program} did not listen within {STARTUP_TIMEOUT_S} s")


def scrape(client: httpx.Client, url: str) -> tuple[float, int]:
    """(seconds, body bytes as sent) of one scrape; the body is read raw, not inflated."""
    started = time.perf_counter()
    with client.stream("GET", url, headers=SCRAPE_HEADERS) as response:
        size = sum(len(chunk) for chunk in response.iter_raw())
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}")
    return elapsed, size


def count_samples(client: httpx.Client, url: str) -> int:
    """Sample lines in the uncompressed text exposition at ``url``."""
    response = client.get(url, headers={"Accept": SCRAPE_HEADERS["Accept"]})
    response.raise_for_status()
    return sum(1 for line in response.text.splitlines() if line and not line.startswith("#"))


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def compare(
    client: httpx.Client, targets: list[Target], requests: int, warmup: int, blocks: int
) -> dict[str, tuple[list[float], int, float]]:
    """Per target: latencies, last body size and CPU seconds, scraped in alternating blocks.

    Alternating spreads load from other processes on this shared host over all
    targets instead of penalising whichever runs during a busy spell. CPU is
    read once around the timed phase: each server idles while the other is
    scraped, so its own idle cost (tiny for both) is included.
    """
    for target in targets:
        for _ in range(warmup):
            scrape(client, target.url)
    latencies: dict[str, list[float]] = {target.name: [] for target in targets}
    sizes = dict.fromkeys(latencies, 0)
    cpu_before = {target.name: cpu_seconds(target.pid) for target in targets}
    per_block = math.ceil(requests / blocks)
    for _ in range(blocks):
        for target in targets:
            samples = latencies[target.name]
            for _ in range(min(per_block, requests - len(samples))):
                elapsed, sizes[target.name] = scrape(client, target.url)
                samples.append(elapsed)
    return {
        target.name: (
            latencies[target.name],
            sizes[target.name],
            cpu_seconds(target.pid) - cpu_before[target.name],
        )
        for target in targets
    }


def measure(
    client: httpx.Client, targets: list[Target], requests: int, warmup: int, blocks: int
) -> list[Measurement]:
    samples = {target.name: count_samples(client, target.url) for target in targets}
    raw = compare(client, targets, requests, warmup, blocks)
    results = []
    for target in targets:
        latencies, size, cpu = raw[target.name]
        latencies_ms = sorted(seconds * 1000 for seconds in latencies)
        results.append(
            Measurement(
                target=target.name,
                samples=samples[target.name],
                body_bytes=size,
                requests=len(latencies_ms),
                p50_ms=round(percentile(latencies_ms, 0.50), 3),
                p99_ms=round(percentile(latencies_ms, 0.99), 3),
                mean_ms=round(statistics.fmean(latencies_ms), 3),
                cpu_s_per_1000=round(cpu / len(latencies_ms) * 1000, 3),
                rss_mib=round(psutil.Process(target.pid).memory_info().rss / 2**20, 1),
            )
        )
    return results


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(1, math.ceil(len(ordered) * fraction)) - 1]


def render_ms(series: int) -> float:
    """Median time of Exposition.render (text format, what a Prometheus scrape asks for) for ``series`` synthetic series."""
    exposition = Exposition()
    families = synthetic_families(series)
    durations = []
    for _ in range(RENDER_REPEATS):
        exposition.update("synthetic", families)  # a new generation: render again
        durations.append(exposition.render().duration_s)
    return round(statistics.median(durations) * 1000, 1)


def start_healwatch(series: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.serve_synthetic", "--series", str(series)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
    )


def write_textfile(directory: Path, series: int) -> None:
    """Synthetic series for node_exporter's textfile collector, swapped in atomically."""
    exposition = Exposition()
    exposition.update("synthetic", synthetic_families(series))
    partial = directory / "synthetic.prom.tmp"
    partial.write_bytes(exposition.render().body)
    partial.rename(directory / "synthetic.prom")


def scenario(
    label: str,
    client: httpx.Client,
    node_exporter: subprocess.Popen[bytes],
    node_url: str,
    series: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    healwatch = start_healwatch(series)
    try:
        targets = [
            Target("node_exporter", node_exporter.pid, node_url),
            Target(
                "healwatch", healwatch.pid, f"http://127.0.0.1:{listening_port(healwatch)}/metrics"
            ),
        ]
        theirs, ours = measure(client, targets, args.requests, args.warmup, args.blocks)
    finally:
        stop(healwatch)
    return {
        "scenario": label,
        "node_exporter": asdict(theirs),
        "healwatch": asdict(ours),
        "ratio_ours_over_theirs": {
            key: round(getattr(ours, key) / getattr(theirs, key), 4)
            for key in ("p50_ms", "p99_ms", "cpu_s_per_1000")
            if getattr(theirs, key)
        },
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    scenarios = []
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="healwatch-bench-") as tmp, httpx.Client(
        timeout=10.0
    ) as client:
        textfile_dir = Path(tmp)
        # The textfile collector reads only *.prom files, so the log can live here too.
        with open(textfile_dir / "node_exporter.log", "wb") as log:
            node_exporter = subprocess.Popen(
                [
                    NODE_EXPORTER,
                    "--web.listen-address=127.0.0.1:0",
                    f"--collector.textfile.directory={textfile_dir}",
                ],
                stdout=log,
                stderr=log,
            )
        try:
            node_url = f"http://127.0.0.1:{listening_port(node_exporter)}/metrics"
            own = count_samples(client, node_url)
            # The textfile collector adds one node_textfile_mtime_seconds sample per file.
            textfile_series = args.series - own - 1
            if textfile_series < 1:
                raise SystemExit(f"--series must exceed node_exporter's own {own} samples + 1")
            scenarios.append(
                scenario("a: node_exporter's own", client, node_exporter, node_url, own, args)
            )
            write_textfile(textfile_dir, textfile_series)
            scenarios.append(
                scenario(
                    f"b: ~{args.series} series", client, node_exporter, node_url, args.series, args
                )
            )
        finally:
            stop(node_exporter)
    version = node_exporter_version()
    return {
        "command": " ".join(["python3", "-m", "bench.scrape_latency", *sys.argv[1:]]),
        "started_at": started_at,
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "host": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "node_exporter": version,
        },
        "requests_per_target": args.requests,
        "warmup_per_target": args.warmup,
        "blocks": args.blocks,
        "headers": SCRAPE_HEADERS,
        "healwatch_render_ms": {str(n): render_ms(n) for n in (own, args.series)},
        "scenarios": scenarios,
        "report": report_rows(scenarios, "node_exporter " + version_number(version)),
    }


def version_number(banner: str) -> str:
    """``1.5.0`` of ``node_exporter, version 1.5.0 (branch: ...)``; the banner itself if it has none."""
    found = re.search(r"version (\S+)", banner)
    return found.group(1) if found else banner


# (Measurement field, row suffix, unit, what) of the rows each scenario gives the benchmark report.
REPORT_FIELDS = (
    ("p50_ms", "p50", "ms", "scrape latency p50"),
    ("p99_ms", "p99", "ms", "scrape latency p99"),
    ("cpu_s_per_1000", "cpu_per_1000", "s", "server CPU per 1,000 scrapes"),
)


def report_rows(scenarios: list[dict[str, Any]], peer_name: str) -> list[dict[str, Any]]:
    """The rows of bench/report.py: per scenario, p50, p99 and CPU, healwatch next to node_exporter."""
    rows = []
    for entry, key in zip(scenarios, ("own", "10k")):
        samples = entry["healwatch"]["samples"]
        for field, suffix, unit, what in REPORT_FIELDS:
            rows.append({
                "row": f"{key}_{suffix}",
                "what": f"{what}, {samples:,} series",
                "unit": unit,
                "healwatch": entry["healwatch"][field],
                "peer": entry["node_exporter"][field],
                "peer_name": peer_name,
                "lower_is_better": True,
            })
    return rows


def node_exporter_version() -> str:
    result = subprocess.run(
        [NODE_EXPORTER, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    return (result.stdout or result.stderr).splitlines()[0]


# (Measurement field, heading, width, format) of the printed table.
COLUMNS = (
    ("samples", "samples", 8, "d"),
    ("body_bytes", "body B", 9, "d"),
    ("p50_ms", "p50 ms", 9, ".3f"),
    ("p99_ms", "p99 ms", 9, ".3f"),
    ("cpu_s_per_1000", "CPU s/1k", 10, ".3f"),
    ("rss_mib", "RSS MiB", 9, ".1f"),
)


def table_row(label: str, values: dict[str, Any]) -> str:
    cells = "".join(
        f"{values[key]:>{width}{spec}}" if key in values else " " * width
        for key, _, width, spec in COLUMNS
    )
    return f"  {label:<32}{cells}"


def print_table(report: dict[str, Any]) -> None:
    header = f"{'scenario / target':<34}" + "".join(f"{h:>{w}}" for _, h, w, _ in COLUMNS)
    print(header)
    print("-" * len(header))
    for entry in report["scenarios"]:
        print(entry["scenario"])
        for name in ("node_exporter", "healwatch"):
            print(table_row(name, entry[name]))
        print(table_row("ratio healwatch/node_exporter", entry["ratio_ours_over_theirs"]))
    print(f"healwatch render time (ms, once per collection cycle): {report['healwatch_render_ms']}")


# (requests, warmup, blocks) of a full run and of --quick.
FULL = {"requests": 2000, "warmup": 100, "blocks": 10}
QUICK = {"requests": 100, "warmup": 10, "blocks": 5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, help=f"timed scrapes per target and scenario (default {FULL['requests']})"
    )
    parser.add_argument(
        "--warmup", type=int, help=f"untimed scrapes per target first (default {FULL['warmup']})"
    )
    parser.add_argument("--blocks", type=int, help=f"alternations between targets (default {FULL['blocks']})")
    parser.add_argument("--series", type=int, default=10_000, help="series in scenario (b)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke test: {QUICK}")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="where to write the JSON")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.requests, args.blocks) < 1 or args.warmup < 0:
        parser.error("--requests and --blocks must be at least 1, --warmup at least 0")
    if not Path(NODE_EXPORTER).exists():
        parser.error(f"{NODE_EXPORTER} not found (Debian package prometheus-node-exporter)")
    report = run(args)
    print_table(report)
    write_json(args.output, report)


if __name__ == "__main__":
    main()
