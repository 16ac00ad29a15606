"""Host collector: compared with the real node_exporter, and fed real procfs files with parts broken."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from agent.collectors.host import GuardedStatvfs, HostCollector
from agent.config import HostConfig
from harness.processes import require_binary, stop, wait_for

# Families the brief asks for, with node_exporter's names.
CORE_SAMPLES = {
    "node_cpu_seconds_total", "node_load1", "node_load5", "node_load15",
    "node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes", "node_memory_MemFree_bytes",
    "node_memory_Buffers_bytes", "node_memory_Cached_bytes", "node_memory_SwapTotal_bytes",
    "node_memory_SwapFree_bytes",
    "node_filesystem_size_bytes", "node_filesystem_free_bytes", "node_filesystem_avail_bytes",
    "node_filesystem_files", "node_filesystem_files_free", "node_filesystem_readonly",
    "node_filesystem_device_error",
    "node_disk_read_bytes_total", "node_disk_written_bytes_total", "node_disk_reads_completed_total",
    "node_disk_writes_completed_total", "node_disk_io_time_seconds_total",
    "node_network_receive_bytes_total", "node_network_transmit_bytes_total",
    "node_network_receive_packets_total", "node_network_transmit_packets_total",
    "node_network_receive_errs_total", "node_network_transmit_errs_total",
    "node_network_receive_drop_total", "node_network_transmit_drop_total",
    "node_filefd_allocated", "node_filefd_maximum", "node_boot_time_seconds",
    "node_procs_running", "node_procs_blocked", "node_processes_pids",
}
NODE_EXPORTER_COLLECTORS = ("cpu", "stat", "loadavg", "meminfo", "filesystem", "diskstats", "netdev", "filefd",
                            "processes", "pressure")
PROC_FILES = ("stat", "loadavg", "meminfo", "diskstats", "net/dev", "sys/fs/file-nr",
              "pressure/cpu", "pressure/io", "pressure/memory")
PRESSURE_SAMPLES = {
    "node_pressure_cpu_waiting_seconds_total", "node_pressure_io_waiting_seconds_total",
    "node_pressure_io_stalled_seconds_total", "node_pressure_memory_waiting_seconds_total",
    "node_pressure_memory_stalled_seconds_total",
}


# Sample name -> {sorted label pairs: value}.
HostSamples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def samples(families: list[Metric]) -> HostSamples:
    """Sample name -> {sorted label pairs: value}."""
    table: HostSamples = defaultdict(dict)
    for family in families:
        for sample in family.samples:
            table[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return table


def label_names(series: dict[tuple[tuple[str, str], ...], float]) -> set[frozenset[str]]:
    return {frozenset(name for name, _ in labels) for labels in series}


def values_of(series: dict[tuple[tuple[str, str], ...], float], label: str) -> set[str]:
    return {dict(labels)[label] for labels in series}


def scrape_node_exporter(*flags: str) -> HostSamples:
    """One scrape of the real node_exporter started with ``flags``."""
    binary = require_binary("prometheus-node-exporter")
    argv = [binary, "--web.listen-address=127.0.0.1:0", "--collector.disable-defaults", *flags]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Port 0 lets the kernel pick; the listening socket tells us which.
        port = wait_for(lambda: next(
            (c.laddr.port for c in psutil.Process(process.pid).net_connections("tcp")
             if c.status == psutil.CONN_LISTEN), None), timeout_s=10)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        stop(process)
    return samples(list(text_string_to_metric_families(text)))


@pytest.fixture(scope="module")
def node_exporter_samples() -> HostSamples:
    """One scrape of the real node_exporter, limited to the collectors we mirror."""
    return scrape_node_exporter(*(f"--collector.{name}" for name in NODE_EXPORTER_COLLECTORS))


@pytest.fixture()
def ours() -> HostSamples:
    return samples(HostCollector(HostConfig()).collect(time.time()))


@pytest.mark.integration
def test_core_families_exist_in_both(node_exporter_samples: HostSamples, ours: HostSamples) -> None:
    """Every core host sample name is produced both by node_exporter and by us."""
    assert CORE_SAMPLES - set(node_exporter_samples) == set()
    assert CORE_SAMPLES - set(ours) == set()
    if Path("/proc/pressure").is_dir():
        assert PRESSURE_SAMPLES - set(node_exporter_samples) == set()
        assert PRESSURE_SAMPLES - set(ours) == set()


@pytest.mark.integration
def test_shared_families_have_node_exporters_label_names(node_exporter_samples: HostSamples, ours: HostSamples) -> None:
    """Every sample name we share with node_exporter carries exactly its label names."""
    shared = sorted(set(ours) & set(node_exporter_samples))
    assert len(shared) >= len(CORE_SAMPLES)
    mismatched = {
        name: (label_names(ours[name]), label_names(node_exporter_samples[name]))
        for name in shared if label_names(ours[name]) != label_names(node_exporter_samples[name])
    }
    assert mismatched == {}


@pytest.mark.integration
def test_same_series_and_stable_values_as_node_exporter(node_exporter_samples: HostSamples, ours: HostSamples) -> None:
    """CPUs, modes, disks, interfaces and slow-moving values agree with node_exporter."""
    for name, label in [("node_cpu_seconds_total", "cpu"), ("node_cpu_seconds_total", "mode"),
                        ("node_disk_read_bytes_total", "device"), ("node_network_receive_bytes_total", "device")]:
        assert values_of(ours[name], label) == values_of(node_exporter_samples[name], label), name
    for name in ("node_boot_time_seconds", "node_memory_MemTotal_bytes", "node_filefd_maximum"):
        assert ours[name] == node_exporter_samples[name], name
    root_size = {k: v for k, v in ours["node_filesystem_size_bytes"].items() if ("mountpoint", "/") in k}
    assert len(root_size) == 1
    for labels, size in root_size.items():
        assert node_exporter_samples["node_filesystem_size_bytes"][labels] == size


@pytest.fixture()
def proc_root(tmp_path: Path) -> Path:
    """A copy of this host's real procfs files, with a mount table the test writes."""
    root = tmp_path / "proc"
    for relative in PROC_FILES:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        if Path("/proc", relative).exists():
            (root / relative).write_text(Path("/proc", relative).read_text())
    if not Path("/proc/pressure").is_dir():  # a kernel without PSI: the test writes what one with it shows
        for resource in ("cpu", "io", "memory"):
            (root / "pressure" / resource).write_text(
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\n"
                "full avg10=0.00 avg60=0.00 avg300=0.00 total=250000\n")
    (root / "self").mkdir()
    for pid in ("1", "42"):
        (root / pid).mkdir()
    return root


def write_mounts(proc_root: Path, *lines: str) -> None:
    (proc_root / "self" / "mounts").write_text("".join(line + "\n" for line in lines))


def test_missing_procfs_file_fails_only_its_part(proc_root: Path) -> None:
    """Without /proc/diskstats the diskstats part reports failure and every other part still reports."""
    (proc_root / "diskstats").unlink()
    write_mounts(proc_root, "/dev/vda / ext4 rw,relatime 0 0")
    got = samples(HostCollector(HostConfig(), proc_root=proc_root).collect(0.0))
    success = {dict(k)["collector"]: v for k, v in got["node_scrape_collector_success"].items()}
    assert success == {name: (0 if name == "diskstats" else 1) for name in NODE_EXPORTER_COLLECTORS}
    assert "node_disk_read_bytes_total" not in got
    assert got["node_processes_pids"] == {(): 2}
    assert "node_memory_MemTotal_bytes" in got


def test_filesystem_errors_and_exclusions(proc_root: Path, tmp_path: Path) -> None:
    """A vanished mountpoint gives device_error 1, excluded types and paths are skipped, escapes decode,
    and of two mounts on one path the later (the visible one) is reported."""
    spaced = tmp_path / "with space"
    spaced.mkdir()
    escaped = str(spaced).replace(" ", "\\040")
    write_mounts(
        proc_root,
        "/dev/vda / ext4 rw,relatime 0 0",
        f"tmpfs {escaped} tmpfs rw 0 0",
        f"tmpfs {escaped} tmpfs ro,nosuid 0 0",
        f"gone {tmp_path}/missing nfs4 rw 0 0",
        "tmpfs /run/credentials/getty.service tmpfs ro 0 0",
        f"cg {tmp_path} cgroup2 rw 0 0",
    )
    got = samples(HostCollector(HostConfig(), proc_root=proc_root).collect(0.0))
    errors = {dict(k)["mountpoint"]: v for k, v in got["node_filesystem_device_error"].items()}
    assert errors == {"/": 0, str(spaced): 0, f"{tmp_path}/missing": 1}
    readonly = {dict(k)["mountpoint"]: v for k, v in got["node_filesystem_readonly"].items()}
    assert readonly == {"/": 0, str(spaced): 1}
    assert got["node_scrape_collector_success"][(("collector", "filesystem"),)] == 1


def test_hanging_statvfs_costs_one_timeout_then_is_skipped(proc_root: Path, tmp_path: Path) -> None:
    """A statvfs that never returns reports device_error 1 without blocking later cycles.

    A stand-in statvfs blocks on an event: a hung NFS mount cannot be made here without a server.
    """
    write_mounts(proc_root, "/dev/vda / ext4 rw 0 0", f"server:/export {tmp_path} nfs4 rw 0 0")
    release = threading.Event()
    calls: list[str] = []

    def statvfs(path: str) -> os.statvfs_result:
        calls.append(path)
        if path == str(tmp_path):
            release.wait(10)
        return os.statvfs(path)

    collector = HostCollector(HostConfig(), proc_root=proc_root, statvfs=statvfs, statvfs_timeout_s=0.05)
    try:
        for _ in range(2):
            started = time.monotonic()
            got = samples(collector.collect(0.0))
            assert time.monotonic() - started < 2
            errors = {dict(k)["mountpoint"]: v for k, v in got["node_filesystem_device_error"].items()}
            assert errors == {"/": 0, str(tmp_path): 1}
        assert calls.count(str(tmp_path)) == 1
    finally:
        release.set()


def test_guarded_statvfs_retries_a_mount_once_its_call_returns(tmp_path: Path) -> None:
    """After a stuck call finally returns, the next cycle stats that mountpoint again."""
    release = threading.Event()
    returned = threading.Event()

    def statvfs(path: str) -> os.statvfs_result:
        release.wait(10)
        try:
            return os.statvfs(path)
        finally:
            returned.set()

    guarded = GuardedStatvfs(statvfs, timeout_s=0.05)
    assert isinstance(guarded.many([str(tmp_path)])[str(tmp_path)], TimeoutError)
    release.set()
    assert returned.wait(5)
    wait_for(lambda: not any(t.name == f"statvfs {tmp_path}" for t in threading.enumerate()), timeout_s=5)
    stat = guarded.many([str(tmp_path)])[str(tmp_path)]
    assert isinstance(stat, os.statvfs_result) and stat.f_blocks > 0


def test_meminfo_names_follow_node_exporter(proc_root: Path) -> None:
    """kB fields become *_bytes, parentheses become underscores, counts keep their bare name."""
    (proc_root / "meminfo").write_text("MemTotal: 2 kB\nActive(anon): 1 kB\nHugePages_Total: 3\n")
    write_mounts(proc_root)
    got = samples(HostCollector(HostConfig(), proc_root=proc_root).collect(0.0))
    memory = {name: series[()] for name, series in got.items() if name.startswith("node_memory_")}
    assert memory == {"node_memory_MemTotal_bytes": 2048, "node_memory_Active_anon_bytes": 1024,
                      "node_memory_HugePages_Total": 3}


def test_garbage_procfs_content_fails_its_part_without_raising(proc_root: Path) -> None:
    """Unparseable /proc/loadavg and file-nr make those parts fail and leave the rest intact."""
    (proc_root / "loadavg").write_text("not numbers here\n")
    (proc_root / "sys/fs/file-nr").write_text("1 2\n")
    write_mounts(proc_root)
    got = samples(HostCollector(HostConfig(), proc_root=proc_root).collect(0.0))
    success = {dict(k)["collector"]: v for k, v in got["node_scrape_collector_success"].items()}
    assert success["loadavg"] == 0 and success["filefd"] == 0 and success["cpu"] == 1
    assert "node_cpu_seconds_total" in got


def write_textfiles(directory: Path) -> None:
    """Two good files sharing a family, one with client-side timestamps, one malformed, one not *.prom."""
    directory.mkdir()
    (directory / "a.prom").write_text(
        "# HELP app_jobs_total Jobs done.\n# TYPE app_jobs_total counter\napp_jobs_total{queue=\"a\"} 3\n")
    (directory / "b.prom").write_text(
        "# HELP app_jobs_total Jobs done.\n# TYPE app_jobs_total counter\napp_jobs_total{queue=\"b\"} 4\n"
        "backup_last_success_timestamp_seconds 1.7e+09\n")
    (directory / "c.prom").write_text("stamped 1 1700000000000\n")
    (directory / "d.prom").write_text("not a metric line{\n")
    (directory / "e.txt").write_text("ignored 1\n")


def textfile_part(table: HostSamples) -> HostSamples:
    return {name: series for name, series in table.items()
            if name.startswith(("app_", "backup_", "stamped", "ignored", "node_textfile_"))}


@pytest.mark.integration
def test_textfile_matches_node_exporter(tmp_path: Path) -> None:
    """The same directory gives node_exporter's series: merged families, per-file mtimes, the error flag."""
    write_textfiles(tmp_path / "textfiles")
    theirs = scrape_node_exporter("--collector.textfile", f"--collector.textfile.directory={tmp_path / 'textfiles'}")
    config = HostConfig(textfile_directory=str(tmp_path / "textfiles"))
    ours = samples(HostCollector(config).collect(0.0))
    assert textfile_part(ours) == textfile_part(theirs)
    assert ours["node_textfile_scrape_error"] == {(): 1}
    assert set(values_of(ours["node_textfile_mtime_seconds"], "file")) == {
        str(tmp_path / "textfiles" / name) for name in ("a.prom", "b.prom")}


def test_textfile_errors_clear_and_type_conflicts_skip_the_file(tmp_path: Path) -> None:
    """A fixed file clears the error; a family typed differently in a later file skips that file."""
    directory = tmp_path / "textfiles"
    directory.mkdir()
    (directory / "a.prom").write_text("# TYPE jobs gauge\njobs 1\n")
    (directory / "b.prom").write_text("# TYPE jobs counter\njobs_total 2\n")
    collector = HostCollector(HostConfig(textfile_directory=str(directory)), proc_root=tmp_path)
    got = samples(collector.collect(0.0))
    assert got["jobs"] == {(): 1} and "jobs_total" not in got
    assert got["node_textfile_scrape_error"] == {(): 1}
    (directory / "b.prom").unlink()
    assert samples(collector.collect(0.0))["node_textfile_scrape_error"] == {(): 0}


def test_missing_textfile_directory_is_an_error_not_a_failure(tmp_path: Path) -> None:
    """A directory that does not exist yet reports the error flag; the collector part still succeeds."""
    collector = HostCollector(HostConfig(textfile_directory=str(tmp_path / "absent")), proc_root=tmp_path)
    got = samples(collector.collect(0.0))
    assert got["node_textfile_scrape_error"] == {(): 1}
    assert got["node_scrape_collector_success"][(("collector", "textfile"),)] == 1


def test_pressure_totals_in_seconds(proc_root: Path) -> None:
    """PSI totals (microseconds) become node_exporter 1.5's counters; the cpu 'full' line is not one of them."""
    for resource in ("cpu", "io", "memory"):
        (proc_root / "pressure" / resource).write_text(
            "some avg10=1.00 avg60=0.50 avg300=0.10 total=1500000\n"
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=250000\n")
    write_mounts(proc_root, "/dev/vda / ext4 rw 0 0")
    got = samples(HostCollector(HostConfig(), proc_root=proc_root).collect(0.0))
    pressure = {name: series[()] for name, series in got.items() if name.startswith("node_pressure_")}
    assert pressure == {
        "node_pressure_cpu_waiting_seconds_total": 1.5,
        "node_pressure_io_waiting_seconds_total": 1.5, "node_pressure_io_stalled_seconds_total": 0.25,
        "node_pressure_memory_waiting_seconds_total": 1.5, "node_pressure_memory_stalled_seconds_total": 0.25,
    }
