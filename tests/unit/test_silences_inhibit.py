"""Silences (validation, states, SQLite persistence) and inhibition rules, with Alertmanager's semantics."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.state import StateDB
from exporters.inhibit import Inhibitor, InhibitRule
from exporters.matchers import parse_matcher, parse_matcher_list
from exporters.notification import AlertPayload
from exporters.silences import MIGRATIONS, Silence, Silences, load_silences, new_silence

T0 = 1_700_000_000.0


def test_silence_states_follow_the_clock() -> None:
    """A silence is pending before its start, active until its end, expired from its end on."""
    silence = new_silence(['service="api"'], T0 + 10, T0 + 20)
    assert [silence.state(T0 + t) for t in (0, 10, 19.9, 20, 30)] == [
        "pending", "active", "active", "expired", "expired"
    ]


def test_silence_matches_all_of_its_matchers() -> None:
    """Every matcher must accept the alert's labels; a missing label counts as empty."""
    silence = new_silence(['service="api"', 'instance=~"db-.*"', 'env!="prod"'], T0, T0 + 60)
    assert silence.matches({"service": "api", "instance": "db-1"})
    assert not silence.matches({"service": "api", "instance": "db-1", "env": "prod"})
    assert not silence.matches({"service": "api", "instance": "web-1"})


@pytest.mark.parametrize(
    ("matchers", "starts", "ends", "message"),
    [
        ([], 0, 60, "at least one matcher"),
        (['a="b"'], 60, 0, "end time must not be before its start time"),
        (['a=~"(oops"'], 0, 60, "invalid regular expression"),
        (['a=~".*"'], 0, 60, "matches everything"),
        (['a=""', 'b=~".*"'], 0, 60, "at least one matcher must not match the empty string"),
        (["a"], 0, 60, "bad matcher format"),
    ],
)
def test_invalid_silences_are_refused(matchers: list[str], starts: float, ends: float, message: str) -> None:
    """No matchers, end before start, a bad regex or a silence muting every alert give a clear ValueError."""
    with pytest.raises(ValueError, match=message):
        new_silence(matchers, T0 + starts, T0 + ends)


def test_negative_matchers_alone_are_accepted_as_alertmanager_does() -> None:
    """Alertmanager only counts = and =~ matchers when refusing silences that match the empty string."""
    assert new_silence(['env!="prod"'], T0, T0 + 60).matches({"alertname": "X"})


def test_expire_ends_active_and_pending_silences() -> None:
    """Expiring an active silence ends it now; a pending one ends before ever starting; twice is an error."""
    silences = Silences()
    active = silences.add(new_silence(['a="1"'], T0, T0 + 600), T0)
    pending = silences.add(new_silence(['a="2"'], T0 + 300, T0 + 600), T0)
    assert silences.mutes({"a": "1"}, T0 + 1) == (active.id,)
    assert silences.mutes({"a": "2"}, T0 + 1) == ()
    expired = silences.expire(active.id, T0 + 100)
    assert (expired.starts_at, expired.ends_at) == (T0, T0 + 100)
    assert silences.expire(pending.id, T0 + 100).starts_at == T0 + 100
    assert silences.mutes({"a": "1"}, T0 + 100) == ()
    with pytest.raises(ValueError, match="already expired"):
        silences.expire(active.id, T0 + 200)
    with pytest.raises(ValueError, match="no silence with id 'nope'"):
        silences.expire("nope", T0)
    with pytest.raises(ValueError, match="must be in the future"):
        silences.add(new_silence(['a="3"'], T0 - 60, T0 - 1), T0)


def test_list_filters_by_state() -> None:
    """list() gives active, then pending, then expired silences, or only those of one state."""
    silences = Silences()
    pending = silences.add(new_silence(['a="p"'], T0 + 100, T0 + 200), T0)
    active = silences.add(new_silence(['a="a"'], T0, T0 + 200), T0)
    expired = silences.expire(silences.add(new_silence(['a="e"'], T0, T0 + 200), T0).id, T0 + 1)
    assert [s.id for s in silences.list(T0 + 2)] == [active.id, pending.id, expired.id]
    assert silences.list(T0 + 2, "pending") == [pending]


def test_silences_survive_a_restart_in_sqlite(tmp_path: Path) -> None:
    """Silences added and expired through a state database are all there, unchanged, after reopening it."""
    db = StateDB(str(tmp_path / "state.db"))
    db.migrate("silences", MIGRATIONS)
    silences = Silences.load(db.conn)
    kept = silences.add(
        new_silence(['msg="say \\"hi\\"\\n"', 'instance=~"db-.*"', "env!=prod"], T0, T0 + 3600, "ann", "upgrade"), T0
    )
    ended = silences.expire(silences.add(new_silence(['a="b"'], T0, T0 + 3600), T0).id, T0 + 60)
    db.close()

    reopened = StateDB(str(tmp_path / "state.db"))
    reopened.migrate("silences", MIGRATIONS)
    loaded = {s.id: s for s in load_silences(reopened.conn)}
    assert loaded == {kept.id: kept, ended.id: ended}
    assert Silences.load(reopened.conn).mutes({"msg": 'say "hi"\n', "instance": "db-7"}, T0 + 120) == (kept.id,)
    reopened.close()


def test_garbage_collection_forgets_long_expired_silences(tmp_path: Path) -> None:
    """Silences expired longer than the retention are dropped from memory and from the database."""
    db = StateDB(str(tmp_path / "state.db"))
    db.migrate("silences", MIGRATIONS)
    silences = Silences.load(db.conn)
    old = silences.add(new_silence(['a="old"'], T0, T0 + 60), T0)
    recent = silences.add(new_silence(['a="new"'], T0, T0 + 7200), T0)
    assert silences.collect_garbage(T0 + 3600, retention_s=1800) == 1
    assert [s.id for s in silences.list(T0 + 3600)] == [recent.id]
    assert [s.id for s in load_silences(db.conn)] == [recent.id]
    assert old.id not in {s.id for s in Silences.load(db.conn).list(T0)}
    db.close()


def _rule(source: list[str], target: list[str], equal: tuple[str, ...] = ()) -> InhibitRule:
    return InhibitRule(parse_matcher_list(source), parse_matcher_list(target), equal)


def _alert(ends_at: float | None = None, **labels: str) -> AlertPayload:
    return AlertPayload.of(labels, T0, ends_at)


def test_inhibition_needs_equal_labels_and_a_firing_source() -> None:
    """A firing source mutes targets with the same `equal` labels; a resolved source mutes nothing."""
    inhibitor = Inhibitor([_rule(['alertname="HostDown"'], ['severity="warning"'], ("instance",))])
    source = _alert(alertname="HostDown", instance="a")
    same = {"alertname": "DiskFull", "severity": "warning", "instance": "a"}
    other = {"alertname": "DiskFull", "severity": "warning", "instance": "b"}
    inhibition = inhibitor.at([source], T0)
    assert inhibition.inhibited_by(same) == (source.fingerprint,)
    assert inhibition.inhibited_by(other) == ()
    assert inhibition.inhibited_by({**same, "severity": "critical"}) == ()
    resolved = _alert(T0 + 10, alertname="HostDown", instance="a")
    assert inhibitor.at([resolved], T0 + 10).inhibited_by(same) == ()


def test_missing_equal_label_on_both_sides_counts_as_equal() -> None:
    """Alertmanager compares missing labels as empty strings, so two alerts without `zone` are equal on it."""
    inhibitor = Inhibitor([_rule(['alertname="A"'], ['alertname="B"'], ("zone",))])
    source = _alert(alertname="A")
    assert inhibitor.at([source], T0).inhibited_by({"alertname": "B"}) == (source.fingerprint,)
    assert inhibitor.at([source], T0).inhibited_by({"alertname": "B", "zone": "eu"}) == ()


def test_an_alert_does_not_inhibit_itself() -> None:
    """When source and target matchers both match, alerts matching both sides are disregarded as inhibitors."""
    inhibitor = Inhibitor([_rule(['severity=~"warning|critical"'], ['severity=~"warning|info"'], ("instance",))])
    warning = _alert(severity="warning", instance="a")
    critical = _alert(severity="critical", instance="a")
    alone = inhibitor.at([warning], T0)
    assert alone.inhibited_by(warning.labels) == ()
    both = inhibitor.at([warning, critical], T0)
    assert both.inhibited_by(warning.labels) == (critical.fingerprint,)
    assert both.inhibited_by({"severity": "info", "instance": "a"}) == (warning.fingerprint, critical.fingerprint)


def test_silence_dataclass_validates_directly_built_silences() -> None:
    """Building a Silence without the helper is validated the same way."""
    with pytest.raises(ValueError, match="needs an id"):
        Silence("", (parse_matcher('a="b"'),), T0, T0 + 1)
