"""The benchmark report: every peer benchmark, repeated, side by side with its peer in bench/results/REPORT.md.

Run from the repository root: ``python3 -m bench.report [--repeats 3] [--quick] [--only NAME ...]``.
Runs each benchmark module (``python3 -m bench.<name> --output PATH [--quick]``) as a
subprocess, one at a time, ``--repeats`` times; keeps every repeat's JSON under
bench/results/raw/; aggregates the ``"report"`` rows of the JSONs (per row: the median
of each side over the repeats, the ratio of the medians, min/median/max of each side);
writes bench/results/REPORT.md and one PNG chart per benchmark (matplotlib, the
``bench`` extra). A missing or failing benchmark is reported in REPORT.md and makes
the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
BENCH_README = REPO_ROOT / "bench" / "README.md"
FULL_TIMEOUT_S = 15 * 60
QUICK_TIMEOUT_S = 5 * 60
LOG_TAIL_LINES = 12


@dataclass(frozen=True)
class Benchmark:
    """A benchmark module feeding REPORT.md, the bench/README.md section that explains it, and its full-run flags."""

    name: str
    title: str
    full_args: tuple[str, ...] = ()


BENCHMARKS = (
    Benchmark("scrape_latency", "Scrape latency"),
    Benchmark("footprint", "Footprint"),
    # Fewer rounds than rule_eval's own defaults (about 5 minutes) keep one repeat near 3 minutes.
    Benchmark("rule_eval", "Rule evaluation", ("--runs", "10", "--rounds", "6")),
    Benchmark("mttr", "Time to recovery"),
    Benchmark("alert_latency", "Alert latency, end to end"),
    Benchmark("sample_bytes", "Bytes per sample"),
    Benchmark("startup", "Start-up, command line and stop"),
)
# Benchmarks without a peer row, run on their own (`python3 -m bench.<name>`).
OTHER_BENCHMARKS = (
    ("collect_cycle", "Collection cycle"),
    ("store_memory", "Store memory"),
    ("agent_memory", "Agent memory"),
    ("notify_latency", "Notification latency"),
    ("fleet", "Fleet"),
)
PEERS = {
    "node_exporter": ["prometheus-node-exporter", "--version"],
    "Monit": ["monit", "-V"],
    "Prometheus": ["prometheus", "--version"],
    "Alertmanager": ["prometheus-alertmanager", "--version"],
}
ROW_FIELDS: dict[str, type | tuple[type, ...]] = {
    "row": str, "what": str, "unit": str, "healwatch": (int, float), "peer": (int, float),
    "peer_name": str, "lower_is_better": bool,
}


class BenchmarkMissing(Exception):
    """The benchmark's module does not exist (yet)."""


class ContractBroken(ValueError):
    """A benchmark's JSON does not hold the rows the report contract asks for."""


@dataclass(frozen=True)
class Repeat:
    """One run of one benchmark: its JSON (when it succeeded) or why it failed."""

    benchmark: Benchmark
    index: int
    argv: tuple[str, ...]
    duration_s: float
    data: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class RowSummary:
    """One compared number over the repeats of its benchmark."""

    benchmark: Benchmark
    row: str
    what: str
    unit: str
    peer_name: str
    lower_is_better: bool
    healwatch: list[float] = field(default_factory=list)
    peer: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """healwatch / peer, of the medians; None when the peer's median is 0."""
        peer = statistics.median(self.peer)
        return statistics.median(self.healwatch) / peer if peer else None


def spread(values: list[float]) -> tuple[float, float, float]:
    """(min, median, max)."""
    return min(values), statistics.median(values), max(values)


# -- running -----------------------------------------------------------------------------------


Command = Callable[[Benchmark, Path, bool], list[str]]


def module_command(benchmark: Benchmark, output: Path, quick: bool) -> list[str]:
    """``python3 -m bench.<name> --output PATH`` plus ``--quick`` or the benchmark's full-run flags."""
    if not (REPO_ROOT / "bench" / f"{benchmark.name}.py").is_file():
        raise BenchmarkMissing(f"bench/{benchmark.name}.py does not exist")
    extra = ["--quick"] if quick else list(benchmark.full_args)
    return [sys.executable, "-m", f"bench.{benchmark.name}", "--output", str(output), *extra]


def validate_rows(data: Any) -> list[dict[str, Any]]:
    """The ``"report"`` rows of a benchmark's JSON; ContractBroken naming the first thing wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("report"), list) or not data["report"]:
        raise ContractBroken('the JSON has no "report" list of rows')
    seen = set()
    for position, row in enumerate(data["report"]):
        if not isinstance(row, dict):
            raise ContractBroken(f"report row {position} is not an object")
        name = row.get("row", position)
        for key, kind in ROW_FIELDS.items():
            value = row.get(key)
            # bool is an int in Python; a number field must not accept true/false.
            if not isinstance(value, kind) or (kind != bool and isinstance(value, bool)):
                raise ContractBroken(f"report row {name!r}: {key!r} is missing or not a {_kind_name(kind)}")
        if not (math.isfinite(row["healwatch"]) and math.isfinite(row["peer"])):
            raise ContractBroken(f"report row {name!r}: healwatch and peer must be finite numbers")
        if name in seen:
            raise ContractBroken(f"report row {name!r} appears twice")
        seen.add(name)
    report: list[dict[str, Any]] = data["report"]
    return report


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return "number" if isinstance(kind, tuple) else {str: "string", bool: "boolean"}[kind]


def run_repeat(benchmark: Benchmark, index: int, raw_dir: Path, quick: bool, command: Command) -> Repeat:
    """Run one repeat as a subprocess; its JSON and a log of its output go to ``raw_dir``."""
    output = raw_dir / f"{benchmark.name}-{index}.json"
    try:
        argv = command(benchmark, output, quick)
    except BenchmarkMissing as missing:
        return Repeat(benchmark, index, (), 0.0, error=str(missing))
    started = time.monotonic()
    timeout_s = QUICK_TIMEOUT_S if quick else FULL_TIMEOUT_S
    log = raw_dir / f"{benchmark.name}-{index}.log"
    try:
        done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as expired:
        log.write_text(_text(expired.stdout) + _text(expired.stderr))
        return Repeat(benchmark, index, tuple(argv), time.monotonic() - started,
                      error=f"did not finish within {timeout_s} s (killed)")
    duration_s = time.monotonic() - started
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-LOG_TAIL_LINES:])
        return Repeat(benchmark, index, tuple(argv), duration_s,
                      error=f"exited with status {done.returncode}" + (f"\n{tail}" if tail else ""))
    try:
        data = json.loads(output.read_text())
        validate_rows(data)
    except (OSError, ValueError) as error:
        return Repeat(benchmark, index, tuple(argv), duration_s, error=f"{output.name}: {error}")
    return Repeat(benchmark, index, tuple(argv), duration_s, data=data)


def _text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def run_all(
    benchmarks: Iterable[Benchmark], repeats: int, raw_dir: Path, quick: bool, command: Command = module_command
) -> list[Repeat]:
    """Every repeat of every benchmark, strictly one after another (they would disturb each other)."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for benchmark in benchmarks:
        for stale in raw_dir.glob(f"{benchmark.name}-*"):
            stale.unlink()  # no earlier run's repeat may be mistaken for this one's
        for index in range(1, repeats + 1):
            print(f"{benchmark.name} {index}/{repeats} ...", end=" ", flush=True)
            repeat = run_repeat(benchmark, index, raw_dir, quick, command)
            done.append(repeat)
            outcome = "ok" if repeat.error is None else "FAILED: " + repeat.error.splitlines()[0]
            print(f"{outcome} ({repeat.duration_s:.0f} s)", flush=True)
            if repeat.error is not None and not repeat.argv:
                break  # missing: the other repeats would fail the same way
    return done


def aggregate(repeats: Iterable[Repeat]) -> list[RowSummary]:
    """Per benchmark and row id, both sides' values over the successful repeats, in first-seen order."""
    summaries: dict[tuple[str, str], RowSummary] = {}
    for repeat in repeats:
        if repeat.data is None:
            continue
        for row in validate_rows(repeat.data):
            key = (repeat.benchmark.name, row["row"])
            if key not in summaries:
                summaries[key] = RowSummary(repeat.benchmark, row["row"], row["what"], row["unit"],
                                            row["peer_name"], row["lower_is_better"])
            summaries[key].healwatch.append(float(row["healwatch"]))
            summaries[key].peer.append(float(row["peer"]))
    return list(summaries.values())


# -- the machine ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    """What the numbers were measured on."""

    cores: int | None
    cpu_model: str
    ram_gib: float | None
    python: str
    kernel: str
    peers: dict[str, str]

    @classmethod
    def probe(cls) -> Machine:
        return cls(os.cpu_count(), cpu_model(), ram_gib(), platform.python_version(), platform.release(),
                   {name: peer_version(argv) for name, argv in PEERS.items()})


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def peer_version(argv: list[str]) -> str:
    """The first line ``argv`` prints, or why there is none."""
    if shutil.which(argv[0]) is None:
        return "not installed"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else f"no output (status {done.returncode})"


# -- REPORT.md ---------------------------------------------------------------------------------


def number(value: float) -> str:
    """Three significant digits or so, thousands separated: 0.00812, 1.37, 13.7, 1,274."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}"


def readme_anchor(title: str, readme: Path = BENCH_README) -> str:
    """``../README.md#section`` (relative to bench/results/) if bench/README.md has the heading, else the page."""
    try:
        headings = [line[3:].strip() for line in readme.read_text().splitlines() if line.startswith("## ")]
    except OSError:
        headings = []
    if title not in headings:
        return "../README.md"
    slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
    return f"../README.md#{slug}"


@dataclass(frozen=True)
class Run:
    """Everything REPORT.md shows about one report run."""

    started: datetime
    finished: datetime
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    repeats: int
    quick: bool
    selected: tuple[Benchmark, ...]
    results: tuple[Repeat, ...]
    machine: Machine


def render(run: Run, summaries: list[RowSummary], charts: dict[str, str] | None) -> str:
    """REPORT.md: header, the rows, how to read them, failures, the runs, the charts."""
    machine = run.machine
    ram = f"{machine.ram_gib:.1f} GiB" if machine.ram_gib is not None else "unknown"
    mode = "`--quick`: a smoke test with fewer samples, not for comparison" if run.quick else "full runs"
    lines = [
        "# Benchmark report: healwatch next to its peers",
        "",
        (f"Generated by `python3 -m bench.report` on {run.started:%Y-%m-%d}, {run.started:%H:%M} to "
         f"{run.finished:%H:%M} UTC: {run.repeats} repeat(s) of each benchmark, {mode}."),
        "",
        f"- Machine: {machine.cores} cores ({machine.cpu_model}), {ram} RAM, Linux {machine.kernel}",
        f"- Load average (1, 5, 15 min): {_load(run.load_before)} before, {_load(run.load_after)} after",
        f"- Python {machine.python}",
        *(f"- {name}: `{banner}`" for name, banner in machine.peers.items()),
        ("- Raw data: every repeat's JSON and output log in [`bench/results/raw/`](raw/)"
         " (`<benchmark>-<repeat>.json`, `.log`)"),
        "",
        "## Results",
        "",
        ("How to read: each number is the median over the repeats; lower is better (a row marked "
         "\"higher is better\" is the exception); ratio = healwatch / peer, so a ratio below 1 means "
         "healwatch is cheaper or faster. Noise is min / median / max over the repeats. Every row "
         "links to the section of `bench/README.md` that says what exactly is measured and how."),
        "",
        "| benchmark | what | healwatch | peer | ratio | noise healwatch | noise peer |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for summary in summaries:
        ratio = summary.ratio
        what = summary.what + ("" if summary.lower_is_better else " (higher is better)")
        runs = len(summary.healwatch)
        if runs != run.repeats:
            what += f" ({runs} of {run.repeats} repeats)"
        lines.append(
            f"| [{summary.benchmark.title}]({readme_anchor(summary.benchmark.title)}) vs {summary.peer_name} "
            f"| {what} | {number(statistics.median(summary.healwatch))} {summary.unit} "
            f"| {number(statistics.median(summary.peer))} {summary.unit} "
            f"| {'–' if ratio is None else number(ratio)} "
            f"| {' / '.join(number(v) for v in spread(summary.healwatch))} "
            f"| {' / '.join(number(v) for v in spread(summary.peer))} |"
        )
    if not summaries:
        lines.append("| (no benchmark produced rows) | | | | | | |")
    lines += _failures(run) + _runs(run) + _charts(summaries, charts) + _others()
    return "\n".join(lines) + "\n"


def _load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in load)


def _failures(run: Run) -> list[str]:
    failed = [(r, r.error) for r in run.results if r.error is not None]
    skipped = [b for b in BENCHMARKS if b not in run.selected]
    if not failed and not skipped:
        return []
    lines = ["", "## Missing and failed", ""]
    for repeat, error in failed:
        first, _, rest = error.partition("\n")
        lines.append(f"- `{repeat.benchmark.name}` repeat {repeat.index}: {first}")
        if rest:
            lines += ["", "  ```", *("  " + line for line in rest.splitlines()), "  ```", ""]
    lines += [f"- `{benchmark.name}`: not run (not chosen with `--only`)" for benchmark in skipped]
    return lines


def _runs(run: Run) -> list[str]:
    lines = ["", "## Runs", "", "| benchmark | repeat | seconds | load average after (1 min) | outcome |",
             "|---|---:|---:|---:|---|"]
    for repeat in run.results:
        load = repeat.data.get("load_avg") if repeat.data else None
        load_text = f"{load[0]:.2f}" if isinstance(load, list) and load else "–"
        outcome = "ok" if repeat.error is None else "failed"
        lines.append(f"| {repeat.benchmark.name} | {repeat.index} | {repeat.duration_s:.0f} | {load_text} | {outcome} |")
    commands = {" ".join(_shown(repeat.argv)) for repeat in run.results if repeat.argv}
    lines += ["", "Commands (each repeat wrote its own `--output`):", ""]
    lines += [f"- `{command}`" for command in sorted(commands)]
    return lines


def _shown(argv: tuple[str, ...]) -> list[str]:
    """The command as one would type it: ``python3``, and without the per-repeat output path."""
    shown = ["python3", *argv[1:]]
    if "--output" in shown:
        at = shown.index("--output")
        del shown[at:at + 2]
    return shown


def _charts(summaries: list[RowSummary], charts: dict[str, str] | None) -> list[str]:
    lines = ["", "## Charts", ""]
    if charts is None:
        return lines + ["Not drawn: matplotlib is not installed (`pip install -e '.[bench]'`)."]
    lines.append("Bars are medians over the repeats, whiskers span min to max.")
    for benchmark in BENCHMARKS:
        if benchmark.name in charts:
            lines += ["", f"### {benchmark.title}", "", f"![{benchmark.title}]({charts[benchmark.name]})"]
    return lines


def _others() -> list[str]:
    lines = ["", "## Other benchmarks (no peer row)", "",
             "Run on their own, not by this report; their last results are in `bench/results/*.json`.", ""]
    for name, title in OTHER_BENCHMARKS:
        if (REPO_ROOT / "bench" / f"{name}.py").is_file():
            lines.append(f"- [{title}]({readme_anchor(title)}): `python3 -m bench.{name}`")
    return lines


# -- charts ------------------------------------------------------------------------------------


def write_charts(summaries: list[RowSummary], directory: Path) -> dict[str, str] | None:
    """One PNG per benchmark, a panel per row: healwatch and peer medians with min-max whiskers.

    Returns benchmark name -> file name (relative to ``directory``), or None without matplotlib.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    by_benchmark: dict[str, list[RowSummary]] = {}
    for summary in summaries:
        by_benchmark.setdefault(summary.benchmark.name, []).append(summary)
    written = {}
    for name, rows in by_benchmark.items():
        columns = min(3, len(rows))
        lines = math.ceil(len(rows) / columns)
        figure, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.6 * lines), squeeze=False)
        for ax, summary in zip(axes.flat, rows):
            _panel(ax, summary)
        for ax in list(axes.flat)[len(rows):]:
            ax.set_visible(False)
        figure.suptitle(f"{rows[0].benchmark.title}: healwatch vs {rows[0].peer_name}", fontsize=11)
        figure.tight_layout()
        file_name = f"report-{name}.png"
        figure.savefig(directory / file_name, dpi=90)
        plt.close(figure)
        written[name] = file_name
    return written


def _panel(ax: Any, summary: RowSummary) -> None:
    sides = [("healwatch", summary.healwatch, "#2b7bba"), ("peer", summary.peer, "#999999")]
    medians = [statistics.median(values) for _, values, _ in sides]
    whiskers = [[m - min(v) for m, (_, v, _) in zip(medians, sides)],
                [max(v) - m for m, (_, v, _) in zip(medians, sides)]]
    ax.bar([0, 1], medians, yerr=whiskers, capsize=6, color=[colour for _, _, colour in sides])
    ax.set_xticks([0, 1], ["healwatch", textwrap.shorten(summary.peer_name, 24, placeholder="…")], fontsize=8)
    for x, median in enumerate(medians):
        ax.annotate(number(median), (x, median), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax.set_ylabel(summary.unit)
    ax.set_title(textwrap.fill(summary.what, 40), fontsize=8)


# -- the command -----------------------------------------------------------------------------


def build_report(
    selected: tuple[Benchmark, ...], repeats: int, quick: bool, results_dir: Path = RESULTS_DIR,
    command: Command = module_command,
) -> int:
    """Run, aggregate, write REPORT.md and the charts into ``results_dir``; 1 if any benchmark failed."""
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    results = run_all(selected, repeats, results_dir / "raw", quick, command)
    load_after = os.getloadavg()
    summaries = aggregate(results)
    for benchmark in selected:
        (results_dir / f"report-{benchmark.name}.png").unlink(missing_ok=True)  # never show a stale chart
    charts = write_charts(summaries, results_dir)
    run = Run(started, datetime.now(UTC), load_before, load_after, repeats, quick, selected,
              tuple(results), Machine.probe())
    report = results_dir / "REPORT.md"
    report.write_text(render(run, summaries, charts))
    failed = sorted({r.benchmark.name for r in results if r.error is not None})
    print(f"wrote {report}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    names = [benchmark.name for benchmark in BENCHMARKS]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each benchmark (default 3)")
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark (a smoke test)")
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME",
                        help=f"run only these benchmarks: {', '.join(names)}")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    chosen = set(args.only or names)
    return build_report(tuple(b for b in BENCHMARKS if b.name in chosen), args.repeats, args.quick)


if __name__ == "__main__":
    sys.exit(main())
