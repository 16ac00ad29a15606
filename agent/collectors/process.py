"""Finding a service's process (pidfile, name or command line) and reporting its resources."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.config import ProcessMatch
from healers.backends.children import agent_side_errno

# A pidfile holds one number; anything longer is not a pidfile.
PIDFILE_MAX_BYTES = 4096
SCAN_ATTRS = ["name", "cmdline", "status"]
# process-exporter's namegroup states: psutil's status -> the state label (anything else is "Other").
STATES = {
    psutil.STATUS_RUNNING: "Running", psutil.STATUS_SLEEPING: "Sleeping",
    psutil.STATUS_DISK_SLEEP: "Waiting", psutil.STATUS_ZOMBIE: "Zombie",
}

ProcessIter = Callable[..., Iterator[psutil.Process]]


class ProcessScanner:
    """All processes with their name, command line and status, read in one pass.

    Trackers that lost their process share one scanner so that many services down at once cost
    one pass per cycle instead of one each: a snapshot younger than ``max_age_s`` is reused. The
    agent's own process and zombies are left out.
    """

    def __init__(
        self,
        *,
        max_age_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        own_pid: int | None = None,
        process_iter: ProcessIter = psutil.process_iter,
    ) -> None:
        self.max_age_s = max_age_s
        self._clock = clock
        self._own_pid = os.getpid() if own_pid is None else own_pid
        self._process_iter = process_iter
        self._processes: list[psutil.Process] = []
        self._taken_at: float | None = None

    def snapshot(self) -> list[psutil.Process]:
        """Processes with ``info`` holding name, cmdline and status; rescanned when older than max_age_s."""
        now = self._clock()
        if self._taken_at is None or now - self._taken_at >= self.max_age_s:
            self._processes = [
                process for process in self._process_iter(SCAN_ATTRS)
                if process.pid != self._own_pid and process.info["status"] != psutil.STATUS_ZOMBIE
            ]
            self._taken_at = now
        return self._processes


class ProcessTracker:
    """Follows the process a ``ProcessMatch`` names, across restarts.

    A pidfile is re-read on every refresh (it is one small read). Matching by name or command
    line asks the scanner for all processes only when the tracked process is gone, so a healthy
    service costs one liveness check per refresh. Among several matches the oldest process is tracked, which is
    the parent in the usual master-and-workers layout.
    """

    def __init__(
        self,
        match: ProcessMatch,
        *,
        scanner: ProcessScanner | None = None,
        process_factory: Callable[[int], psutil.Process] = psutil.Process,
    ) -> None:
        self.match = match
        self.pid: int | None = None
        self.reason = "not looked for yet"
        self.pid_changes = 0
        self._scanner = scanner if scanner is not None else ProcessScanner()
        self._process_factory = process_factory
        self._cmdline = re.compile(match.cmdline) if match.cmdline is not None else None
        self._process: psutil.Process | None = None
        # (start time, pid) of the last process seen, kept while down so a comeback counts as a change.
        self._last_identity: tuple[float, int] | None = None

    def refresh(self) -> psutil.Process | None:
        """The matched process now, or None with ``reason`` saying why."""
        if self.match.pidfile is not None:
            process = self._from_pidfile(Path(self.match.pidfile))
        elif self._process is not None and running(self._process):
            return self._process
        else:
            process = self._scan()
        self._track(process)
        return process

    def alive(self) -> bool:
        """Whether the service's process is running; cheap while the tracked pid lives."""
        return self.refresh() is not None

    def _track(self, process: psutil.Process | None) -> None:
        self._process = process
        if process is None:
            self.pid = None
            return
        identity = _start_order(process)
        if self._last_identity is not None and identity != self._last_identity:
            self.pid_changes += 1
        self._last_identity = identity
        self.pid = process.pid
        self.reason = ""

    def _from_pidfile(self, path: Path) -> psutil.Process | None:
        try:
            with path.open("rb") as file:
                content = file.read(PIDFILE_MAX_BYTES + 1)
        except FileNotFoundError:
            self.reason = f"pidfile {path} does not exist"
            return None
        except OSError as exc:
            self.reason = f"pidfile {path} cannot be read: {exc.strerror or exc}"
            return None
        text = content.decode("ascii", errors="replace").strip()
        if len(content) > PIDFILE_MAX_BYTES or not text.isdigit() or int(text) <= 0:
            shown = text if len(text) <= 40 else text[:40] + "..."
            self.reason = f"pidfile {path}: expected a process id, got {shown!r}"
            return None
        pid = int(text)
        if self._process is not None and self._process.pid == pid and running(self._process):
            return self._process
        try:
            process = self._process_factory(pid)
            zombie = process.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            self.reason = f"pidfile {path} names pid {pid}, which is not running"
            return None
        except psutil.AccessDenied:
            self.reason = f"pidfile {path} names pid {pid}, which this agent may not inspect"
            return None
        if zombie:
            self.reason = f"pidfile {path} names pid {pid}, which has exited and is a zombie"
            return None
        return process

    def _scan(self) -> psutil.Process | None:
        # A shared snapshot may predate this process's death, hence the liveness check on matches.
        matches = [
            process for process in self._scanner.snapshot()
            if self._matches(process.info["name"] or "", process.info["cmdline"] or []) and running(process)
        ]
        oldest = min(matches, key=_start_order, default=None)
        if oldest is None:
            self.reason = f"no running process {self._describe()}"
        return oldest

    def _matches(self, name: str, cmdline: list[str]) -> bool:
        if self._cmdline is not None:
            return self._cmdline.search(" ".join(cmdline)) is not None
        wanted = self.match.name
        return name == wanted or (bool(cmdline) and os.path.basename(cmdline[0]) == wanted)

    def _describe(self) -> str:
        if self._cmdline is not None:
            return f"has a command line matching {self._cmdline.pattern!r}"
        return f"is named {self.match.name!r}"


def running(process: psutil.Process) -> bool:
    """Alive and not a zombie; ``is_running`` also catches a pid reused by another process.

    When the agent cannot read /proc for want of descriptors (or memory) the process is presumed
    alive: the agent's own exhaustion is never taken for an exit.
    """
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
    except OSError as exc:
        if agent_side_errno(exc):
            return True
        raise


def _start_order(process: psutil.Process) -> tuple[float, int]:
    try:
        return process.create_time(), process.pid
    except psutil.Error:
        return float("inf"), process.pid


@dataclass
class _Usage:
    """Resources of a process, summed with its descendants when asked."""

    count: int = 0
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    resident_bytes: int = 0
    virtual_bytes: int = 0
    threads: int = 0
    open_fds: int | None = 0
    start_time_s: float = 0.0
    read_bytes: int | None = 0
    write_bytes: int | None = 0
    voluntary_switches: int = 0
    involuntary_switches: int = 0
    states: dict[str, int] = field(default_factory=lambda: dict.fromkeys([*STATES.values(), "Other"], 0))

    def add(self, process: psutil.Process) -> None:
        """Add one process; raises psutil.NoSuchProcess if it is gone or a zombie."""
        with process.oneshot():
            if process.status() == psutil.STATUS_ZOMBIE:
                raise psutil.ZombieProcess(process.pid)
            cpu = process.cpu_times()
            memory = process.memory_info()
            threads = process.num_threads()
            switches = process.num_ctx_switches()
            state = STATES.get(process.status(), "Other")
            try:
                fds: int | None = process.num_fds()
            except psutil.AccessDenied:
                fds = None
            try:
                io: Any = process.io_counters()
            except psutil.AccessDenied:  # /proc/PID/io is readable only by the owner (or with ptrace rights)
                io = None
        self.count += 1
        self.cpu_user_s += cpu.user
        self.cpu_system_s += cpu.system
        self.resident_bytes += memory.rss
        self.virtual_bytes += memory.vms
        self.threads += threads
        # One unreadable fd table makes the sum unknown rather than too small.
        self.open_fds = None if fds is None or self.open_fds is None else self.open_fds + fds
        self.read_bytes = None if io is None or self.read_bytes is None else self.read_bytes + io.read_bytes
        self.write_bytes = None if io is None or self.write_bytes is None else self.write_bytes + io.write_bytes
        self.voluntary_switches += switches.voluntary
        self.involuntary_switches += switches.involuntary
        self.states[state] += 1


def _measure(process: psutil.Process, children: bool) -> _Usage | None:
    """Resources of ``process`` (and its live descendants); None if it vanished or became unreadable."""
    usage = _Usage()
    try:
        usage.start_time_s = process.create_time()
        usage.add(process)
        descendants: Iterable[psutil.Process] = process.children(recursive=True) if children else ()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    for child in descendants:
        try:
            usage.add(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # children come and go; one that exits mid-read is simply not counted
    return usage


class ServiceProcessCollector:
    """``healwatch_process_*`` metrics of one service's process, labelled ``service``.

    While the process is down only ``up``, ``pid_changes_total`` and ``count`` are reported.
    """

    def __init__(self, service: str, match: ProcessMatch, *, tracker: ProcessTracker | None = None) -> None:
        self.service = service
        self.name = f"process:{service}"
        self.children = match.children
        self.tracker = tracker if tracker is not None else ProcessTracker(match)

    def collect(self, now: float) -> list[Metric]:
        process = self.tracker.refresh()
        usage = _measure(process, self.children) if process is not None else None
        labels = [self.service]
        up = GaugeMetricFamily("healwatch_process_up", "Whether the service's process is running.",
                               labels=["service"])
        up.add_metric(labels, 0 if usage is None else 1)
        changes = CounterMetricFamily(
            "healwatch_process_pid_changes_total", "Times the service's process id changed (restarts).",
            labels=["service"])
        changes.add_metric(labels, self.tracker.pid_changes)
        count = GaugeMetricFamily("healwatch_process_count", "Processes summed into the service's metrics.",
                                  labels=["service"])
        count.add_metric(labels, 0 if usage is None else usage.count)
        if usage is None:
            return [up, changes, count]
        return [up, changes, count, *self._usage_families(usage)]

    def _usage_families(self, usage: _Usage) -> Iterator[Metric]:
        labels = [self.service]
        cpu = CounterMetricFamily("healwatch_process_cpu_seconds_total", "CPU time used by the service's process.",
                                  labels=["service", "mode"])
        cpu.add_metric([self.service, "user"], usage.cpu_user_s)
        cpu.add_metric([self.service, "system"], usage.cpu_system_s)
        yield cpu
        switches = CounterMetricFamily(
            "healwatch_process_context_switches_total", "Context switches of the service's process.",
            labels=["service", "ctxswitchtype"])
        switches.add_metric([self.service, "voluntary"], usage.voluntary_switches)
        switches.add_metric([self.service, "nonvoluntary"], usage.involuntary_switches)
        yield switches
        states = GaugeMetricFamily("healwatch_process_states", "Processes of the service in each state.",
                                   labels=["service", "state"])
        for state, count in usage.states.items():
            states.add_metric([self.service, state], count)
        yield states
        io = [("healwatch_process_read_bytes_total", "Bytes the service's process caused to be read from storage.",
               usage.read_bytes),
              ("healwatch_process_write_bytes_total", "Bytes the service's process caused to be written to storage.",
               usage.write_bytes)]
        for metric_name, documentation, total in io:
            if total is not None:
                counter = CounterMetricFamily(metric_name, documentation, labels=["service"])
                counter.add_metric(labels, total)
                yield counter
        gauges = [
            ("healwatch_process_resident_memory_bytes", "Resident memory size in bytes.", usage.resident_bytes),
            ("healwatch_process_virtual_memory_bytes", "Virtual memory size in bytes.", usage.virtual_bytes),
            ("healwatch_process_threads", "Number of OS threads.", usage.threads),
            ("healwatch_process_open_fds", "Number of open file descriptors.", usage.open_fds),
            ("healwatch_process_start_time_seconds", "Start time of the service's process since the epoch.",
             usage.start_time_s),
        ]
        for metric_name, documentation, value in gauges:
            if value is not None:
                family = GaugeMetricFamily(metric_name, documentation, labels=["service"])
                family.add_metric(labels, value)
                yield family
