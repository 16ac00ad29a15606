"""Config loading: defaults, durations, env substitution and positioned, friendly errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import DEFAULT_LISTEN, load_config, parse_config
from rules.errors import SourceError
from rules.yamlfile import load_yaml


def errors_of(text: str) -> list[str]:
    with pytest.raises(SourceError) as info:
        parse_config(text, "agent.yaml")
    return [str(issue) for issue in info.value.issues]


def test_empty_file_gives_the_defaults() -> None:
    """An empty config watches the host on the default loopback address."""
    config = parse_config("", "agent.yaml")
    assert config.listen == DEFAULT_LISTEN
    assert config.listen.startswith("127.0.0.1:")
    assert config.host.enabled and config.host.interval == 15.0
    assert config.store.retention == 600.0
    assert config.services == {}


def test_the_issue_example_config_is_valid() -> None:
    """The config shape from the foundation issue loads with durations in seconds."""
    config = parse_config(
        """
listen: "127.0.0.1:9900"
state_path: ./healwatch.db
rule_files: ["rules/*.yaml"]
services:
  web:
    process: {pidfile: /run/web.pid}
    checks:
      - name: http
        http: {url: "http://127.0.0.1:8080/health", expect_status: [200]}
        interval: 5s
        timeout: 2s
        failure_threshold: 3
    scrape: {url: "http://127.0.0.1:8080/metrics", interval: 15s}
""",
        "agent.yaml",
    )
    web = config.services["web"]
    assert web.process is not None and web.process.pidfile == "/run/web.pid"
    assert web.checks[0].kind == "http"
    assert (web.checks[0].interval, web.checks[0].timeout) == (5.0, 2.0)
    assert web.scrape is not None and web.scrape.interval == 15.0


def test_malformed_yaml_names_line_and_column() -> None:
    """A YAML syntax error is one issue with file, line and column."""
    (issue,) = errors_of("services:\n  web: {process: [\n")
    assert issue.startswith("agent.yaml:3:1: YAML syntax error")


def test_unknown_key_suggests_the_close_name() -> None:
    """A misspelt key is rejected at the key's position with a did-you-mean hint."""
    (issue,) = errors_of(
        "services:\n  web:\n    checks:\n      - name: a\n        tcp: {address: '127.0.0.1:1'}\n        timout: 2s\n"
    )
    assert issue == (
        "agent.yaml:6:9: services -> web -> checks -> 0 -> timout: unknown key 'timout' (did you mean 'timeout'?)"
    )


def test_unknown_key_without_close_match_lists_the_choices() -> None:
    """With no close match the error lists what is allowed there."""
    (issue,) = errors_of("store: {colour: blue}\n")
    assert "unknown key 'colour'" in issue and "expected one of: retention, max_series" in issue


def test_every_error_is_reported_at_once() -> None:
    """Wrong types, negative durations and bad values are all listed, each at its own position."""
    issues = errors_of(
        """listen: nowhere
interval: -5s
services:
  web:
    process: {pidfile: /run/a.pid, name: web}
    checks:
      - name: h
        http: {url: "ftp://x"}
        failure_threshold: zero
"""
    )
    assert issues == [
        "agent.yaml:1:9: listen: expected HOST:PORT such as 127.0.0.1:9877, got 'nowhere'",
        "agent.yaml:2:11: interval: duration '-5s' is negative; expected a positive duration",
        "agent.yaml:5:14: services -> web -> process: expected exactly one of pidfile, name or cmdline",
        "agent.yaml:8:21: services -> web -> checks -> 0 -> http -> url: expected an http:// or https:// URL, got 'ftp://x'",
        "agent.yaml:9:28: services -> web -> checks -> 0 -> failure_threshold: "
        "Input should be a valid integer, unable to parse string as an integer",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", "expected a duration string such as 15s or 500ms, got 5"),
        ("5x", "invalid duration '5x'"),
        ("0s", "must be greater than 0s"),
        ("s", "invalid duration 's'"),
    ],
)
def test_bad_durations_are_explained(value: str, expected: str) -> None:
    """Durations need a unit and, where they are periods, must be positive."""
    (issue,) = errors_of(f"interval: {value}\n")
    assert expected in issue


def test_a_check_needs_exactly_one_probe() -> None:
    """A check with two probes, or none, is rejected."""
    (issue,) = errors_of("services:\n  a:\n    checks:\n      - {name: x, tcp: {address: 'h:1'}, exec: {command: ['true']}}\n")
    assert "expected exactly one probe: http, tcp, exec, process, dns, icmp or grpc" in issue


def test_a_process_check_needs_a_process_match() -> None:
    """A process check on a service with no process section is an error."""
    (issue,) = errors_of("services:\n  a:\n    checks:\n      - {name: alive, process: {}}\n")
    assert "a process check needs the service's process" in issue


def test_an_invalid_regex_is_an_error() -> None:
    """A body regex that does not compile is reported with the regex error."""
    (issue,) = errors_of("services:\n  a:\n    checks:\n      - {name: h, http: {url: 'http://x', body_regex: '(('}}\n")
    assert "invalid regular expression '(('" in issue


def test_environment_variables_are_substituted(monkeypatch: pytest.MonkeyPatch) -> None:
    """${NAME} takes the environment's value and $$ stays a literal dollar."""
    monkeypatch.setenv("HW_TOKEN", "s3cret")
    config = parse_config(
        "services:\n  a:\n    checks:\n      - name: h\n        http:\n          url: http://x/\n"
        "          headers: {Authorization: 'Bearer ${HW_TOKEN}', X-Cost: '$$5'}\n",
        "agent.yaml",
    )
    http = config.services["a"].checks[0].http
    assert http is not None and http.headers == {"Authorization": "Bearer s3cret", "X-Cost": "$5"}


def test_an_unset_environment_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reference to an unset variable names the variable and where it is used."""
    monkeypatch.delenv("HW_MISSING", raising=False)
    (issue,) = errors_of("state_path: ${HW_MISSING}/db\n")
    assert issue == "agent.yaml:1:13: environment variable HW_MISSING is not set"


def test_duplicate_keys_are_errors() -> None:
    """YAML would silently keep the last of two equal keys; the config refuses them."""
    (issue,) = errors_of("interval: 5s\ninterval: 10s\n")
    assert issue == "agent.yaml:2:1: duplicate key 'interval'"


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """Loading a file that does not exist gives one readable issue."""
    with pytest.raises(SourceError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "cannot read config: No such file or directory" in str(info.value)


def test_a_missing_rule_file_is_positioned_among_the_other_errors(tmp_path: Path) -> None:
    """A rule_files entry naming no file is an error at its own line, reported with the rest of the file's errors."""
    (tmp_path / "here.yaml").write_text("groups: []\n")
    config = tmp_path / "agent.yaml"
    config.write_text("interval: soon\nrule_files:\n  - here.yaml\n  - gone.yaml\n  - 'later/*.yaml'\n")
    with pytest.raises(SourceError) as info:
        load_config(config)
    assert [str(issue) for issue in info.value.issues] == [
        f"{config}:1:11: interval: invalid duration 'soon': expected a number with a unit (ms, s, m, h, d, w, y), "
        "e.g. 500ms, 15s, 1h30m",
        f"{config}:4:5: rule_files -> 1: rule file '{tmp_path / 'gone.yaml'}' does not exist",
    ]


def test_top_level_must_be_a_mapping() -> None:
    """A list at the top level is rejected."""
    (issue,) = errors_of("- a\n- b\n")
    assert "expected a mapping of settings at the top level" in issue


EXAMPLE = (Path(__file__).parents[2] / "examples/agent.yaml").read_text()


def test_the_example_config_shows_every_part() -> None:
    """examples/agent.yaml, which the README calls complete, watches, restarts, heals by a playbook and notifies."""
    config = parse_config(EXAMPLE, "examples/agent.yaml")
    web = config.services["web"]
    assert web.process and web.checks and web.scrape and web.restart and web.traffic
    assert [playbook.target for playbook in config.playbooks] == ["web"]
    assert config.notify.receivers


@settings(max_examples=300, deadline=None, database=None)
@given(st.integers(0, len(EXAMPLE) - 1), st.integers(1, 40), st.text(max_size=5))
def test_mangled_configs_give_only_config_errors(start: int, length: int, insert: str) -> None:
    """The example config with a slice replaced by junk is either valid or a SourceError, never a crash."""
    try:
        parse_config(EXAMPLE[:start] + insert + EXAMPLE[start + length:], "agent.yaml")
    except SourceError:
        pass


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("interval: !foo x\n", "1:11: invalid value: could not determine a constructor for the tag '!foo'"),
        ("interval: !!int x\n", "1:11: invalid value for tag tag:yaml.org,2002:int: cannot decode '<value>' "
                                 "as an integer"),
        ("state_path: !!timestamp 2001-02-30\n",
         "1:13: invalid value for tag tag:yaml.org,2002:timestamp: day is out of range"),
    ],
)
def test_values_yaml_cannot_build_are_positioned_errors(text: str, message: str) -> None:
    """Tags and literals PyYAML refuses to construct are reported, not raised, without quoting the value."""
    (issue,) = errors_of(text)
    assert issue.startswith(f"agent.yaml:{message}")


def test_an_environment_value_is_shown_as_its_reference_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value substituted from ${NAME} appears in an error as the reference written in the file."""
    monkeypatch.setenv("LISTEN", "token-abc:def")
    (issue,) = errors_of('listen: "http://${LISTEN}"\n')
    assert "got 'http://${LISTEN}'" in issue and "token-abc" not in issue


def test_nesting_and_aliases_are_bounded_with_positions() -> None:
    """100 levels parse; one more, an anchor inside itself, or an alias bomb is a positioned error."""
    assert load_yaml("[" * 100 + "]" * 100, "a.yaml")[0] is not None
    assert errors_of("x: " + "[" * 100 + "]" * 100 + "\n") == [
        "agent.yaml:1:103: YAML refused: values nested more than 100 levels deep"]
    assert errors_of("x: &a [*a]\n") == ["agent.yaml:1:4: YAML refused: values nested more than 100 levels deep"]
    bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{b}: &{b} [{','.join([f'*{a}'] * 10)}]\n" for a, b in zip("abcde", "bcdef"))
    (issue,) = errors_of(bomb)
    assert issue.endswith("YAML refused: aliases expand to more than 50000 values")


def test_a_scrape_timeout_defaults_to_the_interval_when_shorter() -> None:
    """`scrape: {interval: 5s}` validates with a 5s timeout, as Prometheus takes min(10s, interval)."""
    services = parse_config(
        "services:\n  fast: {scrape: {url: 'http://127.0.0.1:1/metrics', interval: 5s}}\n"
        "  slow: {scrape: {url: 'http://127.0.0.1:1/metrics', interval: 1m}}\n"
        "  given: {scrape: {url: 'http://127.0.0.1:1/metrics', interval: 1m, timeout: 30s}}\n",
        "agent.yaml",
    ).services
    assert [s.scrape.timeout_s for s in services.values() if s.scrape] == [5.0, 10.0, 30.0]


def test_zero_means_none_for_cooldown_and_backoff() -> None:
    """`cooldown: 0s` and `backoff: {initial: 0s, max: 0s}` are accepted: a playbook that may rerun at once."""
    (playbook,) = parse_config(
        "services: {api: {restart: {exec: ['true']}}}\n"
        "playbooks: [{name: heal, service: api, steps: [{restart: {}}], cooldown: 0s,"
        " backoff: {initial: 0s, max: 0s}}]\n",
        "agent.yaml",
    ).playbooks
    spec = playbook.spec(global_dry_run=False)
    assert (spec.cooldown_s, spec.backoff.delay_s(3)) == (0.0, 0.0)


def test_string_fields_take_the_text_written_as_go_reads_it() -> None:
    """A string field given yes, 1.10, 0x1F or 1e3 holds that text (YAML 1.1 made them true, 1.1, 31, 1000)."""
    config = parse_config(
        "state_path: 1.10\nevaluation:\n  external_labels: {page: yes, team: on, code: 0x1F, big: 1e3}\n"
        "services:\n  1.10:\n    process: {name: 0o17}\n",
        "agent.yaml",
    )
    assert config.state_path == "1.10"
    assert config.evaluation.external_labels == {"page": "yes", "team": "on", "code": "0x1F", "big": "1e3"}
    assert list(config.services) == ["1.10"]
    assert config.services["1.10"].process is not None and config.services["1.10"].process.name == "0o17"


def test_integer_fields_take_go_integers() -> None:
    """An integer field reads 0x1F as 31 and 1_000 as 1000, as yaml.v3 does."""
    config = parse_config("api:\n  max_body_bytes: 0x1F\n  query_max_concurrency: 1_000\n", "agent.yaml")
    assert (config.api.max_body_bytes, config.api.query_max_concurrency) == (31, 1000)


@pytest.mark.parametrize("written", ["yes", "on", "1", "y", "no", "'yes'"])
def test_boolean_fields_take_only_true_or_false(written: str) -> None:
    """yes, on, 1 or no in a boolean field is an error naming it (YAML 1.2 and Go), not a silent true or false."""
    assert errors_of(f"host:\n  enabled: {written}\n") == [
        f"agent.yaml:2:12: host -> enabled: expected true or false, got {written.strip(chr(39))!r}"]


def test_boolean_fields_take_true_and_false_in_go_spellings_and_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """True, FALSE and a ${VAR} holding false are booleans, as Go's YAML (and a templated config) means them."""
    assert parse_config("host:\n  enabled: FALSE\n", "agent.yaml").host.enabled is False
    assert parse_config("default_rules: True\n", "agent.yaml").default_rules is True
    monkeypatch.setenv("HW_TEST_FLAG", "false")
    assert parse_config("host:\n  enabled: ${HW_TEST_FLAG}\n", "agent.yaml").host.enabled is False
