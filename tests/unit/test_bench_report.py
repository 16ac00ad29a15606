"""bench/report.py: aggregation of repeat JSONs, REPORT.md, charts and the exit status, with stand-in benchmarks."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.report import (
    BENCHMARKS,
    Benchmark,
    Repeat,
    aggregate,
    build_report,
    main,
    number,
    readme_anchor,
    run_all,
    spread,
    validate_rows,
)

SCRAPE = Benchmark("scrape_latency", "Scrape latency")
MTTR = Benchmark("mttr", "Time to recovery")
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def row(name: str, healwatch: float, peer: float, **extra: Any) -> dict[str, Any]:
    return {"row": name, "what": f"{name} latency", "unit": "ms", "healwatch": healwatch, "peer": peer,
            "peer_name": "node_exporter 1.5.0", "lower_is_better": True, **extra}


def repeat(benchmark: Benchmark, index: int, *rows: dict[str, Any]) -> Repeat:
    return Repeat(benchmark, index, ("python3",), 1.0, data={"cpus": 2, "load_avg": [0.5, 0.4, 0.3],
                                                            "report": list(rows)})


def test_aggregate_takes_medians_ratio_and_spread_over_repeats() -> None:
    """Each row's values are collected per side; the ratio is of the medians, noise is min/median/max."""
    summaries = aggregate([
        repeat(SCRAPE, 1, row("p50", 1.0, 10.0), row("p99", 3.0, 30.0)),
        repeat(SCRAPE, 2, row("p50", 2.0, 8.0), row("p99", 5.0, 20.0)),
        repeat(SCRAPE, 3, row("p50", 4.0, 12.0), row("p99", 4.0, 40.0)),
    ])
    assert [s.row for s in summaries] == ["p50", "p99"]
    p50 = summaries[0]
    assert p50.healwatch == [1.0, 2.0, 4.0] and p50.peer == [10.0, 8.0, 12.0]
    assert p50.ratio == pytest.approx(2.0 / 10.0)
    assert spread(p50.healwatch) == (1.0, 2.0, 4.0)
    assert spread(summaries[1].peer) == (20.0, 30.0, 40.0)


def test_aggregate_skips_failed_repeats_and_keeps_benchmarks_apart() -> None:
    """A failed repeat adds nothing; equal row ids of different benchmarks stay separate rows."""
    failed = Repeat(SCRAPE, 2, ("python3",), 1.0, error="exited with status 1")
    summaries = aggregate([repeat(SCRAPE, 1, row("p50", 1.0, 2.0)), failed, repeat(MTTR, 1, row("p50", 5.0, 0.0))])
    assert [(s.benchmark.name, s.healwatch) for s in summaries] == [("scrape_latency", [1.0]), ("mttr", [5.0])]
    assert summaries[1].ratio is None  # a zero peer has no ratio


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"cpus": 2}, 'no "report" list'),
        ({"report": [{"row": "x"}]}, "'what' is missing"),
        ({"report": [row("x", True, 1.0)]}, "'healwatch' is missing or not a number"),
        ({"report": [row("x", float("nan"), 1.0)]}, "finite"),
        ({"report": [row("x", 1.0, 1.0), row("x", 2.0, 2.0)]}, "appears twice"),
    ],
)
def test_bad_report_rows_are_refused_with_the_reason(data: dict[str, Any], message: str) -> None:
    """Rows that break the contract raise a ValueError saying what is wrong."""
    with pytest.raises(ValueError, match=message):
        validate_rows(data)


def test_numbers_keep_about_three_significant_digits() -> None:
    """Small values keep their digits, large ones get thousands separators."""
    assert [number(v) for v in (0.008123, 0.589, 1.366, 13.08, 1273.7, 0.0)] == [
        "0.00812", "0.589", "1.37", "13.1", "1,274", "0"]


def test_readme_links_point_at_existing_sections_only(tmp_path: Path) -> None:
    """A heading that exists gets its GitHub anchor; a missing one links to the page."""
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\n## Alert latency, end to end\n\ntext\n")
    assert readme_anchor("Alert latency, end to end", readme) == "../README.md#alert-latency-end-to-end"
    assert readme_anchor("Footprint", readme) == "../README.md"


def test_a_missing_module_is_reported_once_without_running(tmp_path: Path) -> None:
    """A benchmark whose module does not exist fails with a clear reason, and its other repeats are not tried."""
    results = run_all([Benchmark("no_such_bench", "Nothing")], 3, tmp_path, True)
    assert [(r.index, r.argv, r.error) for r in results] == [(1, (), "bench/no_such_bench.py does not exist")]


def fake_command(outputs: dict[str, Any]) -> Any:
    """A command builder running a tiny Python program per benchmark instead of the real module.

    ``outputs[name]`` is the JSON that program writes, or an int: the status it exits with.
    """

    def command(benchmark: Benchmark, output: Path, quick: bool) -> list[str]:
        planned = outputs[benchmark.name]
        if isinstance(planned, int):
            program = f"import sys; sys.stderr.write('boom: no peer\\n'); sys.exit({planned})"
        else:
            program = f"import pathlib, sys; pathlib.Path(sys.argv[1]).write_text({json.dumps(planned)!r})"
        return [sys.executable, "-c", program, str(output), *(["--quick"] if quick else [])]

    return command


def test_build_report_writes_rows_failures_and_raw_files(tmp_path: Path) -> None:
    """A good and a failing stand-in: REPORT.md has the good rows with ratio and noise, the failure with
    its stderr, the raw JSONs are kept, and the exit status is 1."""
    good = {"cpus": 2, "load_avg": [0.25, 0.2, 0.1], "report": [row("p50", 1.0, 8.0)]}
    status = build_report((SCRAPE, MTTR), 2, True, tmp_path, fake_command({"scrape_latency": good, "mttr": 3}))
    assert status == 1
    report = (tmp_path / "REPORT.md").read_text()
    assert "| p50 latency | 1.00 ms | 8.00 ms | 0.125 | 1.00 / 1.00 / 1.00 | 8.00 / 8.00 / 8.00 |" in report
    assert "vs node_exporter 1.5.0" in report
    assert "`mttr` repeat 1: exited with status 3" in report and "boom: no peer" in report
    assert "`alert_latency`: not run" in report
    assert f"{os.cpu_count()} cores" in report
    assert sorted(p.name for p in (tmp_path / "raw").glob("*.json")) == ["scrape_latency-1.json",
                                                                         "scrape_latency-2.json"]


def test_build_report_succeeds_when_every_benchmark_does(tmp_path: Path) -> None:
    """All stand-ins succeed: exit status 0, and stale raw files of an earlier run are gone."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "scrape_latency-7.json").write_text("{}")
    good = {"cpus": 2, "load_avg": [0.25, 0.2, 0.1], "report": [row("p50", 1.0, 8.0)]}
    assert build_report((SCRAPE,), 1, False, tmp_path, fake_command({"scrape_latency": good})) == 0
    assert [p.name for p in (tmp_path / "raw").glob("*.json")] == ["scrape_latency-1.json"]


def test_invalid_json_from_a_benchmark_counts_as_a_failure(tmp_path: Path) -> None:
    """A benchmark that exits 0 but writes rows without the contract's keys fails the report."""
    bad = {"cpus": 2, "report": [{"row": "p50"}]}
    assert build_report((SCRAPE,), 1, True, tmp_path, fake_command({"scrape_latency": bad})) == 1
    assert "scrape_latency-1.json: report row 'p50': 'what' is missing" in (tmp_path / "REPORT.md").read_text()


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is the dev-only `bench` extra; CI installs `.[test]`")
def test_charts_are_written_and_embedded(tmp_path: Path) -> None:
    """One PNG per benchmark with rows, linked from REPORT.md relative to it."""
    good = {"cpus": 2, "load_avg": [0.25, 0.2, 0.1], "report": [row("p50", 1.0, 8.0), row("cpu", 0.1, 7.0)]}
    build_report((SCRAPE,), 2, True, tmp_path, fake_command({"scrape_latency": good}))
    chart = tmp_path / "report-scrape_latency.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![Scrape latency](report-scrape_latency.png)" in (tmp_path / "REPORT.md").read_text()


def test_unknown_benchmark_names_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """--only with a name that is not a report benchmark exits 2 and lists the valid names."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--only", "nonsense"])
    assert exit_info.value.code == 2
    assert BENCHMARKS[0].name in capsys.readouterr().err
