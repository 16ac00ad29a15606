"""The email receiver against a real SMTP server on loopback (aiosmtpd) with STARTTLS or implicit TLS and AUTH.

The server's certificate comes from a CA made in the test; every message is read back as MIME and its
headers and parts checked. Delivery goes through the durable outbox.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from prometheus_client import CollectorRegistry

from agent.config import parse_config
from agent.notifying import NOTIFY_MIGRATIONS, Notifying
from agent.state import StateDB
from exporters.delivery import OutcomeKind
from exporters.notification import AlertPayload, Notification
from exporters.outbox import MIGRATIONS, Outbox, OutboxMetrics
from exporters.receivers.email import EmailReceiver, EmailSettings, EmailTexts, thread_id
from exporters.templating import TemplateSet
from harness.processes import free_port
from harness.smtp import Mailbox, SmtpServer
from harness.tlscerts import TestCA

pytestmark = pytest.mark.timeout(60)

T0 = 1_700_000_000.0
PASSWORD = Mailbox.password
GROUP = '{}:{alertname="Down"}'


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple[TestCA, ssl.SSLContext]]:
    ca = TestCA(tmp_path)
    yield ca, ca.issue("smtp", hosts=("127.0.0.1", "localhost")).server_context()


def alert(instance: str, *, resolved: bool = False) -> AlertPayload:
    return AlertPayload.of({"alertname": "Down", "instance": instance, "severity": "critical"}, starts_at=T0 - 300,
                           ends_at=T0 - 10 if resolved else None,
                           annotations={"summary": f"{instance} <is> down", "check_reason": "connection refused"},
                           generator_url="http://healwatch:9877/graph?g0.expr=up")


def notification(seq: int, *alerts: AlertPayload) -> Notification:
    return Notification(id=f"n-{seq}", receiver="mail", group_key=GROUP, group_labels={"alertname": "Down"},
                        alerts=alerts, created_at=T0, external_url="http://healwatch:9877")


def receiver(ca: TestCA, port: int, texts: EmailTexts = EmailTexts(), templates: TemplateSet | None = None,
             **options: Any) -> EmailReceiver:
    settings = EmailSettings(**{"to": "oncall@example.org, db@example.org", "sender": "healwatch@example.org",
                                "host": "127.0.0.1", "port": port, "username": "hw", "password": PASSWORD,
                                "ca_file": str(ca.cert), "timeout_s": 5.0, **options})
    return EmailReceiver("mail", settings, templates or TemplateSet(), texts)


def send(mail: EmailReceiver, note: Notification) -> OutcomeKind:
    async def go() -> OutcomeKind:
        async with httpx.AsyncClient() as client:
            return (await mail.send(client, note, T0)).kind
    return asyncio.run(go())


def test_starttls_auth_and_one_threaded_message_per_notification_with_text_and_html(
        tls: tuple[TestCA, ssl.SSLContext]) -> None:
    """Firing then resolved: two messages over STARTTLS after AUTH PLAIN, each with a text and an HTML part,
    the default subject, and both referring to the group's one thread root."""
    ca, context = tls
    mailbox, port = Mailbox(), free_port()
    with SmtpServer(mailbox, context, port):
        mail = receiver(ca, port)
        assert send(mail, notification(1, alert("a"), alert("b"))) is OutcomeKind.OK
        assert send(mail, notification(2, alert("a", resolved=True), alert("b", resolved=True))) is OutcomeKind.OK
    assert mailbox.logins == [("PLAIN", "hw"), ("PLAIN", "hw")]
    firing, resolved = mailbox.received
    assert firing.tls and firing.mail_from == "healwatch@example.org"
    assert firing.rcpt_tos == ["oncall@example.org", "db@example.org"]
    assert firing.message["Subject"] == "[FIRING:2] Down (critical)"
    assert resolved.message["Subject"] == "[RESOLVED] Down (critical)"
    root = f"<{hashlib.sha256(('mail' + chr(0) + GROUP).encode()).hexdigest()[:32]}@example.org>"
    assert root == thread_id("mail", GROUP, "example.org")
    for got, seq in ((firing, 1), (resolved, 2)):
        assert got.message["Message-ID"] == f"<n-{seq}@example.org>"
        assert got.message["In-Reply-To"] == root and got.message["References"] == root
        assert got.message.get_content_type() == "multipart/alternative"
    text = firing.message.get_body(("plain",))
    html = firing.message.get_body(("html",))
    assert text is not None and html is not None
    plain, markup = text.get_content(), html.get_content()
    assert "2 firing:" in plain and " - instance = b" in plain and "summary = a <is> down" in plain
    assert "a &lt;is&gt; down" in markup and "Why: connection refused" in markup
    assert 'href="http://healwatch:9877/"' in markup


def test_implicit_tls_on_port_465_and_auth_login(tls: tuple[TestCA, ssl.SSLContext]) -> None:
    """Port 465 speaks TLS from the first byte; a server offering only LOGIN gets AUTH LOGIN."""
    ca, context = tls
    mailbox = Mailbox()
    try:
        server = SmtpServer(mailbox, context, 465, implicit=True, mechanisms_excluded=("PLAIN",))
        server.__enter__()
    except (OSError, RuntimeError) as exc:  # port 465 needs root and must be free
        pytest.skip(f"cannot serve SMTPS on 127.0.0.1:465: {exc}")
    try:
        assert send(receiver(ca, 465), notification(1, alert("a"))) is OutcomeKind.OK
    finally:
        server.__exit__()
    assert mailbox.logins == [("LOGIN", "hw")] and mailbox.received[0].tls


def test_require_tls_refuses_a_server_without_starttls_and_a_wrong_password_is_final_and_redacted(
        tls: tuple[TestCA, ssl.SSLContext]) -> None:
    """As Alertmanager: require_tls (default) fails against a server without STARTTLS; 535 is not retried and
    the password appears nowhere; a certificate from an unknown CA is retried (it may be replaced)."""
    ca, context = tls
    mailbox, port = Mailbox(), free_port()

    async def outcome(mail: EmailReceiver) -> tuple[OutcomeKind, str]:
        async with httpx.AsyncClient() as client:
            got = await mail.send(client, notification(1, alert("a")), T0)
        return got.kind, got.detail

    with SmtpServer(mailbox, context, port, starttls=False):
        kind, detail = asyncio.run(outcome(receiver(ca, port)))
        assert kind is OutcomeKind.FAIL and "does not advertise the STARTTLS extension" in detail
    port = free_port()
    with SmtpServer(mailbox, context, port):
        kind, detail = asyncio.run(outcome(receiver(ca, port, username="hw", password="wrong-" + PASSWORD)))
        assert kind is OutcomeKind.FAIL and detail.startswith("SMTP 535") and PASSWORD not in detail, detail
        kind, detail = asyncio.run(outcome(receiver(ca, port, ca_file=None)))
        assert kind is OutcomeKind.RETRY and "CERTIFICATE_VERIFY_FAILED" in detail
    assert mailbox.received == []


def test_templates_and_a_failing_one_falls_back_to_the_default(tls: tuple[TestCA, ssl.SSLContext],
                                                                tmp_path: Path) -> None:
    """title, headers and text from templates (calling a define'd template of a file); a text failing at send
    time is replaced by the default (a failing header keeps the default header), each failure reported once;
    html: '' sends no HTML part."""
    ca, context = tls
    (tmp_path / "team.tmpl").write_text('{{ define "team.subject" }}{{ .CommonLabels.severity | toUpper }}: '
                                        '{{ range .Alerts.Firing }}{{ .Labels.instance }} {{ end }}{{ end }}')
    failures: list[tuple[str, str]] = []
    templates = TemplateSet([tmp_path / "team.tmpl"], on_error=lambda r, name, err: failures.append((name, err)))
    texts = EmailTexts(
        subject=templates.parse("mail", "title", '{{ template "team.subject" . }}'),
        text=templates.parse("mail", "text", "{{ index .Alerts 5 }}"),  # fails: there is no sixth alert
        send_html=False,
        headers={"X-Group": templates.parse("mail", "headers.X-Group", "{{ .GroupLabels.alertname }}"),
                 "To": templates.parse("mail", "headers.To", "{{ .CommonLabels.severity }}@example.org"),
                 "From": templates.parse("mail", "headers.From", "{{ index .Alerts 9 }}")},  # fails: keeps From
    )
    mailbox, port = Mailbox(), free_port()
    with SmtpServer(mailbox, context, port):
        assert send(receiver(ca, port, texts, templates), notification(1, alert("a"), alert("b"))) is OutcomeKind.OK
    (got,) = mailbox.received
    assert got.message["Subject"] == "CRITICAL: a b" and got.message["X-Group"] == "Down"
    assert got.rcpt_tos == ["critical@example.org"] and got.message.get_all("To") == ["critical@example.org"]
    assert got.message.get_content_type() == "text/plain"
    assert got.message.get_content().replace("\r\n", "\n").startswith("[FIRING:2] Down (critical)\n\n2 firing:")
    assert got.message["From"] == "healwatch@example.org" and got.mail_from == "healwatch@example.org"
    assert [name for name, _ in failures] == ["mail/headers.From", "mail/text"]
    assert "index out of range: 5" in failures[1][1]


def test_server_down_then_up_delivers_every_message_once_in_order(tls: tuple[TestCA, ssl.SSLContext],
                                                                   tmp_path: Path) -> None:
    """Three notifications queued while the SMTP server is down are retried, then delivered once each, in order."""
    ca, context = tls
    mailbox, port = Mailbox(), free_port()
    now = [T0]
    db = StateDB(str(tmp_path / "state.db"))
    db.migrate("outbox", MIGRATIONS)
    outbox = Outbox(db.conn, {"mail": receiver(ca, port)}, clock=lambda: now[0], random=lambda: 1.0,
                    metrics=OutboxMetrics(CollectorRegistry()), log=structlog.get_logger())
    notes = [notification(1, alert("a")), notification(2, alert("a"), alert("b")),
             notification(3, alert("a", resolved=True), alert("b", resolved=True))]

    async def scenario() -> None:
        async with httpx.AsyncClient() as client:
            outbox.enqueue(notes)
            for _ in range(2):  # nobody listens: refused, retried later
                await outbox.deliver_due(client)
                next_at = outbox.next_attempt_at()
                assert next_at is not None and outbox.pending() == 3
                now[0] = next_at
            with SmtpServer(mailbox, context, port):
                for _ in range(20):
                    if outbox.pending() == 0:
                        break
                    await outbox.deliver_due(client)
                    now[0] = outbox.next_attempt_at() or now[0]
    asyncio.run(scenario())
    assert outbox.pending() == 0
    assert [r.message["Message-ID"] for r in mailbox.received] == ["<n-1@example.org>", "<n-2@example.org>",
                                                                   "<n-3@example.org>"]
    assert [r.message["Subject"] for r in mailbox.received] == [
        "[FIRING:1] Down (a critical)", "[FIRING:2] Down (critical)", "[RESOLVED] Down (critical)"]


def test_agent_notifying_sends_templated_mail_and_counts_a_failing_template(tls: tuple[TestCA, ssl.SSLContext],
                                                                             tmp_path: Path) -> None:
    """From the config file to the SMTP server: `notify test` through the agent's Notifying and outbox; the
    subject comes from a templates file, the failing text falls back and healwatch_notification_template_errors
    counts it per notification."""
    ca, context = tls
    (tmp_path / "mail.tmpl").write_text('{{ define "mail.subject" }}{{ .Status }}/{{ .Receiver }}{{ end }}')
    mailbox, port = Mailbox(), free_port()
    config = parse_config(
        "notify:\n  templates: ['*.tmpl']\n  receivers:\n    - name: mail\n      email:\n"
        f"        to: ops@example.org\n        from: hw@example.org\n        smarthost: '127.0.0.1:{port}'\n"
        f"        auth_username: hw\n        auth_password: {PASSWORD}\n        tls_config: {{ca_file: '{ca.cert}'}}\n"
        "        title: '{{ template \"mail.subject\" . }}'\n        text: '{{ index .Alerts 3 }}'\n"
        "  route: {receiver: mail}\n", str(tmp_path / "agent.yaml"))
    db = StateDB(":memory:")
    for namespace, migrations in NOTIFY_MIGRATIONS.items():
        db.migrate(namespace, migrations)

    async def scenario() -> list[str]:
        notifying = Notifying(config, db.conn)
        await notifying.start()
        try:
            answers = await notifying.test_receiver("mail", {}, timeout_s=20)
        finally:
            await notifying.stop()
        values = {(s.name, tuple(s.labels.items())): s.value for f in notifying.families() for s in f.samples}
        assert values[("healwatch_notification_template_errors_total", (("receiver", "mail"),))] == 2
        return [a.answers[-1].kind.value for a in answers]

    with SmtpServer(mailbox, context, port):
        assert asyncio.run(scenario()) == ["ok", "ok"]
    assert [r.message["Subject"] for r in mailbox.received] == ["firing/mail", "resolved/mail"]
    body = mailbox.received[0].message.get_body(("plain",))
    assert body is not None and body.get_content().startswith("[FIRING:1] HealwatchTestNotification")
