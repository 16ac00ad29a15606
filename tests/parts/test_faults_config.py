"""Hostile config, rule and test files: secrets stay hidden, limits give clear errors, reloads fail visibly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.agent import AgentProcess
from harness.processes import wait_for

ROOT = Path(__file__).resolve().parents[2]
SECRET_URL = "http://u:hunter2@127.0.0.1/x?apikey=s3cret"
SECRET_PARTS = ("hunter2", "s3cret")
# A wrong variable in a check's address, and a secret field the YAML layer cannot read.
ENV_IN_WRONG_PLACE = (
    "services:\n  web:\n    checks:\n      - name: up\n        tcp: {address: \"${WEBHOOK_URL}\"}\n"
)
SECRET_FIELD_INVALID = (
    "notify:\n  receivers:\n    - name: hook\n      webhook:\n        url: \"${WEBHOOK_URL}\"\n"
    "        bearer_token: !!int hunter2s3cret\n"
)
# Nine-fold alias expansion per level: 9**9 values from a few hundred bytes.
ALIAS_BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + level)}: &{chr(98 + level)} [{','.join([f'*{chr(97 + level)}'] * 9)}]\n" for level in range(8)
)
GROUP_RULES = "groups:\n  - name: g\n    rules:\n      - record: one\n        expr: vector(1)\n"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``healwatch ARGS`` as a child process; a hang beyond 10 s fails the test."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=10,
        env=dict(os.environ, **(env or {})),
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output and "RecursionError" not in output, output
    for text in expected:
        assert text in output, output


# -- secrets -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_check_config_names_where_a_secret_is_but_never_what_it_is(tmp_path: Path) -> None:
    """An ${ENV} value or a secret field that is invalid is reported by position and key path, never quoted."""
    env_file, secret_file = tmp_path / "env.yaml", tmp_path / "secret.yaml"
    env_file.write_text(ENV_IN_WRONG_PLACE)
    secret_file.write_text(SECRET_FIELD_INVALID)
    result = cli("check", "config", str(env_file), str(secret_file), env={"WEBHOOK_URL": SECRET_URL})
    assert_clean_failure(
        result, f"{env_file}:5:24: services -> web -> checks -> 0 -> tcp -> address:", "${WEBHOOK_URL}",
        f"{secret_file}:6:23:",
    )
    assert not any(part in result.stdout + result.stderr for part in SECRET_PARTS), result.stdout


@pytest.fixture
def agent_dir(tmp_path: Path) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules/g.yaml").write_text(GROUP_RULES)
    return tmp_path


def base_config(workdir: Path) -> str:
    return (
        f"state_path: {workdir / 'state.db'}\nhost: {{enabled: false}}\ndefault_rules: false\n"
        "rule_files: ['rules/*.yaml']\nevaluation: {interval: 200ms}\n"
    )


@pytest.fixture
def agent(agent_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentProcess]:
    monkeypatch.setenv("WEBHOOK_URL", SECRET_URL)  # inherited by the agent process
    config = agent_dir / "agent.yaml"
    config.write_text(base_config(agent_dir))
    process = AgentProcess(config, agent_dir)
    yield process
    process.stop()


def status(agent: AgentProcess) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{agent.url}/api/v1/status", timeout=5).json()["data"]
    return data


def reload_with(agent: AgentProcess, workdir: Path, extra: str) -> dict[str, Any]:
    """Write the config plus ``extra``, SIGHUP, and return the status once the reload has failed."""
    (workdir / "agent.yaml").write_text(base_config(workdir) + extra)
    reloads = sum(1 for line in agent.logs() if line["event"] == "config reload failed; keeping the running config")
    agent.signal(signal.SIGHUP)
    wait_for(lambda: sum(1 for line in agent.logs()
                         if line["event"] == "config reload failed; keeping the running config") > reloads)
    wait_for(lambda: agent.value("healwatch_config_last_reload_successful") == 0)  # /metrics renders once a second
    return status(agent)


@pytest.mark.integration
def test_reload_errors_in_the_log_and_status_never_show_secrets(agent: AgentProcess, agent_dir: Path) -> None:
    """After SIGHUP with a misplaced ${WEBHOOK_URL} or a bad secret field, neither log nor status quotes them."""
    env_status = reload_with(agent, agent_dir, ENV_IN_WRONG_PLACE)
    assert any("services -> web -> checks -> 0 -> tcp -> address" in e for e in env_status["config"]["errors"])
    secret_status = reload_with(agent, agent_dir, SECRET_FIELD_INVALID)
    assert secret_status["config"]["errors"]
    shown = str(env_status) + str(secret_status) + agent.log_path.read_text()
    assert not any(part in shown for part in SECRET_PARTS)


# -- bounded YAML --------------------------------------------------------------------------------


@pytest.mark.integration
def test_check_config_refuses_deep_nesting_and_alias_bombs_with_positions(tmp_path: Path) -> None:
    """500-deep nesting and a 9**9 alias bomb end at once with a positioned error, not a crash or a hang."""
    deep, bomb = tmp_path / "deep.yaml", tmp_path / "bomb.yaml"
    deep.write_text("evaluation: {external_labels: " + "[" * 500 + "]" * 500 + "}\n")
    bomb.write_text("services: {}\nx-anchors:\n" + "".join(f"  {line}\n" for line in ALIAS_BOMB.splitlines())
                    + "x-use: *i\n")
    result = cli("check", "config", str(deep), str(bomb))
    assert_clean_failure(result, f"{deep}:1:", "nested more than", f"{bomb}:", "aliases expand to more than")


@pytest.mark.integration
def test_sighup_with_a_deep_or_exploding_config_fails_the_reload_and_keeps_serving(
    agent: AgentProcess, agent_dir: Path
) -> None:
    """A deep YAML or an alias bomb makes the reload fail in the metric and status; the agent keeps answering."""
    deep = reload_with(agent, agent_dir, "x: " + "[" * 2000 + "]" * 2000 + "\n")
    assert any("nested more than" in error for error in deep["config"]["errors"])
    started = time.monotonic()
    bomb = reload_with(agent, agent_dir, ALIAS_BOMB + "j: *i\n")
    assert any("aliases expand to more than" in error for error in bomb["config"]["errors"])
    assert time.monotonic() - started < 8  # the unbounded expansion took minutes here
    assert "Exception in callback" not in agent.log_path.read_text()
    assert agent.value('healwatch_rule_group_rules{rule_group="' + str(agent_dir / "rules/g.yaml") + ';g"}') == 1


# -- rule reloads ---------------------------------------------------------------------------------


def rules_reload_failed(agent: AgentProcess) -> bool:
    return agent.value("healwatch_rules_last_reload_successful") == 0


@pytest.mark.integration
def test_a_rule_edit_too_deep_to_parse_fails_the_reload_visibly(agent: AgentProcess, agent_dir: Path) -> None:
    """A 1,000-term expression in an edited rule file sets the reload metric to 0 and shows the error in status."""
    chain = "+".join(["vector(1)"] * 1000)
    (agent_dir / "rules/g.yaml").write_text(GROUP_RULES.replace("vector(1)", chain))
    wait_for(lambda: rules_reload_failed(agent), timeout_s=15)
    errors = status(agent)["rules"]["errors"]
    assert any(f"{agent_dir / 'rules/g.yaml'}:5:" in error and "nested more than" in error for error in errors)


@pytest.mark.integration
def test_a_truncated_rule_file_keeps_its_rules_until_groups_is_emptied_explicitly(
    agent: AgentProcess, agent_dir: Path
) -> None:
    """An emptied rule file fails the reload and keeps its group; ``groups: []`` then removes it for real."""
    rules = agent_dir / "rules/g.yaml"
    group = 'healwatch_rule_group_rules{rule_group="' + str(rules) + ';g"}'
    wait_for(lambda: agent.value("one") == 1)
    rules.write_text("\n  \n")
    wait_for(lambda: rules_reload_failed(agent), timeout_s=15)
    assert any("groups: []" in error for error in status(agent)["rules"]["errors"])
    assert agent.value(group) == 1
    rules.write_text("groups: []\n")
    wait_for(lambda: agent.value("healwatch_rules_last_reload_successful") == 1, timeout_s=15)
    wait_for(lambda: agent.value(group) is None)
    assert status(agent)["rules"]["errors"] == []


# -- CLI limits -------------------------------------------------------------------------------------


def rule_file(tmp_path: Path, name: str, expr: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"groups:\n  - name: g\n    rules:\n      - record: r\n        expr: '{expr}'\n")
    return path


@pytest.mark.integration
def test_check_rules_refuses_expressions_nested_too_deeply(tmp_path: Path) -> None:
    """200 nested calls, a 1,000-term sum and 2,000 unary minuses are positioned errors, not RecursionErrors."""
    files = [
        rule_file(tmp_path, "calls", "abs(" * 200 + "1" + ")" * 200),
        rule_file(tmp_path, "chain", "+".join(["up"] * 1000)),
        rule_file(tmp_path, "unary", "-" * 2000 + "1"),
    ]
    result = cli("check", "rules", *map(str, files))
    assert_clean_failure(result, *(f"{file}:5:" for file in files))
    assert (result.stdout).count("nested more than 100 levels") == 3


@pytest.mark.integration
def test_test_rules_refuses_huge_series_and_endless_evaluation(tmp_path: Path) -> None:
    """Values expanding past the per-series cap and eval steps past the cap are clear errors within the timeout."""
    (tmp_path / "r.yaml").write_text(GROUP_RULES)
    values = tmp_path / "values.yaml"
    values.write_text(
        f"rule_files: [{tmp_path / 'r.yaml'}]\ntests:\n  - input_series:\n"
        "      - {series: 'up', values: '0+1x100000000'}\n"
    )
    steps = tmp_path / "steps.yaml"
    steps.write_text(
        f"rule_files: [{tmp_path / 'r.yaml'}]\nevaluation_interval: 1ms\ntests:\n"
        "  - promql_expr_test: [{expr: one, eval_time: 10000000000d}]\n"
    )
    result = cli("test", "rules", str(values), str(steps))
    assert_clean_failure(
        result, f"{values}:4:", "past the limit of 100000 values", f"{steps}:4:", "more than 100000 evaluation steps"
    )
