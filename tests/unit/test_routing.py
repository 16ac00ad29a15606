"""The routing tree and matcher strings, checked against Alertmanager's own route tests (dispatch/route_test.go)."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from agent.config import NotifyConfig, parse_config
from exporters.dispatcher import group_key
from exporters.matchers import format_matchers, parse_matcher, parse_matchers, sort_matchers
from exporters.routing import Route, RouteOptions, RouteSpec, build_route
from rules.errors import SourceError
from rules.matchers import MatchOp

# Alertmanager's TestRouteMatchers tree, with receivers declared so the config validates.
TREE = """
receivers: [{name: notify-def}, {name: notify-A}, {name: notify-testing},
            {name: notify-productionA}, {name: notify-productionB}, {name: notify-BC}]
route:
  receiver: notify-def
  routes:
  - matchers: ['{owner="team-A"}', '{level!="critical"}']
    receiver: notify-A
    routes:
    - matchers: ['{env="testing"}', '{baz!~".*quux"}']
      receiver: notify-testing
      group_by: [...]
    - matchers: ['{env="production"}']
      receiver: notify-productionA
      group_wait: 1m
      continue: true
    - matchers: [env=~"produ.*", job=~".*"]
      receiver: notify-productionB
      group_wait: 30s
      group_interval: 5m
      repeat_interval: 1h
      group_by: ['job']
  - matchers: [owner=~"team-(B|C)"]
    group_by: ['foo', 'bar']
    group_wait: 2m
    receiver: notify-BC
  - matchers: [group_by="role"]
    group_by: ['role']
    routes:
    - matchers: ['{env="testing"}']
      receiver: notify-testing
      routes:
      - matchers: [wait="long"]
        group_wait: 2m
"""


def _tree() -> Route:
    route = NotifyConfig.model_validate(yaml.safe_load(TREE)).build_route()
    assert route is not None
    return route


def _opts(receiver: str, group_by: tuple[str, ...] = (), **changes: object) -> RouteOptions:
    return RouteOptions(receiver=receiver, group_by=frozenset(group_by), **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"owner": "team-A"}, [(_opts("notify-A"), '{}/{level!="critical",owner="team-A"}')]),
        ({"owner": "team-A", "env": "unset"}, [(_opts("notify-A"), '{}/{level!="critical",owner="team-A"}')]),
        (
            {"owner": "team-C"},
            [(_opts("notify-BC", ("foo", "bar"), group_wait_s=120.0), '{}/{owner=~"team-(B|C)"}')],
        ),
        (
            {"owner": "team-A", "env": "testing"},
            [
                (
                    _opts("notify-testing", group_by_all=True),
                    '{}/{level!="critical",owner="team-A"}/{baz!~".*quux",env="testing"}',
                )
            ],
        ),
        (
            {"owner": "team-A", "env": "production"},
            [
                (
                    _opts("notify-productionA", group_wait_s=60.0),
                    '{}/{level!="critical",owner="team-A"}/{env="production"}',
                ),
                (
                    _opts("notify-productionB", ("job",), repeat_interval_s=3600.0),
                    '{}/{level!="critical",owner="team-A"}/{env=~"produ.*",job=~".*"}',
                ),
            ],
        ),
        ({"group_by": "role"}, [(_opts("notify-def", ("role",)), '{}/{group_by="role"}')]),
        (
            {"env": "testing", "group_by": "role"},
            [(_opts("notify-testing", ("role",)), '{}/{group_by="role"}/{env="testing"}')],
        ),
        (
            {"env": "testing", "group_by": "role", "wait": "long"},
            [
                (
                    _opts("notify-testing", ("role",), group_wait_s=120.0),
                    '{}/{group_by="role"}/{env="testing"}/{wait="long"}',
                )
            ],
        ),
    ],
)
def test_route_match_like_alertmanager(labels: dict[str, str], expected: list[tuple[RouteOptions, str]]) -> None:
    """Each label set reaches the same routes, with the same inherited options and keys, as in route_test.go."""
    matched = _tree().match(labels)
    assert [(r.options, r.key()) for r in matched] == expected


def test_route_walk_visits_depth_first() -> None:
    """Walking the tree lists receivers in Alertmanager's TestRouteWalk order."""
    assert [r.options.receiver for r in _tree().walk()] == [
        "notify-def", "notify-A", "notify-testing", "notify-productionA", "notify-productionB",
        "notify-BC", "notify-def", "notify-testing", "notify-testing",
    ]


def test_children_inherit_group_by_all_until_they_set_group_by() -> None:
    """A child inherits '...' from its parent, and its own group_by replaces it (TestInheritParentGroupByAll)."""
    parent = RouteSpec(
        matchers=(parse_matcher('env="parent"'),),
        group_by=("...",),
        routes=(RouteSpec(matchers=(parse_matcher("env=child1"),)),
                RouteSpec(matchers=(parse_matcher("env=child2"),), group_by=("foo",))),
    )
    root = build_route(RouteSpec(receiver="default", routes=(parent,)))
    route = root.routes[0]
    assert route.options.group_by_all and route.routes[0].options.group_by_all
    assert not route.routes[1].options.group_by_all
    assert route.routes[1].options.group_by == frozenset({"foo"})


def test_group_labels_and_group_key_format() -> None:
    """Group labels are the group_by labels the alert has; the groupKey is Alertmanager's '{route}:{labels}'."""
    root = build_route(RouteSpec(receiver="r", group_by=("alertname", "service", "missing")))
    labels = {"alertname": "DiskFull", "service": "api", "instance": "a"}
    grouped = root.group_labels(labels)
    assert grouped == {"alertname": "DiskFull", "service": "api"}
    assert group_key(root, grouped) == '{}:{alertname="DiskFull", service="api"}'
    assert group_key(root, {"a": 'q"uo\\te\n'}) == '{}:{a="q\\"uo\\\\te\\n"}'


def test_continue_sends_to_every_matching_sibling() -> None:
    """Without continue the first matching child wins; with it, later siblings are tried too."""
    spec = RouteSpec(
        receiver="default",
        routes=(
            RouteSpec(receiver="pager", matchers=(parse_matcher('severity="critical"'),), continue_=True),
            RouteSpec(receiver="slack", matchers=(parse_matcher("team=~ops|db"),)),
            RouteSpec(receiver="never", matchers=(parse_matcher("team=ops"),)),
        ),
    )
    root = build_route(spec)
    assert [r.options.receiver for r in root.match({"severity": "critical", "team": "ops"})] == ["pager", "slack"]
    assert [r.options.receiver for r in root.match({"severity": "critical"})] == ["pager"]
    assert [r.options.receiver for r in root.match({"team": "ops"})] == ["slack"]
    assert [r.options.receiver for r in root.match({"team": "web"})] == ["default"]


def test_repeat_interval_is_rounded_up_to_the_group_interval() -> None:
    """Groups flush only every group_interval, so a repeat falls on the first beat after repeat_interval."""
    assert _opts("r", group_interval_s=300.0, repeat_interval_s=3600.0).effective_repeat_s == 3600.0
    assert _opts("r", group_interval_s=420.0, repeat_interval_s=3600.0).effective_repeat_s == 9 * 420.0


@pytest.mark.parametrize(
    ("text", "name", "op", "value"),
    [
        ('severity="critical"', "severity", MatchOp.EQ, "critical"),
        ('alertname=~"Disk.*"', "alertname", MatchOp.RE, "Disk.*"),
        ('team!="x"', "team", MatchOp.NE, "x"),
        ('a!~"b"', "a", MatchOp.NRE, "b"),
        ("env=prod", "env", MatchOp.EQ, "prod"),
        ("  env  =~  prod|dev  ", "env", MatchOp.RE, "prod|dev"),
        ('msg="say \\"hi\\"\\n"', "msg", MatchOp.EQ, 'say "hi"\n'),
        ('path="C:\\d"', "path", MatchOp.EQ, "C:\\d"),
        ('empty=""', "empty", MatchOp.EQ, ""),
    ],
)
def test_parse_matcher(text: str, name: str, op: MatchOp, value: str) -> None:
    """Quoted and bare values, escapes and spurious backslashes are read as Alertmanager's parser reads them."""
    matcher = parse_matcher(text)
    assert (matcher.name, matcher.op, matcher.value) == (name, op, value)
    assert parse_matcher(str(matcher)) == matcher


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("severity", "bad matcher format"),
        ('1abc="x"', "bad matcher format"),
        ('a="b', "closing double quote"),
        ('a="b"c"', "unescaped double quote"),
        ('a=~"(unclosed"', "invalid regular expression"),
    ],
)
def test_parse_matcher_errors(text: str, message: str) -> None:
    """Malformed matchers raise a ValueError that says what is wrong."""
    with pytest.raises(ValueError, match=message):
        parse_matcher(text)


def test_parse_matchers_list_and_sorting() -> None:
    """A braced list splits at commas outside quotes; route keys sort by name, value, then operator."""
    matchers = parse_matchers('{b="x,y", a!~"1", a=~"1", a="0"}')
    assert [str(m) for m in matchers] == ['b="x,y"', 'a!~"1"', 'a=~"1"', 'a="0"']
    assert format_matchers(sort_matchers(matchers)) == '{a="0",a=~"1",a!~"1",b="x,y"}'


def test_regex_matchers_are_anchored() -> None:
    """'Disk.*' matches DiskFull but not HighDiskFull, as Alertmanager anchors regexes."""
    matcher = parse_matcher('alertname=~"Disk.*"')
    assert matcher.matches("DiskFull") and not matcher.matches("HighDiskFull")


@pytest.mark.parametrize(
    ("notify", "message"),
    [
        ("route: {receiver: ghost}\nreceivers: [{name: a}]", "receiver 'ghost' is not defined"),
        ("route: {receiver: a, routes: [{receiver: b}]}\nreceivers: [{name: a}]",
         "route -> routes -> 0: receiver 'b' is not defined"),
        ("route: {routes: []}\nreceivers: [{name: a}]", "root route needs a receiver"),
        ("route: {receiver: a, matchers: ['x=\"y\"']}\nreceivers: [{name: a}]", "must not have matchers"),
        ("route: {receiver: a, group_by: ['...', 'job']}\nreceivers: [{name: a}]", "'...' and other labels"),
        ("route: {receiver: a, group_by: ['a-b']}\nreceivers: [{name: a}]", "not a label name"),
        ("route: {receiver: a, matchers: ['x']}\nreceivers: [{name: a}]", "bad matcher format"),
        ("route: {receiver: a, group_interval: 0s}\nreceivers: [{name: a}]", "greater than 0s"),
        ("receivers: [{name: a}, {name: a}]\nroute: {receiver: a}", "duplicate receiver names: a"),
        ("inhibit_rules: [{source_matchers: ['a=~\"(\"'], target_matchers: ['b=c']}]", "invalid regular expression"),
    ],
)
def test_notify_config_errors(notify: str, message: str) -> None:
    """Config mistakes are reported with their place in the notify section, not as tracebacks."""
    indented = "\n".join("  " + line for line in notify.splitlines())
    with pytest.raises(SourceError) as raised:
        parse_config("notify:\n" + indented + "\n", "healwatch.yaml")
    assert message in str(raised.value)


def test_notify_config_defaults_to_nothing_routed() -> None:
    """Without a notify section there is no routing tree and no inhibition rule."""
    config = parse_config("listen: 127.0.0.1:9877\n", "healwatch.yaml")
    assert config.notify.build_route() is None
    assert config.notify.build_inhibitor().rules == ()
    with pytest.raises(ValidationError):
        NotifyConfig.model_validate({"route": {"receiver": "a", "continue": True}, "receivers": [{"name": "a"}]})
