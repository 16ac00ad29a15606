"""deploy/systemd/healwatch.service: systemd's own checker passes it, and it asks for what the agent
does (Type=notify, a watchdog it feeds, hardening that still lets it heal).

systemd cannot run as PID 1 on this machine, so the unit is checked with `systemd-analyze verify`
and `systemd-analyze security --offline`, and the protocol it relies on is exercised against real
sockets in tests/parts/test_sdnotify.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.sdnotify import SystemdNotifier
from harness.processes import require_binary

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "healwatch.service"
INSTALLED_PROGRAM = "/opt/healwatch/bin/healwatch"  # where deploy/README.md installs it


def _unit_settings(text: str) -> dict[str, list[str]]:
    """Key -> values of a unit file (a key may repeat), sections merged; comments dropped."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key, []).append(value)
    return settings


def _verify(unit_text: str, tmp_path: Path) -> str:
    """`systemd-analyze verify` of the unit, with ExecStart pointing at this checkout's healwatch."""
    program = shutil.which("healwatch", path=str(Path(sys.executable).parent))
    assert program is not None, "healwatch is not installed beside this Python"
    unit = tmp_path / "healwatch.service"
    unit.write_text(unit_text.replace(INSTALLED_PROGRAM, program))
    result = subprocess.run([require_binary("systemd-analyze"), "verify", str(unit)],
                            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    return (result.stdout + result.stderr).strip() + ("" if result.returncode == 0 else f"\nexit {result.returncode}")


@pytest.mark.integration
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own checker finds nothing to say about the unit: every key known, every value parsed."""
    assert _verify(UNIT.read_text(), tmp_path) == ""


@pytest.mark.integration
def test_verify_would_catch_a_misspelt_key(tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelt key in the same unit is reported."""
    output = _verify(UNIT.read_text().replace("WatchdogSec=", "WatchdogSecs="), tmp_path)
    assert "Unknown key 'WatchdogSecs'" in output


@pytest.mark.integration
def test_unit_exposure_is_rated_ok_by_systemd() -> None:
    """`systemd-analyze security` rates the unit's exposure at most 3.0 of 10 ("OK")."""
    result = subprocess.run(
        [require_binary("systemd-analyze"), "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    last = result.stdout.strip().splitlines()[-1]
    exposure = float(last.split(":")[1].split()[0])
    assert exposure <= 3.0, last


def test_unit_is_a_notify_service_with_a_watchdog_it_feeds() -> None:
    """Type=notify with a watchdog whose half-interval pings come from the agent, restarted on failure."""
    settings = _unit_settings(UNIT.read_text())
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    assert settings["Restart"] == ["on-failure"]  # a watchdog timeout counts as a failure
    (watchdog,) = settings["WatchdogSec"]
    assert watchdog.endswith("s")
    watchdog_usec = int(watchdog.removesuffix("s")) * 1_000_000
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": str(watchdog_usec)})
    assert notifier.watchdog_interval_s == watchdog_usec / 2_000_000
    assert settings["ExecStart"] == [f"{INSTALLED_PROGRAM} run -c /etc/healwatch/agent.yaml"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_unit_is_hardened_but_can_still_heal() -> None:
    """A dynamic user, a read-only system but the state directory, and only the capabilities healing uses."""
    settings = _unit_settings(UNIT.read_text())
    for key, value in {
        "DynamicUser": "yes", "StateDirectory": "healwatch", "WorkingDirectory": "/var/lib/healwatch",
        "ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
    }.items():
        assert settings[key] == [value], key
    assert set(settings["CapabilityBoundingSet"][0].split()) == {"CAP_KILL", "CAP_SYS_PTRACE"}
    assert settings["AmbientCapabilities"] == settings["CapabilityBoundingSet"]
    assert "ProtectProc" not in settings  # hiding other processes would blind the agent
    assert (ROOT / "deploy" / "systemd" / "healwatch-restart.rules").exists()
