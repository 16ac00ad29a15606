"""Host metrics read from procfs and statvfs, named and labelled as node_exporter names them."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from agent.config import HostConfig

log = structlog.get_logger(__name__)

# Defaults of node_exporter 1.5 (upstream; Debian's build also drops /run, /mnt and /media).
DEFAULT_MOUNTPOINT_EXCLUDE = r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
DEFAULT_DISK_DEVICE_EXCLUDE = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
DEFAULT_NETWORK_DEVICE_EXCLUDE = r"^lo$"

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
# /proc/diskstats counts sectors of 512 bytes whatever the device's real sector size.
DISK_SECTOR_BYTES = 512
# Column of each reported statistic in a /proc/net/dev row, after the interface name.
# /proc/pressure files and the node_exporter 1.5 series each line feeds: (resource, line) -> name, help.
PRESSURE_SERIES = {
    ("cpu", "some"): ("node_pressure_cpu_waiting_seconds_total",
                      "Total time in seconds that processes have waited for CPU time"),
    ("io", "some"): ("node_pressure_io_waiting_seconds_total",
                     "Total time in seconds that processes have waited due to IO congestion"),
    ("io", "full"): ("node_pressure_io_stalled_seconds_total",
                     "Total time in seconds no process could make progress due to IO congestion"),
    ("memory", "some"): ("node_pressure_memory_waiting_seconds_total",
                         "Total time in seconds that processes have waited for memory"),
    ("memory", "full"): ("node_pressure_memory_stalled_seconds_total",
                         "Total time in seconds no process could make progress due to memory congestion"),
}
NETWORK_COLUMNS = {
    "receive_bytes": 0, "receive_packets": 1, "receive_errs": 2, "receive_drop": 3,
    "transmit_bytes": 8, "transmit_packets": 9, "transmit_errs": 10, "transmit_drop": 11,
}

StatvfsFn = Callable[[str], os.statvfs_result]
Part = Callable[[], Iterator[Metric]]


class HostCollector:
    """CPU, load, memory, pressure, filesystems, disks, network, file descriptors and process counts of this host.

    Each part is named after the node_exporter collector that reports it and fails alone: a part
    that cannot be read is reported as ``node_scrape_collector_success{collector=...} 0`` while
    the others still come through.
    """

    name = "host"

    def __init__(
        self,
        config: HostConfig,
        *,
        proc_root: str | Path = "/proc",
        statvfs: StatvfsFn = os.statvfs,
        statvfs_timeout_s: float = 1.0,
        mountpoint_exclude: str = DEFAULT_MOUNTPOINT_EXCLUDE,
        disk_device_exclude: str = DEFAULT_DISK_DEVICE_EXCLUDE,
        network_device_exclude: str = DEFAULT_NETWORK_DEVICE_EXCLUDE,
        clock_ticks_per_s: int | None = None,
    ) -> None:
        self._proc = Path(proc_root)
        self._fstype_exclude = frozenset(config.filesystem_exclude_types)
        self._mountpoint_exclude = re.compile(mountpoint_exclude)
        self._disk_exclude = re.compile(disk_device_exclude)
        self._network_exclude = re.compile(network_device_exclude)
        self._statvfs = GuardedStatvfs(statvfs, statvfs_timeout_s)
        self._ticks_per_s = clock_ticks_per_s or os.sysconf("SC_CLK_TCK")
        self._parts: dict[str, Part] = {
            "cpu": self._cpu,
            "stat": self._stat,
            "loadavg": self._loadavg,
            "meminfo": self._meminfo,
            "filesystem": self._filesystem,
            "diskstats": self._diskstats,
            "netdev": self._netdev,
            "filefd": self._filefd,
            "processes": self._processes,
            "pressure": self._pressure,
        }
        if config.textfile_directory is not None:
            self._parts["textfile"] = TextfileReader(Path(config.textfile_directory)).read
        self._last_errors: dict[str, str] = {}

    def collect(self, now: float) -> list[Metric]:
        families: list[Metric] = []
        success = GaugeMetricFamily(
            "node_scrape_collector_success", "Whether a host collector part succeeded.", labels=["collector"]
        )
        for part, read in self._parts.items():
            try:
                # Materialise first so a part failing halfway contributes nothing, not half its families.
                produced = list(read())
            except (OSError, ValueError, IndexError, KeyError) as exc:
                success.add_metric([part], 0)
                self._note_error(part, f"{type(exc).__name__}: {exc}")
            else:
                families.extend(produced)
                success.add_metric([part], 1)
                self._last_errors.pop(part, None)
        families.append(success)
        return families

    def _note_error(self, part: str, error: str) -> None:
        # A broken part fails every cycle; say so when it starts failing or fails differently.
        if self._last_errors.get(part) != error:
            log.warning("host collector part failed", collector=part, error=error)
            self._last_errors[part] = error

    def _read(self, relative: str) -> str:
        return (self._proc / relative).read_text(encoding="utf-8", errors="replace")

    def _cpu(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", labels=["cpu", "mode"]
        )
        for line in self._read("stat").splitlines():
            name, _, rest = line.partition(" ")
            if name.startswith("cpu") and name != "cpu":
                for mode, ticks in zip(CPU_MODES, rest.split()):
                    family.add_metric([name[3:], mode], int(ticks) / self._ticks_per_s)
        yield family

    def _stat(self) -> Iterator[Metric]:
        fields = dict(line.split(" ", 1) for line in self._read("stat").splitlines() if " " in line)
        yield GaugeMetricFamily("node_boot_time_seconds", "Node boot time, in unixtime.", value=int(fields["btime"]))
        yield GaugeMetricFamily(
            "node_procs_running", "Number of processes in runnable state.", value=int(fields["procs_running"])
        )
        yield GaugeMetricFamily(
            "node_procs_blocked", "Number of processes blocked waiting for I/O to complete.",
            value=int(fields["procs_blocked"]),
        )

    def _loadavg(self) -> Iterator[Metric]:
        loads = self._read("loadavg").split()
        for minutes, value in zip((1, 5, 15), loads):
            yield GaugeMetricFamily(f"node_load{minutes}", f"{minutes}m load average.", value=float(value))

    def _meminfo(self) -> Iterator[Metric]:
        for line in self._read("meminfo").splitlines():
            key, _, rest = line.partition(":")
            value, *unit = rest.split()
            name = "node_memory_" + key.replace("(", "_").replace(")", "")
            amount = float(value)
            if unit == ["kB"]:
                name, amount = name + "_bytes", amount * 1024
            yield GaugeMetricFamily(name, f"Memory information field {name.removeprefix('node_memory_')}.",
                                    value=amount)

    def _filesystem(self) -> Iterator[Metric]:
        labels = ["device", "fstype", "mountpoint"]
        families = {
            "size_bytes": GaugeMetricFamily("node_filesystem_size_bytes", "Filesystem size in bytes.",
                                            labels=labels),
            "free_bytes": GaugeMetricFamily("node_filesystem_free_bytes", "Filesystem free space in bytes.",
                                            labels=labels),
            "avail_bytes": GaugeMetricFamily(
                "node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.",
                labels=labels),
            "files": GaugeMetricFamily("node_filesystem_files", "Filesystem total file nodes.", labels=labels),
            "files_free": GaugeMetricFamily("node_filesystem_files_free", "Filesystem total free file nodes.",
                                            labels=labels),
            "readonly": GaugeMetricFamily("node_filesystem_readonly", "Filesystem read-only status.",
                                          labels=labels),
        }
        device_error = GaugeMetricFamily(
            "node_filesystem_device_error",
            "Whether an error occurred while getting statistics for the given device.", labels=labels,
        )
        mounts = self._mounts()
        stats = self._statvfs.many([mountpoint for mountpoint, _, _, _ in mounts])
        for mountpoint, device, fstype, options in mounts:
            values = [device, fstype, mountpoint]
            stat = stats[mountpoint]
            if isinstance(stat, Exception):
                device_error.add_metric(values, 1)
                continue
            device_error.add_metric(values, 0)
            block = stat.f_frsize or stat.f_bsize
            families["size_bytes"].add_metric(values, stat.f_blocks * block)
            families["free_bytes"].add_metric(values, stat.f_bfree * block)
            families["avail_bytes"].add_metric(values, stat.f_bavail * block)
            families["files"].add_metric(values, stat.f_files)
            families["files_free"].add_metric(values, stat.f_ffree)
            families["readonly"].add_metric(values, 1 if "ro" in options else 0)
        yield device_error
        yield from families.values()

    def _mounts(self) -> list[tuple[str, str, str, frozenset[str]]]:
        """(mountpoint, device, fstype, options) of reported mounts; the last mount on a path wins."""
        by_mountpoint: dict[str, tuple[str, str, str, frozenset[str]]] = {}
        for line in self._read("self/mounts").splitlines():
            device, mountpoint, fstype, options = line.split()[:4]
            mountpoint = _unescape_mount_field(mountpoint)
            if fstype in self._fstype_exclude or self._mountpoint_exclude.search(mountpoint):
                continue
            by_mountpoint.pop(mountpoint, None)
            by_mountpoint[mountpoint] = (
                mountpoint, _unescape_mount_field(device), fstype, frozenset(options.split(",")),
            )
        return list(by_mountpoint.values())

    def _diskstats(self) -> Iterator[Metric]:
        labels = ["device"]
        read_bytes = CounterMetricFamily(
            "node_disk_read_bytes_total", "The total number of bytes read successfully.", labels=labels)
        written_bytes = CounterMetricFamily(
            "node_disk_written_bytes_total", "The total number of bytes written successfully.", labels=labels)
        reads = CounterMetricFamily(
            "node_disk_reads_completed_total", "The total number of reads completed successfully.", labels=labels)
        writes = CounterMetricFamily(
            "node_disk_writes_completed_total", "The total number of writes completed successfully.",
            labels=labels)
        io_time = CounterMetricFamily(
            "node_disk_io_time_seconds_total", "Total seconds spent doing I/Os.", labels=labels)
        for line in self._read("diskstats").splitlines():
            _, _, device, *counts = line.split()
            if self._disk_exclude.search(device):
                continue
            reads.add_metric([device], int(counts[0]))
            read_bytes.add_metric([device], int(counts[2]) * DISK_SECTOR_BYTES)
            writes.add_metric([device], int(counts[4]))
            written_bytes.add_metric([device], int(counts[6]) * DISK_SECTOR_BYTES)
            io_time.add_metric([device], int(counts[9]) / 1000)
        yield from (read_bytes, written_bytes, reads, writes, io_time)

    def _netdev(self) -> Iterator[Metric]:
        families = {
            stat: CounterMetricFamily(
                f"node_network_{stat}_total", f"Network device statistic {stat}.", labels=["device"])
            for stat in NETWORK_COLUMNS
        }
        # The first two lines are column headers.
        for line in self._read("net/dev").splitlines()[2:]:
            device, _, rest = line.partition(":")
            device = device.strip()
            if self._network_exclude.search(device):
                continue
            counts = rest.split()
            for stat, column in NETWORK_COLUMNS.items():
                families[stat].add_metric([device], int(counts[column]))
        yield from families.values()

    def _filefd(self) -> Iterator[Metric]:
        allocated, _, maximum = self._read("sys/fs/file-nr").split()
        yield GaugeMetricFamily("node_filefd_allocated", "File descriptor statistics: allocated.",
                                value=int(allocated))
        yield GaugeMetricFamily("node_filefd_maximum", "File descriptor statistics: maximum.", value=int(maximum))

    def _processes(self) -> Iterator[Metric]:
        with os.scandir(self._proc) as entries:
            pids = sum(1 for entry in entries if entry.name.isdigit())
        yield GaugeMetricFamily("node_processes_pids", "Number of PIDs", value=pids)

    def _pressure(self) -> Iterator[Metric]:
        # Each file holds "some avg10=.. avg60=.. avg300=.. total=<microseconds>" and, but for cpu on
        # older kernels, a "full" line; node_exporter 1.5 reports the totals it names, in seconds.
        for resource in ("cpu", "io", "memory"):
            for line in self._read(f"pressure/{resource}").splitlines():
                kind, *fields = line.split()
                series = PRESSURE_SERIES.get((resource, kind))
                if series is not None:
                    total_us = dict(field.split("=", 1) for field in fields)["total"]
                    yield CounterMetricFamily(*series, value=int(total_us) / 1e6)


class TextfileReader:
    """node_exporter's textfile collector: the ``*.prom`` files of one directory, read at each collection.

    A file that cannot be read or parsed, or that carries client-side timestamps, is skipped as a
    whole and sets ``node_textfile_scrape_error`` to 1; every file read gets its
    ``node_textfile_mtime_seconds``. A family in several files is merged unless their types differ.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._last_errors: dict[str, str] = {}

    def read(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        mtimes = GaugeMetricFamily("node_textfile_mtime_seconds", "Unixtime mtime of textfiles successfully read.",
                                   labels=["file"])
        errors: dict[str, str] = {}
        try:
            paths = sorted(path for path in self._directory.iterdir() if path.name.endswith(".prom"))
        except OSError as exc:
            paths, errors[str(self._directory)] = [], f"{type(exc).__name__}: {exc}"
        for path in paths:
            try:
                parsed, mtime = self._parse(path, families)
            except (OSError, ValueError) as exc:
                errors[str(path)] = f"{type(exc).__name__}: {exc}"
                continue
            for family in parsed:
                if family.name in families:
                    families[family.name].samples.extend(family.samples)
                else:
                    families[family.name] = family
            mtimes.add_metric([str(path)], mtime)
        self._note_errors(errors)
        yield from families.values()
        yield mtimes
        yield GaugeMetricFamily("node_textfile_scrape_error",
                                "1 if there was an error opening or reading a file, 0 otherwise",
                                value=1 if errors else 0)

    @staticmethod
    def _parse(path: Path, known: dict[str, Metric]) -> tuple[list[Metric], float]:
        """The families of one file and its mtime; ValueError when the file is not one node_exporter takes."""
        with path.open(encoding="utf-8") as stream:
            mtime = float(int(os.fstat(stream.fileno()).st_mtime))  # whole seconds, as node_exporter reports it
            text = stream.read()
        families = list(text_string_to_metric_families(text))
        for family in families:
            if any(sample.timestamp is not None for sample in family.samples):
                raise ValueError(f"{family.name} carries client-side timestamps, which textfiles may not")
            earlier = known.get(family.name)
            if earlier is not None and earlier.type != family.type:
                raise ValueError(f"{family.name} is a {family.type} here but a {earlier.type} in an earlier file")
        return families, mtime

    def _note_errors(self, errors: dict[str, str]) -> None:
        # A broken file stays broken between collections: say so when it breaks or breaks differently.
        for path, error in errors.items():
            if self._last_errors.get(path) != error:
                log.warning("textfile not read", file=path, error=error)
        self._last_errors = errors


def _unescape_mount_field(field: str) -> str:
    """Undo the octal escapes (``\\040`` for a space) the kernel writes into /proc/*/mounts."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


class GuardedStatvfs:
    """statvfs that cannot hang the caller: a dead NFS server costs one timeout, then is skipped.

    Each call runs in a daemon thread. A mountpoint whose call outlives the timeout reports
    ``TimeoutError`` until that call finally returns, so no thread piles up behind a stuck mount.
    """

    def __init__(self, statvfs: StatvfsFn = os.statvfs, timeout_s: float = 1.0) -> None:
        self._statvfs = statvfs
        self._timeout_s = timeout_s
        self._stuck: dict[str, threading.Thread] = {}

    def many(self, mountpoints: list[str]) -> dict[str, os.statvfs_result | Exception]:
        """Stat all mountpoints in parallel, waiting at most one timeout in total."""
        results: dict[str, os.statvfs_result | Exception] = {}
        started: dict[str, threading.Thread] = {}
        for mountpoint in mountpoints:
            stuck = self._stuck.get(mountpoint)
            if stuck is not None and stuck.is_alive():
                results[mountpoint] = TimeoutError(f"statvfs({mountpoint!r}) still hanging from an earlier call")
                continue
            self._stuck.pop(mountpoint, None)
            thread = threading.Thread(
                target=self._run, args=(mountpoint, results), name=f"statvfs {mountpoint}", daemon=True)
            thread.start()
            started[mountpoint] = thread
        deadline = time.monotonic() + self._timeout_s
        for mountpoint, thread in started.items():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self._stuck[mountpoint] = thread
                results[mountpoint] = TimeoutError(f"statvfs({mountpoint!r}) took longer than {self._timeout_s}s")
        return results

    def _run(self, mountpoint: str, results: dict[str, os.statvfs_result | Exception]) -> None:
        try:
            value: os.statvfs_result | Exception = self._statvfs(mountpoint)
        except Exception as exc:  # the thread boundary would swallow it: hand every failure back
            value = exc
        # A late answer from a timed-out call must not overwrite the TimeoutError already reported.
        results.setdefault(mountpoint, value)
