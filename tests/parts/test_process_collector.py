"""Process tracker and collector against real processes that start, die and come back."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from agent.collectors.process import ProcessScanner, ProcessTracker, ServiceProcessCollector
from agent.config import ProcessMatch
from harness.processes import wait_for

# Sleepers say when they are fully started, so their memory and cpu are those of a running interpreter.
# Burns user CPU until the kernel has accounted at least one tick of it, so cpu_seconds{mode="user"} > 0.
# (one line, so command-line regexes match it: `any` spins over an endless iterator until user time shows)
SLEEP = "import os, time; any(os.times().user for _ in iter(int, 1)); print('ready', flush=True); time.sleep(60)"
# A parent that starts a sleeping child, reports the child's pid once it is running, then sleeps too.
PARENT = (
    "import subprocess, sys, time;"
    f"child = subprocess.Popen([sys.executable, '-c', {SLEEP!r}], stdout=subprocess.PIPE);"
    "child.stdout.readline();"
    "print(child.pid, flush=True);"
    "time.sleep(60)"
)
DOWN_FAMILIES = {"healwatch_process_up", "healwatch_process_pid_changes", "healwatch_process_count"}
UP_FAMILIES = DOWN_FAMILIES | {
    "healwatch_process_cpu_seconds", "healwatch_process_resident_memory_bytes",
    "healwatch_process_virtual_memory_bytes", "healwatch_process_threads", "healwatch_process_open_fds",
    "healwatch_process_start_time_seconds", "healwatch_process_context_switches", "healwatch_process_states",
    "healwatch_process_read_bytes", "healwatch_process_write_bytes",
}

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture()
def spawn() -> Iterator[Spawn]:
    """Start real processes; every one is SIGKILLed and reaped at the end, children included."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*argv: str, executable: str | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` (a sleeper by default) and wait for its first line of output."""
        process = subprocess.Popen(list(argv) or [sys.executable, "-c", SLEEP], executable=executable,
                                   stdout=subprocess.PIPE)
        started.append(process)
        assert process.stdout is not None and process.stdout.readline()
        return process

    try:
        yield start
    finally:
        for process in started:
            try:
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
            except psutil.NoSuchProcess:
                pass
            process.kill()
            process.wait(5)
            assert process.stdout is not None
            process.stdout.close()


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL and reap, so the pid is really gone rather than a zombie."""
    process.send_signal(signal.SIGKILL)
    process.wait(5)


def collect(collector: ServiceProcessCollector) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    table: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in collector.collect(0.0):
        for sample in family.samples:
            table.setdefault(family.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return table


def value(table: dict[str, dict[tuple[tuple[str, str], ...], float]], family: str, **labels: str) -> float:
    return table[family][tuple(sorted({"service": "svc", **labels}.items()))]


def test_pidfile_process_killed_and_restarted(spawn: Spawn, tmp_path: Path) -> None:
    """up goes 1 -> 0 -> 1 across SIGKILL and restart, and the restart counts one pid change."""
    pidfile = tmp_path / "svc.pid"
    first = spawn()
    pidfile.write_text(f"{first.pid}\n")
    collector = ServiceProcessCollector("svc", ProcessMatch(pidfile=str(pidfile)))

    running = collect(collector)
    assert set(running) == UP_FAMILIES
    assert value(running, "healwatch_process_up") == 1
    assert value(running, "healwatch_process_count") == 1
    assert value(running, "healwatch_process_pid_changes") == 0
    assert value(running, "healwatch_process_start_time_seconds") == psutil.Process(first.pid).create_time()
    assert value(running, "healwatch_process_resident_memory_bytes") > 1 << 20
    assert value(running, "healwatch_process_cpu_seconds", mode="user") > 0
    assert value(running, "healwatch_process_open_fds") >= 3
    assert collector.tracker.pid == first.pid

    kill(first)
    down = collect(collector)
    assert set(down) == DOWN_FAMILIES
    assert value(down, "healwatch_process_up") == 0
    assert value(down, "healwatch_process_count") == 0
    assert collector.tracker.pid is None
    assert f"names pid {first.pid}, which is not running" in collector.tracker.reason

    second = spawn()
    pidfile.write_text(f"{second.pid}\n")
    back = collect(collector)
    assert value(back, "healwatch_process_up") == 1
    assert value(back, "healwatch_process_pid_changes") == 1
    assert collector.tracker.pid == second.pid and collector.tracker.reason == ""


def test_pidfile_rewritten_while_old_process_lives_counts_a_change(spawn: Spawn, tmp_path: Path) -> None:
    """A pidfile that starts naming another live process switches tracking and counts a change."""
    pidfile = tmp_path / "svc.pid"
    first, second = spawn(), spawn()
    pidfile.write_text(str(first.pid))
    tracker = ProcessTracker(ProcessMatch(pidfile=str(pidfile)))
    assert tracker.alive() and tracker.pid == first.pid
    pidfile.write_text(str(second.pid))
    assert tracker.alive() and tracker.pid == second.pid
    assert tracker.pid_changes == 1


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "does not exist"),
        (b"not-a-pid\n", "expected a process id, got 'not-a-pid'"),
        (b"", "expected a process id, got ''"),
        (b"-5", "expected a process id, got '-5'"),
        (b"\xff\xfe" * 3000, "expected a process id"),
        (b"99999999999\n", "names pid 99999999999, which is not running"),
    ],
)
def test_bad_pidfile_is_down_with_a_reason(tmp_path: Path, content: bytes | None, reason: str) -> None:
    """A missing or garbage pidfile reports up 0, count 0 and a reason naming the file."""
    pidfile = tmp_path / "svc.pid"
    if content is not None:
        pidfile.write_bytes(content)
    collector = ServiceProcessCollector("svc", ProcessMatch(pidfile=str(pidfile)))
    table = collect(collector)
    assert set(table) == DOWN_FAMILIES
    assert value(table, "healwatch_process_up") == 0
    assert value(table, "healwatch_process_count") == 0
    assert str(pidfile) in collector.tracker.reason and reason in collector.tracker.reason
    assert len(collector.tracker.reason) < 200


def test_zombie_counts_as_down(spawn: Spawn, tmp_path: Path) -> None:
    """A killed but unreaped process (a zombie) is reported down, with the reason saying so."""
    process = spawn()
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(str(process.pid))
    tracker = ProcessTracker(ProcessMatch(pidfile=str(pidfile)))
    assert tracker.alive()
    os.kill(process.pid, signal.SIGKILL)
    wait_for(lambda: psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE, timeout_s=5)
    assert not tracker.alive()
    assert "zombie" in tracker.reason


def test_cmdline_regex_finds_follows_and_refinds(spawn: Spawn) -> None:
    """A cmdline match is found, goes down when killed, and finds the replacement as a pid change."""
    marker = f"healwatch-test-{uuid.uuid4().hex}"
    first = spawn(sys.executable, "-c", SLEEP, marker)
    tracker = ProcessTracker(ProcessMatch(cmdline=rf"-c .* {re.escape(marker)}$"))
    assert tracker.alive() and tracker.pid == first.pid
    kill(first)
    assert not tracker.alive()
    assert tracker.reason == f"no running process has a command line matching {tracker.match.cmdline!r}"
    second = spawn(sys.executable, "-c", SLEEP, marker)
    assert tracker.alive() and tracker.pid == second.pid
    assert tracker.pid_changes == 1


def test_cmdline_regex_never_matches_the_agent_itself() -> None:
    """A regex that matches only this test process's own command line finds nothing."""
    own = " ".join(psutil.Process().cmdline())
    tracker = ProcessTracker(ProcessMatch(cmdline=f"^{re.escape(own)}$"))
    assert not tracker.alive()
    assert tracker.pid is None


def test_tracking_by_name_skips_rescans_while_the_process_lives(spawn: Spawn, tmp_path: Path) -> None:
    """Name matching scans once, then re-checks only the tracked pid until it dies."""
    name = f"hw-{uuid.uuid4().hex[:10]}"
    link = tmp_path / name
    link.symlink_to(sys.executable)
    process = spawn(str(link), "-c", SLEEP)
    scans: list[list[str]] = []

    def counting_iter(attrs: list[str]) -> Iterator[psutil.Process]:
        scans.append(attrs)
        return psutil.process_iter(attrs)

    tracker = ProcessTracker(ProcessMatch(name=name), scanner=ProcessScanner(process_iter=counting_iter))
    for _ in range(3):
        assert tracker.alive() and tracker.pid == process.pid
    assert len(scans) == 1
    kill(process)
    assert not tracker.alive()
    assert len(scans) == 2


def test_name_matches_comm_or_argv0_basename(spawn: Spawn, tmp_path: Path) -> None:
    """The process name (comm, from a symlink's name) and argv[0]'s basename both match."""
    comm = f"hwc-{uuid.uuid4().hex[:10]}"
    (tmp_path / comm).symlink_to(sys.executable)
    by_comm = spawn(str(tmp_path / comm), "-c", SLEEP)
    argv0 = f"hw-argv0-{uuid.uuid4().hex}"
    by_argv0 = spawn(f"/opt/made/up/{argv0}", "-c", SLEEP, executable=sys.executable)
    assert psutil.Process(by_argv0.pid).name() != argv0
    found_by_comm = ProcessTracker(ProcessMatch(name=comm)).refresh()
    found_by_argv0 = ProcessTracker(ProcessMatch(name=argv0)).refresh()
    assert found_by_comm is not None and found_by_comm.pid == by_comm.pid
    assert found_by_argv0 is not None and found_by_argv0.pid == by_argv0.pid


def test_children_are_summed_when_asked(spawn: Spawn, tmp_path: Path) -> None:
    """children: true adds a real child's memory and threads and counts two processes."""
    parent = spawn(sys.executable, "-c", PARENT)
    child_pid = psutil.Process(parent.pid).children()[0].pid
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(str(parent.pid))

    alone = collect(ServiceProcessCollector("svc", ProcessMatch(pidfile=str(pidfile))))
    summed = collect(ServiceProcessCollector("svc", ProcessMatch(pidfile=str(pidfile), children=True)))

    assert value(alone, "healwatch_process_count") == 1
    assert value(summed, "healwatch_process_count") == 2
    child_rss = psutil.Process(child_pid).memory_info().rss
    assert value(summed, "healwatch_process_resident_memory_bytes") >= (
        value(alone, "healwatch_process_resident_memory_bytes") + child_rss // 2)
    assert value(summed, "healwatch_process_threads") >= value(alone, "healwatch_process_threads") + 1
    assert value(summed, "healwatch_process_start_time_seconds") == psutil.Process(parent.pid).create_time()


def test_service_label_is_on_every_sample(spawn: Spawn, tmp_path: Path) -> None:
    """Every sample carries the service label and cpu splits into user and system modes."""
    process = spawn()
    pidfile = tmp_path / "api.pid"
    pidfile.write_text(str(process.pid))
    families = ServiceProcessCollector("api", ProcessMatch(pidfile=str(pidfile))).collect(0.0)
    assert all(sample.labels["service"] == "api" for family in families for sample in family.samples)
    cpu = next(family for family in families if family.name == "healwatch_process_cpu_seconds")
    assert cpu.type == "counter"
    assert sorted((s.name, s.labels["mode"]) for s in cpu.samples) == [
        ("healwatch_process_cpu_seconds_total", "system"), ("healwatch_process_cpu_seconds_total", "user")]


def test_shared_scanner_scans_once_for_many_down_services() -> None:
    """Trackers sharing a scanner reuse one pass over all processes until it is max_age_s old."""
    clock = [100.0]
    passes: list[list[str]] = []

    def counting_iter(attrs: list[str]) -> Iterator[psutil.Process]:
        passes.append(attrs)
        return psutil.process_iter(attrs)

    scanner = ProcessScanner(max_age_s=1.0, clock=lambda: clock[0], process_iter=counting_iter)
    trackers = [ProcessTracker(ProcessMatch(cmdline=f"no-such-process-{uuid.uuid4().hex}-{i}"), scanner=scanner)
                for i in range(5)]
    assert not any(tracker.alive() for tracker in trackers)
    assert len(passes) == 1
    clock[0] += 1.0
    assert not any(tracker.alive() for tracker in trackers)
    assert len(passes) == 2


def test_stale_snapshot_never_revives_a_dead_process(spawn: Spawn) -> None:
    """A process that died after the shared snapshot was taken is not tracked again from it."""
    marker = f"healwatch-test-{uuid.uuid4().hex}"
    process = spawn(sys.executable, "-c", SLEEP, marker)
    scanner = ProcessScanner(max_age_s=3600.0)
    tracker = ProcessTracker(ProcessMatch(cmdline=re.escape(marker)), scanner=scanner)
    assert tracker.alive() and tracker.pid == process.pid
    kill(process)
    assert any(p.pid == process.pid for p in scanner.snapshot())
    assert not tracker.alive()
    assert tracker.pid is None and tracker.reason.startswith("no running process has a command line")


def test_io_context_switches_and_states_of_a_real_process(spawn: Spawn, tmp_path: Path) -> None:
    """A process that writes 1 MiB to disk and fsyncs shows it in write_bytes; a sleeper is Sleeping."""
    target = tmp_path / "written"
    writer = spawn(sys.executable, "-c",
                   f"import os, time; fd = os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT);"
                   "os.write(fd, b'x' * 1048576); os.fsync(fd); print('ready', flush=True); time.sleep(60)")
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(str(writer.pid))
    table = collect(ServiceProcessCollector("svc", ProcessMatch(pidfile=str(pidfile))))
    io = psutil.Process(writer.pid).io_counters()
    assert value(table, "healwatch_process_write_bytes") == io.write_bytes
    if io.write_bytes:  # 0 on filesystems that do not account writes per task (tmpfs)
        assert io.write_bytes >= 1048576
    assert value(table, "healwatch_process_context_switches", ctxswitchtype="voluntary") >= 1
    assert value(table, "healwatch_process_states", state="Sleeping") == 1
    assert sum(table["healwatch_process_states"].values()) == 1
