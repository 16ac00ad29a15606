"""The command line: check config verdicts and exit codes, the JSON Schema, and run's refusals."""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.main import default_config_text, main
from agent.config import AgentConfig, parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_check_config_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped example validates with a one-line summary and exit code 0."""
    assert main(["check", "config", str(ROOT / "examples/agent.yaml")]) == 0
    out = capsys.readouterr().out
    assert "SUCCESS: listen 127.0.0.1:9877" in out
    assert "web: process by pidfile '/run/web.pid'; check http (http every 5s)" in out


def test_check_config_lists_every_error_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid file prints FAILED and each positioned error; a valid one in the same call still passes."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: x\nservices: {web: {scrape: {url: http://a, interval: 1s, timeout: 2s}}}\n")
    good = tmp_path / "good.yaml"
    good.write_text("")
    assert main(["check", "config", str(bad), str(good)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:1:9: listen: expected HOST:PORT" in out
    assert "services -> web -> scrape: timeout 2s exceeds interval 1s" in out
    assert f"Checking {good}\n  SUCCESS" in out


def test_check_config_warns_of_a_fleet_budget_without_coordination(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A playbook with ``fleet:`` while coordination is off validates, with a warning naming the setting."""
    config = tmp_path / "fleet.yaml"
    config.write_text(
        "services: {api: {checks: [{name: up, tcp: {address: '127.0.0.1:1'}}], restart: {exec: ['true']}}}\n"
        "playbooks: [{name: heal, when: [{check_failed: {service: api}}], steps: [{restart: {}}], fleet: {group: api}}]\n"
    )
    assert main(["check", "config", str(config)]) == 0
    assert f"WARNING: {config}: playbooks -> 0 -> fleet: ignored, coordination.backend is none" in capsys.readouterr().out
    config.write_text(config.read_text() + "coordination: {backend: redis}\n")
    assert main(["check", "config", str(config)]) == 0
    assert "WARNING" not in capsys.readouterr().out


def test_schema_is_valid_json_describing_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    """`healwatch schema` prints a JSON Schema that forbids unknown keys and documents durations."""
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(AgentConfig.model_fields)
    assert schema["$defs"]["CheckConfig"]["properties"]["interval"]["type"] == "string"


def test_the_built_in_default_config_is_valid() -> None:
    """The packaged default config parses and listens on loopback."""
    config = parse_config(default_config_text(), "default.yaml")
    assert config.listen.startswith("127.0.0.1:") and config.host.enabled


def test_run_with_an_invalid_config_exits_1_without_a_traceback(tmp_path: Path) -> None:
    """`healwatch run -c bad.yaml` logs the positioned error and exits 1."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("interval: soon\n")
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert f"{bad}:1:11: interval: invalid duration 'soon'" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_on_a_busy_port_exits_1_without_a_traceback(tmp_path: Path) -> None:
    """A listen address already in use is reported and the agent exits 1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        config = tmp_path / "a.yaml"
        config.write_text(f"state_path: {tmp_path / 'state.db'}\nhost: {{enabled: false}}\n")
        result = subprocess.run(
            [sys.executable, "-m", "agent.cli", "run", "-c", str(config), "--listen", f"127.0.0.1:{port}"],
            cwd=ROOT, capture_output=True, text=True, timeout=30,
        )
    assert result.returncode == 1
    assert "cannot start" in result.stderr and "Traceback" not in result.stderr


def test_check_config_warns_of_a_rule_files_glob_matching_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rule_files glob that matches no file validates with a warning naming it, and none once a file matches."""
    config = tmp_path / "agent.yaml"
    config.write_text("rule_files: ['my-rules/*.yaml']\n")
    assert main(["check", "config", str(config)]) == 0
    assert f"WARNING: {config}: rule_files: 'my-rules/*.yaml' matches no file yet" in capsys.readouterr().out
    (tmp_path / "my-rules").mkdir()
    (tmp_path / "my-rules" / "a.yaml").write_text("groups: []\n")
    assert main(["check", "config", str(config)]) == 0
    assert "WARNING" not in capsys.readouterr().out


def test_run_on_a_terminal_shows_a_rule_error_with_its_caret_and_no_stop(tmp_path: Path) -> None:
    """On a terminal, `healwatch run` with a broken rule prints the caret under the bad token, warns of an empty
    glob, and logs no "agent stopped" for an agent that never started."""
    (tmp_path / "bad.yaml").write_text("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n")
    config = tmp_path / "agent.yaml"
    config.write_text(f"rule_files: [bad.yaml, 'none/*.yaml']\nstate_path: ':memory:'\nhost: {{enabled: false}}\n")
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "agent.cli", "run", "-c", str(config), "--listen", "127.0.0.1:1"],
            cwd=ROOT, stderr=terminal, env={**os.environ, "NO_COLOR": "1"}, timeout=30,
        )
        os.close(terminal)
        output = b""
        while chunk := _read_or_end(controller):
            output += chunk
    finally:
        os.close(controller)
    lines = output.decode().splitlines()
    assert result.returncode == 1
    assert any("rule_files pattern matches no file yet" in line and "none/*.yaml" in line for line in lines)
    error = next(i for i, line in enumerate(lines) if "invalid rules" in line)
    assert "parse error: unexpected end of input" in lines[error]
    assert lines[error + 1 : error + 3] == ["    up ==", "         ^"]
    assert not any("agent stopped" in line for line in lines)


def _read_or_end(fd: int) -> bytes:
    """What the pseudo-terminal holds; b"" once its other side is closed (Linux reports EIO then)."""
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def test_a_reader_that_stops_reading_ends_the_command_quietly() -> None:
    """`healwatch schema | head -1`: a closed pipe ends the command with SIGPIPE's status and nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before the command writes: every write meets a pipe without a reader
    try:
        result = subprocess.run(
            [sys.executable, "-m", "agent.cli", "schema"], cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE,
            text=True, timeout=30,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")


def test_a_mutating_command_without_the_token_says_which_variable_to_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`heal --dry-run` without $HEALWATCH_TOKEN names the variable before any progress line or request."""
    monkeypatch.delenv("HEALWATCH_TOKEN", raising=False)
    assert main(["heal", "web", "--dry-run", "--url", "http://127.0.0.1:1"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("healwatch: this command needs the agent's API token: set HEALWATCH_TOKEN")
    assert "cannot reach" not in err  # refused before the (unreachable) agent was asked


def test_help_names_the_token_variable(capsys: pytest.CaptureFixture[str]) -> None:
    """`healwatch --help` and a remote command's `--help` say the token comes from $HEALWATCH_TOKEN."""
    for argv in (["--help"], ["heal", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "$HEALWATCH_TOKEN" in " ".join(capsys.readouterr().out.split())


def test_check_without_what_to_check_shows_its_own_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """`healwatch check` alone is a usage error of `check` (exit 2), not the top-level help."""
    with pytest.raises(SystemExit) as exit_info:
        main(["check"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: healwatch check [-h] WHAT") and "required: WHAT" in err


def test_check_config_counts_in_the_singular_and_plural(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One service with one check reads "1 service, 1 check", not "1 services, 1 checks"."""
    config = tmp_path / "one.yaml"
    config.write_text("services: {api: {checks: [{name: up, tcp: {address: '127.0.0.1:1'}}]}}\n")
    assert main(["check", "config", str(config)]) == 0
    assert ", 1 service, 1 check, 0 scrape targets" in capsys.readouterr().out
