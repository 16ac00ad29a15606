"""Label matchers: the four operators, anchoring, missing labels, bad input."""

from __future__ import annotations

import re

import pytest

from rules.matchers import Matcher, MatchOp


@pytest.mark.parametrize(
    ("op", "value", "label", "expected"),
    [
        (MatchOp.EQ, "api", "api", True),
        (MatchOp.EQ, "api", "apis", False),
        (MatchOp.NE, "api", "api", False),
        (MatchOp.NE, "api", "web", True),
        (MatchOp.RE, "a.i", "api", True),
        (MatchOp.RE, "a.i", "web", False),
        (MatchOp.NRE, "a.i", "api", False),
        (MatchOp.NRE, "a.i", "web", True),
    ],
)
def test_each_operator(op: MatchOp, value: str, label: str, expected: bool) -> None:
    """Each operator accepts exactly the values its PromQL meaning says."""
    assert Matcher("job", op, value).matches(label) is expected


@pytest.mark.parametrize("label", ["xab", "abx", "xabx"])
def test_regex_is_fully_anchored(label: str) -> None:
    """A regex must match the whole value, not a substring of it."""
    assert not Matcher("job", MatchOp.RE, "ab").matches(label)
    assert Matcher("job", MatchOp.NRE, "ab").matches(label)


def test_anchoring_covers_alternation() -> None:
    """Anchoring wraps the whole alternation, so ``a|b`` does not match ``ab`` or ``ba``."""
    matcher = Matcher("job", MatchOp.RE, "a|b")
    assert matcher.matches("a") and matcher.matches("b")
    assert not matcher.matches("ab") and not matcher.matches("ba")


def test_dot_matches_newline() -> None:
    """As in Prometheus, ``.`` in a label regex also matches a newline."""
    assert Matcher("msg", MatchOp.RE, "a.*b").matches("a\nb")


def test_missing_label_is_empty_string() -> None:
    """A missing label behaves as the empty string for every operator."""
    assert Matcher("zone", MatchOp.EQ, "").matches("")
    assert not Matcher("zone", MatchOp.NE, "").matches("")
    assert Matcher("zone", MatchOp.NE, "eu").matches("")
    assert Matcher("zone", MatchOp.RE, ".*").matches("")
    assert not Matcher("zone", MatchOp.RE, ".+").matches("")
    assert Matcher("zone", MatchOp.NRE, "eu.*").matches("")


def test_invalid_regex_is_a_clear_value_error() -> None:
    """An unparseable regex fails at construction with the matcher in the message."""
    with pytest.raises(ValueError, match=r'invalid regular expression in job=~"\(api": missing \)'):
        Matcher("job", MatchOp.RE, "(api")


def test_invalid_regex_in_negative_matcher() -> None:
    """A negative regex matcher validates its pattern too."""
    with pytest.raises(ValueError, match="invalid regular expression"):
        Matcher("job", MatchOp.NRE, "[a-")


def test_unknown_operator_is_a_clear_value_error() -> None:
    """An operator outside the four is refused with the valid ones listed."""
    with pytest.raises(ValueError, match=r"unknown label match operator '==' \(expected one of =, !=, =~, !~\)"):
        Matcher("job", "==", "api")  # type: ignore[arg-type]


def test_operator_given_as_string_is_normalised() -> None:
    """An operator passed as its PromQL spelling becomes the enum member."""
    assert Matcher("job", "=~", "a.*").op is MatchOp.RE  # type: ignore[arg-type]


def test_regex_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Matching reuses the pattern compiled at construction."""
    matcher = Matcher("job", MatchOp.RE, "api-[0-9]+")

    def refuse(*args: object, **kwargs: object) -> re.Pattern[str]:
        raise AssertionError("regex compiled again")

    monkeypatch.setattr(re, "compile", refuse)
    assert matcher.matches("api-12")
    assert not matcher.matches("api-x")


def test_equality_and_hash_ignore_compiled_regex() -> None:
    """Two matchers with the same name, operator and value are equal and hash alike."""
    first = Matcher("job", MatchOp.RE, "a.*")
    second = Matcher("job", MatchOp.RE, "a.*")
    assert first == second
    assert len({first, second}) == 1
    assert first != Matcher("job", MatchOp.NRE, "a.*")


def test_str_is_promql_syntax() -> None:
    """A matcher prints as it would be written in a selector, with quotes escaped."""
    assert str(Matcher("path", MatchOp.NE, 'a"b\\c')) == 'path!="a\\"b\\\\c"'


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        (".*((?i)DUC).*", ["production", "PRODUCTION"], ["prod"]),
        ("a(?i)b|c", ["aB", "C"], ["AB"]),
        ("(a(?i)b)c", ["aBc"], ["aBC"]),
        ("[]x(?i)]+", ["](?i)"], ["X"]),
    ],
)
def test_go_inline_flags_apply_to_the_rest_of_their_group(
    pattern: str, matching: list[str], not_matching: list[str]
) -> None:
    """RE2 flag groups after the start of a pattern scope to the rest of their group, as in Prometheus."""
    matcher = Matcher("l", MatchOp.RE, pattern)
    assert all(matcher.matches(value) for value in matching)
    assert not any(matcher.matches(value) for value in not_matching)
