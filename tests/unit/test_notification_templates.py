"""Notification templates: Alertmanager's data model and defaults, positioned config errors, fallback at send time."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import parse_config
from agent.notifying import build_receiver
from exporters.notification import AlertPayload, Notification
from exporters.receivers.msteams import MSTeamsReceiver, message
from exporters.receivers.slack import SlackTexts, slack_message
from exporters.templating import TemplateSet, quote_meta
from rules.errors import SourceError

T0 = 1_700_000_000.0


def notification(*alerts: AlertPayload, receiver: str = "team-x.mail") -> Notification:
    return Notification(id="n-1", receiver=receiver, group_key="g", group_labels={"alertname": "HighLatency"},
                        alerts=alerts, created_at=T0, external_url="http://hw:9877")


def alert(instance: str, *, resolved: bool = False, severity: str = "page") -> AlertPayload:
    return AlertPayload.of({"alertname": "HighLatency", "service": "api", "instance": instance, "severity": severity},
                           starts_at=T0 - 300, ends_at=T0 - 10 if resolved else None,
                           annotations={"summary": f"{instance} is slow"}, generator_url="http://p/graph")


def render(text: str, note: Notification) -> str:
    return TemplateSet().parse("r", "text", text).execute(note)


def test_the_dot_is_alertmanagers_template_data() -> None:
    """Fields and methods of template.Data, Alert, KV and Pairs; a firing alert's EndsAt is Go's zero time."""
    note = notification(alert("a"), alert("b", resolved=True))
    assert render("{{ .Status }} {{ .Receiver }} {{ .ExternalURL }} {{ len .Alerts }}", note) == \
        "firing team-x\\.mail http://hw:9877 2"
    assert render("{{ range .Alerts.Firing }}{{ .Labels.instance }} {{ .EndsAt }}{{ end }}|"
                  "{{ range .Alerts.Resolved }}{{ .Status }} {{ .EndsAt.Unix }} {{ .Fingerprint }}{{ end }}", note) == \
        f"a 0001-01-01 00:00:00 +0000 UTC|resolved {int(T0 - 10)} {alert('b').fingerprint}"
    assert render("{{ .CommonLabels.SortedPairs }} {{ .CommonLabels.Names }} {{ .GroupLabels.Values }}", note) == \
        "[{alertname HighLatency} {service api} {severity page}] [alertname service severity] [HighLatency]"
    assert render('{{ (.CommonLabels.Remove (stringSlice "service")).Names | join "," }} '
                  "{{ .CommonAnnotations }} {{ (index .Alerts 0).StartsAt.Format \"15:04\" }}", note) == \
        "alertname,severity map[] 22:08"
    assert render("{{ .Alerts.Firing | len }} {{ .CommonLabels.severity | toUpper }} {{ \" x \" | trimSpace }}",
                  note) == "1 PAGE x"


def test_default_subject_is_alertmanagers() -> None:
    """email.default.subject renders as Alertmanager's __subject: status, firing count, group labels, then the
    other common labels in parentheses (the example in Alertmanager's notification template docs)."""
    templates = TemplateSet()
    subject = templates.named("r", "email.default.subject")
    assert subject.execute(notification(alert("a"), alert("b"))) == "[FIRING:2] HighLatency (api page)"
    assert subject.execute(notification(alert("a", resolved=True))) == "[RESOLVED] HighLatency (a api page)"
    assert quote_meta("a.b[c]") == "a\\.b\\[c\\]"


def test_template_files_define_templates_receivers_call(tmp_path: Path) -> None:
    """A define in a templates file is callable from a receiver's title; two receivers' texts do not clash."""
    (tmp_path / "a.tmpl").write_text('{{ define "my.title" }}{{ .Status | title }}: {{ .GroupLabels.alertname }}'
                                     "{{ end }}")
    templates = TemplateSet([tmp_path / "a.tmpl"])
    first = templates.parse("one", "title", '{{ define "x" }}1{{ end }}{{ template "my.title" . }} {{ template "x" }}')
    second = templates.parse("two", "title", '{{ define "x" }}2{{ end }}{{ template "x" }}')
    assert first.execute(notification(alert("a"))) == "Firing: HighLatency 1"
    assert second.execute(notification(alert("a"))) == "2"


def test_slack_and_teams_texts_replace_the_default_and_a_failing_one_falls_back() -> None:
    """Slack: a title replaces the header, a text replaces the alert sections; Teams likewise. A text that fails
    when sent gives the default, and the failure is reported with the receiver and template."""
    failures: list[tuple[str, str, str]] = []
    templates = TemplateSet(on_error=lambda *failure: failures.append(failure))
    note = notification(alert("a"), alert("b"))
    texts = SlackTexts(templates.parse("s", "title", "{{ .Alerts.Firing | len }} slow"),
                       templates.parse("s", "text", "{{ range .Alerts }}• {{ .Annotations.summary }}\n{{ end }}"))
    blocks = slack_message(note, texts=texts)["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section"]
    assert blocks[0]["text"]["text"] == "2 slow" and blocks[1]["text"]["text"] == "• a is slow\n• b is slow\n"
    broken = SlackTexts(templates.parse("s", "title", "{{ .Nope }}"), templates.parse("s", "text", "{{ .Nope }}"))
    fallback = slack_message(note, texts=broken)
    assert fallback == slack_message(note)
    assert [(r, t) for r, t, _ in failures] == [("s", "s/title"), ("s", "s/text")]
    assert "can't evaluate field Nope in type *template.Data" in failures[0][2]

    config = parse_config(
        "notify:\n  receivers:\n    - name: t\n      msteams:\n        webhook_url: 'https://x.example/w'\n"
        "        title: '{{ .CommonLabels.service }} is slow'\n        text: '{{ .Alerts | len }} alerts'\n"
        "  route: {receiver: t}\n", "agent.yaml")
    teams = build_receiver(config.notify.receivers[0], None)  # type: ignore[arg-type]  # Teams keeps no state
    assert isinstance(teams, MSTeamsReceiver)
    body = message(note, teams.settings)["attachments"][0]["content"]["body"]
    assert [b["text"] for b in body] == ["api is slow", "2 alerts"]


def errors_of(text: str, path: Path) -> list[str]:
    with pytest.raises(SourceError) as info:
        parse_config(text, str(path))
    return [str(issue) for issue in info.value.issues]


def test_bad_templates_are_positioned_config_errors(tmp_path: Path) -> None:
    """A receiver text that does not parse is an error at its value naming the line and column inside it; a
    templates file that does not parse names the file, line and column; the password appears nowhere."""
    (tmp_path / "bad.tmpl").write_text('{{ define "a" }}ok{{ end }}\n\n  {{ if .Status }}unclosed\n')
    (tmp_path / "dup.tmpl").write_text('{{ define "__subject" }}mine{{ end }}')
    config = tmp_path / "agent.yaml"
    errors = errors_of(
        "notify:\n  templates: [bad.tmpl]\n  receivers:\n"
        "    - name: m\n      email:\n        to: a@example.org\n        from: hw@example.org\n"
        "        smarthost: 'mail:587'\n        auth_username: hw\n        auth_password: hunter2-secret\n"
        "        title: '{{ .Status'\n        headers: {X-A: \"{{ range }}\"}\n"
        "  route: {receiver: m}\n", config)
    assert errors[0] == f"{config}:2:14: notify -> templates: {tmp_path / 'bad.tmpl'}:4:1: template: bad.tmpl:4: " \
        "unexpected EOF"
    assert errors[1].startswith(f"{config}:11:16: notify -> receivers -> 0 -> email -> title: template line 1, "
                                "column 11: template: text:1: unclosed action")
    assert errors[2].startswith(f"{config}:12:24: notify -> receivers -> 0 -> email -> headers -> X-A: template "
                                "line 1, column 10: template: text:1: missing value for range")
    assert len(errors) == 3 and not any("hunter2" in e for e in errors)
    (dup,) = errors_of("notify:\n  templates: ['*.tmpl']\n", config)[:1]
    assert f"{tmp_path / 'bad.tmpl'}:4:1:" in dup  # the glob reads bad.tmpl first, in name order
    (dup,) = errors_of("notify:\n  templates: [dup.tmpl]\n", config)
    assert "multiple definition of template" in dup and str(tmp_path / "dup.tmpl") in dup


def test_email_section_defaults_and_mistakes() -> None:
    """Alertmanager's defaults (require_tls, hello localhost, no resolved mail); a password needs a username and
    only one of password and its file is allowed."""
    config = parse_config("notify:\n  receivers:\n    - name: m\n      email: {to: a@x.org, from: b@x.org, "
                          "smarthost: 'mail:25'}\n  route: {receiver: m}\n", "agent.yaml")
    mail = config.notify.receivers[0].email
    assert mail is not None and mail.require_tls and mail.hello == "localhost"
    assert config.notify.receivers[0].send_resolved is False
    for options, expected in (
        ("smarthost: 'mail'", "agent.yaml:4:54: notify -> receivers -> 0 -> email -> smarthost: expected HOST:PORT "
         "such as 127.0.0.1:9877, got 'mail'"),
        ("smarthost: 'mail:25', auth_username: hw, auth_password: pw-secret-1, auth_password_file: /run/pw",
         "agent.yaml:4:14: notify -> receivers -> 0 -> email: expected at most one of auth_password or "
         "auth_password_file"),
        ("smarthost: 'mail:25', auth_password: pw-secret-1",
         "agent.yaml:4:14: notify -> receivers -> 0 -> email: auth_password needs an auth_username"),
    ):
        with pytest.raises(SourceError) as info:
            parse_config("notify:\n  receivers:\n    - name: m\n      email: {to: a@x.org, from: b@x.org, "
                         f"{options}}}\n  route: {{receiver: m}}\n", "agent.yaml")
        assert [str(issue) for issue in info.value.issues] == [expected]
