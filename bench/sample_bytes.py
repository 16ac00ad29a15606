"""Bytes per retained sample: healwatch's series store next to Prometheus 2.42's head block, at equal data.

Run from the repository root: ``python3 -m bench.sample_bytes --output PATH [--quick]``.

One loopback target (a thread of this process) exposes N gauges whose values change every
second. Prometheus 2.42 (Debian, temp data dir) and the real agent scrape it at the same time,
every second. Memory is read twice per side, once with "few" samples per series and once with
"many", and the difference is divided by the samples added in between, so what every series
costs once (labels, index, series objects) cancels:

  Prometheus  live Go heap right after a forced GC (``/debug/pprof/heap?gc=1``, then
              ``go_memstats_heap_alloc_bytes``), and the samples from
              ``prometheus_tsdb_head_samples_appended_total``. Both points stay within each
              series' first head chunk (cut at ~120 samples), which is held in the heap.
  healwatch   the same series (labels parsed from the target by the agent's own parser) and
              the same sample counts fed into a ``SeriesStore`` with the agent's default
              retention, in a fresh interpreter, under ``tracemalloc``: the live Python and
              numpy allocations, the counterpart of a live Go heap.

Also in the JSON, as a cross-check: the RSS delta per sample of the real agent and of Prometheus.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from agent.collectors.scrape import parse_exposition
from bench.footprint import Started, metric_sum, start_agent, wait_until
from bench.output import run_and_write
from rules.store import SeriesStore
from harness.processes import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = "/usr/bin/prometheus"
SCRAPE_INTERVAL_S = 1
AGENT_RETENTION_S = 600.0  # the agent's default store retention
SERIES_PER_FAMILY = 50
KINDS = ("ratio", "bytes", "reading", "count")
HEAD_BLOCK_S = 2 * 3600  # Prometheus cuts every head chunk at these epoch-aligned boundaries
GC_READS = 3
SERVICE = "bench"
# The target tells its scrapers apart by User-Agent product.
AGENT_CLIENT = "healwatch"
PROMETHEUS_CLIENT = "Prometheus"


@dataclass(frozen=True)
class Size:
    """Series exposed and samples per series at the two reading points."""

    series: int
    few: int
    many: int


FULL = Size(series=10_000, few=15, many=105)
QUICK = Size(series=2_000, few=10, many=40)


# -- the target -----------------------------------------------------------------------------


def series_prefixes(count: int) -> list[str]:
    """Name and labels of each series, in families of 50 gauges; a quarter of each value kind."""
    return [
        f'bench_gauge_{i // SERIES_PER_FAMILY}{{device="dev{i % SERIES_PER_FAMILY}",kind="{KINDS[i % 4]}"}}'
        for i in range(count)
    ]


def values_at(second: int, count: int) -> list[float]:
    """Every series' value at ``second``: deterministic, different each second.

    Kinds (i % 4): a ratio in [0, 1) with a full mantissa (Gorilla's worst case), an integer byte
    count up to 2**20 above a per-series base, a one-decimal reading, and a small integer count.
    """
    rng = np.random.default_rng(second)
    index = np.arange(count)
    kind = index % 4
    ratio = rng.random(count)
    byte_count = (index + 1) * 2.0**24 + rng.integers(0, 2**20, count)
    reading = np.round(20.0 + 60.0 * rng.random(count), 1)
    small = rng.integers(0, 100, count).astype(np.float64)
    values = np.select([kind == 0, kind == 1, kind == 2], [ratio, byte_count, reading], small)
    return [float(v) for v in values]


def exposition(prefixes: list[str], second: int) -> bytes:
    values = values_at(second, len(prefixes))
    lines = []
    for i, (prefix, value) in enumerate(zip(prefixes, values, strict=True)):
        if i % SERIES_PER_FAMILY == 0:
            lines.append(f"# TYPE bench_gauge_{i // SERIES_PER_FAMILY} gauge")
        lines.append(f"{prefix} {value!r}")
    return ("\n".join(lines) + "\n").encode()


class SyntheticTarget:
    """A loopback /metrics whose body changes once a second; counts scrapes per client."""

    def __init__(self, series: int) -> None:
        self.prefixes = series_prefixes(series)
        self.scrapes: Counter[str] = Counter()
        self.last_scrape: dict[str, float] = {}
        self._lock = threading.Lock()
        self._body: tuple[int, bytes] = (-1, b"")
        target = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = target.body(int(time.time()))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                client = self.headers.get("User-Agent", "?").split("/")[0]
                with target._lock:
                    target.scrapes[client] += 1
                    target.last_scrape[client] = time.monotonic()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/metrics"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def body(self, second: int) -> bytes:
        """The exposition of ``second``, rendered once however many clients ask."""
        with self._lock:
            if self._body[0] != second:
                self._body = (second, exposition(self.prefixes, second))
            return self._body[1]

    def count(self, client: str) -> tuple[int, float]:
        """Scrapes served to ``client`` and when the last one was (monotonic seconds)."""
        with self._lock:
            return self.scrapes[client], self.last_scrape.get(client, 0.0)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- the scrapers -------------------------------------------------------------------------


def start_prometheus(started: Started, workdir: Path, target_url: str) -> tuple[subprocess.Popen[bytes], str]:
    host_port = target_url.removeprefix("http://").split("/")[0]
    config = workdir / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: {SCRAPE_INTERVAL_S}s, scrape_timeout: {SCRAPE_INTERVAL_S}s}}\n"
        f"scrape_configs:\n  - job_name: synthetic\n    static_configs: [{{targets: ['{host_port}']}}]\n"
    )
    url = f"http://127.0.0.1:{free_port()}"
    with open(workdir / "prometheus.log", "wb") as log:
        process = started.add(
            subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address={url.removeprefix('http://')}",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        )
    wait_until("Prometheus", lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, process)
    return process, url


def agent_config(target_url: str) -> str:
    """Only the scrape: no host collector and no default rules, so the store holds the target's series."""
    return (
        "state_path: ':memory:'\ndefault_rules: false\nhost: {enabled: false}\n"
        f"services:\n  {SERVICE}:\n"
        f"    scrape: {{url: '{target_url}', interval: {SCRAPE_INTERVAL_S}s, timeout: {SCRAPE_INTERVAL_S}s,"
        " max_bytes: 67108864}\n"
    )


def read_when_scraped(target: SyntheticTarget, scrapes: int, readers: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Call each client's reader as soon as that client has been served ``scrapes`` times."""
    deadline = time.monotonic() + scrapes * SCRAPE_INTERVAL_S * 3 + 30
    reads: dict[str, dict[str, float]] = {}
    while len(reads) < len(readers):
        ready = [client for client in readers if client not in reads and target.count(client)[0] >= scrapes]
        for client in ready:
            reads[client] = readers[client]()
        if not ready:
            if time.monotonic() > deadline:
                raise RuntimeError(f"scrapers did not reach {scrapes} scrapes: {dict(target.scrapes)}")
            time.sleep(0.05)
    return reads


def prometheus_point(client: httpx.Client, url: str, pid: int) -> dict[str, float]:
    """Head counters and the live heap after a forced GC (the lowest of a few tries: scrapes allocate in between)."""
    reads = []
    for _ in range(GC_READS):
        client.get(f"{url}/debug/pprof/heap", params={"gc": "1"}).raise_for_status()
        text = client.get(f"{url}/metrics").text
        reads.append(
            {
                "heap_alloc_bytes": metric_sum(text, "go_memstats_heap_alloc_bytes"),
                "heap_inuse_bytes": metric_sum(text, "go_memstats_heap_inuse_bytes"),
                "head_samples_appended": metric_sum(text, "prometheus_tsdb_head_samples_appended_total"),
                "head_series": metric_sum(text, "prometheus_tsdb_head_series"),
                "head_chunks": metric_sum(text, "prometheus_tsdb_head_chunks"),
                "rss_bytes": float(psutil.Process(pid).memory_info().rss),
            }
        )
    return min(reads, key=lambda read: read["heap_alloc_bytes"])


def agent_point(target: SyntheticTarget, agent_pid: int, agent_url: str) -> dict[str, float]:
    rss = float(psutil.Process(agent_pid).memory_info().rss)  # before /metrics allocates
    text = httpx.get(f"{agent_url}/metrics", timeout=10).text
    return {
        "rss_bytes": rss,
        "scrapes": float(target.count(AGENT_CLIENT)[0]),
        "series_in_store": metric_sum(text, "healwatch_series"),
        "scrape_up": metric_sum(text, "healwatch_scrape_up"),
        "samples_out_of_order": metric_sum(text, "healwatch_samples_out_of_order_total"),
    }


def per_sample(before: dict[str, float], after: dict[str, float], key: str, samples: float) -> float:
    return round((after[key] - before[key]) / samples, 2)


def seconds_to_head_boundary() -> float:
    return HEAD_BLOCK_S - time.time() % HEAD_BLOCK_S


def live_run(size: Size, root: Path) -> dict[str, Any]:
    """Prometheus and the agent scrape the target side by side; both read at few and at many samples."""
    run_s = size.many + 30
    if seconds_to_head_boundary() < run_s:
        # A head chunk also ends at the 2 h boundary: crossing it would move samples out of the heap.
        wait_s = seconds_to_head_boundary() + 2
        print(f"waiting {wait_s:.0f} s for Prometheus' 2 h head boundary to pass", flush=True)
        time.sleep(wait_s)
    target = SyntheticTarget(size.series)
    started = Started()
    try:
        # The agent first, as it takes longer to start: the two then scrape roughly in step.
        agent_dir = root / "agent"
        agent_dir.mkdir()
        (agent_dir / "agent.yaml").write_text(agent_config(target.url))
        agent, agent_url = start_agent(started, agent_dir, agent_dir / "agent.yaml")
        prometheus, prometheus_url = start_prometheus(started, root, target.url)
        points: dict[str, dict[str, dict[str, float]]] = {}
        with httpx.Client(timeout=30.0) as client:

            def read_agent() -> dict[str, float]:
                # The agent parses a scrape in a worker thread (~0.25 s for 10,000 series) before storing it.
                time.sleep(max(0.0, target.count(AGENT_CLIENT)[1] + 0.6 - time.monotonic()))
                return agent_point(target, agent.pid, agent_url)

            readers = {
                AGENT_CLIENT: read_agent,
                PROMETHEUS_CLIENT: lambda: prometheus_point(client, prometheus_url, prometheus.pid),
            }
            for label, scrapes in (("few", size.few), ("many", size.many)):
                reads = read_when_scraped(target, scrapes, readers)
                points[label] = {"healwatch_agent": reads[AGENT_CLIENT], "prometheus": reads[PROMETHEUS_CLIENT]}
    finally:
        started.stop_all()
        target.stop()
    return points


# -- healwatch's store, in a fresh interpreter -----------------------------------------------


def store_probe(series: int, few: int, many: int) -> dict[str, Any]:
    """tracemalloc bytes of a SeriesStore between ``few`` and ``many`` one-second samples per series.

    The labels are what the agent's scrape parser makes of the target's exposition; values come
    from the same generator, a new one every second, appended through ``ingest`` as the agent does.
    """
    prefixes = series_prefixes(series)
    labels = [labels for labels, _ in parse_exposition(exposition(prefixes, 0).decode(), SERVICE)]
    store = SeriesStore(retention_s=AGENT_RETENTION_S)
    tracemalloc.start()
    traced: dict[int, int] = {}
    for second in range(many):
        store.ingest(SERVICE, list(zip(labels, values_at(second, series), strict=True)), second * 1000)
        if second + 1 in (few, many):
            traced[second + 1] = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    held = store.select([])
    slots = sum(s.capacity for s in held)
    encodings = Counter("/".join(str(part) for part in s.encoding) for s in held)
    added = (many - few) * series
    return {
        "series": store.series_count,
        "few": few,
        "many": many,
        "traced_bytes_few": traced[few],
        "traced_bytes_many": traced[many],
        "bytes_per_sample": round((traced[many] - traced[few]) / added, 2),
        "allocated_slots_at_many": slots,
        # Series per (timestamps, value type, scale) encoding (rules/window.py).
        "encodings_at_many": dict(encodings.most_common()),
    }


def run_store_probe(series: int, few: int, many: int) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.sample_bytes", "--store-probe", f"{series},{few},{many}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"store probe failed:\n{completed.stderr}")
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


# -- the report ----------------------------------------------------------------------------


METHOD = {
    "data": "One target in the benchmark process exposes N gauges (families of 50, labels device and "
    "kind) whose values change every second, rendered once per second so both scrapers get the same "
    "values: a quarter each of full-mantissa ratios in [0, 1) (Gorilla's worst case), integer byte "
    "counts (random within 2^20 above a per-series base), one-decimal readings and integer counts "
    "0-99. Prometheus and the real agent scrape it at the same time, every 1 s.",
    "delta": "Memory is read at 'few' and at 'many' samples per series; (many - few) / samples added "
    "cancels the per-series cost (labels, postings/index, series objects, scrape caches) on both "
    "sides, leaving what retaining one more sample costs.",
    "prometheus": "Live Go heap: GET /debug/pprof/heap?gc=1 forces a GC, then go_memstats_heap_alloc_bytes "
    "from /metrics (lowest of 3 tries, since each 1 s scrape allocates in between); samples from "
    "prometheus_tsdb_head_samples_appended_total (it includes the 5 synthetic up/scrape_* series, whose "
    "samples are held the same way). Both points lie inside each series' first head chunk (Gorilla "
    "XOR, cut at ~120 samples, i.e. ~2 min at 1 s), which lives in the heap and grows as a byte slice; "
    "head_chunks is checked to equal head_series at both points. A full chunk is written to disk and "
    "memory-mapped (page cache, not heap), so for longer retention Prometheus' heap per sample falls "
    "further; this compares the in-memory form of the most recent samples, which is what healwatch "
    "holds for its whole retention.",
    "healwatch": "tracemalloc of a SeriesStore (retention 10 min, the agent default) in a fresh "
    "interpreter, fed the same labels (parsed from the target by the agent's parse_exposition) and "
    "values for the same few/many sample counts through ingest(), as the agent stores a scrape: live "
    "Python and numpy allocations, the counterpart of Go's live heap. A slot costs 1-8 bytes: evenly "
    "spaced timestamps are held as a first timestamp and a step (uint32 offsets once off that grid), "
    "values as int8/int16/int32 scaled integers where that is exact, float64 otherwise "
    "(encodings_at_many counts the series per encoding); buffers grow by doubling up to the retention "
    "estimate, so the delta includes the free slots allocated between the two points.",
    "cross_check": "RSS delta per sample of the real agent (scraping the same target, host collector "
    "and default rules off so its store holds the target's series) and of Prometheus, between the same "
    "two points. The agent's samples are counted as scrapes served to it x series, read 0.6 s after "
    "its latest scrape so that it has been parsed and stored. Not a report row: Go's RSS follows its "
    "GC target (GOGC=100, up to ~2x the live heap) and the runtime returns memory lazily, so "
    "Prometheus' RSS delta depends on when its heap last grew (0.96, 7.8 and 8.8 B/sample in three "
    "runs of this benchmark), while the agent's was steady (20.2-20.9 B/sample).",
    "caveats": "The delta depends on where few and many fall relative to buffer growth steps (numpy "
    "buffers in healwatch, Go slice growth in Prometheus). Gorilla's size depends on the values "
    "(constant or integer series compress far better than random ratios) and on timestamp jitter.",
}


def run(size: Size, quick: bool) -> dict[str, Any]:
    load_before = os.getloadavg()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with tempfile.TemporaryDirectory(prefix="healwatch-sample-bytes-") as tmp:
        points = live_run(size, Path(tmp))
    few_p, many_p = points["few"]["prometheus"], points["many"]["prometheus"]
    prom_samples = many_p["head_samples_appended"] - few_p["head_samples_appended"]
    per_series = {label: p["prometheus"]["head_samples_appended"] / p["prometheus"]["head_series"] for label, p in points.items()}
    few_a, many_a = points["few"]["healwatch_agent"], points["many"]["healwatch_agent"]
    agent_samples = (many_a["scrapes"] - few_a["scrapes"]) * size.series
    # The store gets the sample counts per series that Prometheus held at its two points.
    probe = run_store_probe(size.series, round(per_series["few"]), round(per_series["many"]))
    prometheus = {
        "samples_added": prom_samples,
        "samples_per_series": {k: round(v, 2) for k, v in per_series.items()},
        "heap_bytes_per_sample": per_sample(few_p, many_p, "heap_alloc_bytes", prom_samples),
        "heap_inuse_bytes_per_sample": per_sample(few_p, many_p, "heap_inuse_bytes", prom_samples),
        "rss_bytes_per_sample": per_sample(few_p, many_p, "rss_bytes", prom_samples),
        "chunk_cut_between_points": many_p["head_chunks"] != few_p["head_chunks"]
        or many_p["head_chunks"] != many_p["head_series"],
    }
    agent = {
        "samples_added": agent_samples,
        "rss_bytes_per_sample": per_sample(few_a, many_a, "rss_bytes", agent_samples),
    }
    peer = prometheus_version()
    report = [
        {
            "row": "sample_bytes_heap",
            "what": f"bytes per retained sample, {size.series:,} gauges at 1 s, live-heap delta "
            f"{probe['few']} to {probe['many']} samples/series (store under tracemalloc; Go heap after GC)",
            "unit": "B",
            "healwatch": probe["bytes_per_sample"],
            "peer": prometheus["heap_bytes_per_sample"],
            "peer_name": peer,
            "lower_is_better": True,
        },
    ]
    return {
        "benchmark": "sample_bytes",
        "command": " ".join(["python3", "-m", "bench.sample_bytes", *sys.argv[1:]]),
        "started_at": started_at,
        "quick": quick,
        "cpus": os.cpu_count(),
        "load_avg": list(os.getloadavg()),
        "load_avg_before": list(load_before),
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "prometheus": peer},
        "series": size.series,
        "scrape_interval_s": SCRAPE_INTERVAL_S,
        "method": METHOD,
        "points": points,
        "prometheus": prometheus,
        "healwatch_store": probe,
        "healwatch_agent": agent,
        "report": report,
    }


def prometheus_version() -> str:
    result = subprocess.run([PROMETHEUS, "--version"], capture_output=True, text=True, timeout=10, check=False)
    line = (result.stdout or result.stderr).splitlines()[0]  # "prometheus, version 2.42.0+ds (...)"
    return "Prometheus " + line.split("version ")[1].split()[0] if "version " in line else line


def print_table(result: dict[str, Any]) -> None:
    print(f"{'row':<20}{'healwatch B':>12}{'peer B':>9}{'ratio':>8}   ({result['report'][0]['peer_name']})")
    for row in result["report"]:
        ratio = row["healwatch"] / row["peer"] if row["peer"] else float("nan")
        print(f"{row['row']:<20}{row['healwatch']:>12.2f}{row['peer']:>9.2f}{ratio:>8.2f}")
    print(f"RSS delta per sample (cross-check): agent {result['healwatch_agent']['rss_bytes_per_sample']} B, "
          f"Prometheus {result['prometheus']['rss_bytes_per_sample']} B")
    print(f"Prometheus samples/series {result['prometheus']['samples_per_series']}, chunk cut between points: "
          f"{result['prometheus']['chunk_cut_between_points']}; cpus {result['cpus']}, "
          f"load average {result['load_avg_before'][0]:.2f} -> {result['load_avg'][0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="where to write the JSON")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.series} series to {QUICK.many} samples")
    parser.add_argument("--store-probe", metavar="SERIES,FEW,MANY", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.store_probe:
        series, few, many = (int(part) for part in args.store_probe.split(","))
        print(json.dumps(store_probe(series, few, many)))
        return
    if args.output is None:
        parser.error("--output is required")
    if not Path(PROMETHEUS).exists():
        parser.error(f"{PROMETHEUS} not found (Debian package prometheus)")
    timing = QUICK if args.quick else FULL
    run_and_write("sample_bytes", lambda: run(timing, args.quick), args.output, print_table)


if __name__ == "__main__":
    main()
