"""Email over SMTP: one message per group notification, with a plain-text and an HTML part, threaded per group.

As Alertmanager's email notifier: port 465 is implicit TLS; elsewhere ``require_tls`` (the default) demands
STARTTLS and refuses a server that does not offer it; AUTH (PLAIN or LOGIN, whichever the server offers)
when a username is set. Every message of a group refers to one stable root Message-ID (``In-Reply-To`` and
``References``), so mail clients show a group's firing and resolved messages in one thread. smtplib runs in
a worker thread: it is the standard library's complete client, and a notification is one short session.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import smtplib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import httpx

from exporters.delivery import Outcome, OutcomeKind
from exporters.notification import Notification
from exporters.redact import Redactor
from exporters.templating import TemplateSet, Text, render

IMPLICIT_TLS_PORT = 465


@dataclass(frozen=True)
class EmailSettings:
    to: str  # one or more addresses, comma-separated
    sender: str
    host: str
    port: int
    hello: str = "localhost"
    username: str | None = None
    password: str | None = None
    password_file: str | None = None  # read at every send, so a rotated password is picked up
    require_tls: bool = True
    insecure_skip_verify: bool = False
    ca_file: str | None = None
    timeout_s: float = 30.0


@dataclass(frozen=True)
class EmailTexts:
    """The receiver's templates: None takes the default; ``html`` False sends no HTML part."""

    subject: Text | None = None
    text: Text | None = None
    html: Text | None = None
    send_html: bool = True
    headers: Mapping[str, Text] = field(default_factory=dict)


def thread_id(receiver: str, group_key: str, domain: str) -> str:
    """The root Message-ID every message of one group refers to."""
    digest = hashlib.sha256(f"{receiver}\x00{group_key}".encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def _domain(address: str) -> str:
    return email.utils.parseaddr(address)[1].rpartition("@")[2] or "healwatch"


class EmailReceiver:
    """Sends each notification as one email; 5xx answers fail at once, everything else is retried."""

    def __init__(self, name: str, settings: EmailSettings, templates: TemplateSet, texts: EmailTexts) -> None:
        self.name = name
        self.settings = settings
        self.texts = texts
        self.defaults = {key: templates.named(name, f"email.default.{key}") for key in ("subject", "text", "html")}
        self.redact = Redactor([settings.password] if settings.password else [])

    @property
    def timeout_s(self) -> float:
        return self.settings.timeout_s

    def message(self, notification: Notification) -> EmailMessage:
        """The email for ``notification``: headers, a text part and (unless turned off) an HTML part."""
        def default(key: str) -> Callable[[], str]:
            return lambda: self.defaults[key].execute(notification)

        domain = _domain(self.settings.sender)
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = self.settings.to
        message["Subject"] = " ".join(render(self.texts.subject, notification, default("subject")).split())
        message["Date"] = email.utils.formatdate(notification.created_at, localtime=False)
        message["Message-ID"] = f"<{notification.id}@{domain}>"
        root = thread_id(self.name, notification.group_key, domain)
        message["In-Reply-To"] = root
        message["References"] = root
        message["Auto-Submitted"] = "auto-generated"
        for name, text in self.texts.headers.items():
            # A configured To, From or Subject replaces the default, which stays when the template fails.
            default_value = str(message[name] or "")
            value = " ".join(text.render(notification, lambda: default_value).split())
            del message[name]
            message[name] = value
        message.set_content(render(self.texts.text, notification, default("text")))
        if self.texts.send_html:
            message.add_alternative(render(self.texts.html, notification, default("html")), subtype="html")
        return message

    async def send(self, client: httpx.AsyncClient, notification: Notification, now: float) -> Outcome:
        try:
            password = self._password()
        except OSError as exc:
            # The file may be mounted later; the outbox retries until the notification's max age.
            return Outcome(OutcomeKind.RETRY, self.redact(f"cannot read auth_password_file: {exc}"))
        message = self.message(notification)
        try:
            await asyncio.to_thread(self._deliver, message, password)
        except smtplib.SMTPResponseException as exc:
            detail = self.redact(f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}")
            return Outcome(OutcomeKind.FAIL if exc.smtp_code >= 500 else OutcomeKind.RETRY, detail)
        except smtplib.SMTPRecipientsRefused as exc:
            return Outcome(OutcomeKind.FAIL, self.redact(f"recipients refused: {exc.recipients}"))
        except (_NoStartTLS, smtplib.SMTPNotSupportedError) as exc:
            return Outcome(OutcomeKind.FAIL, self.redact(str(exc)))  # the server lacks what the config asks
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            return Outcome(OutcomeKind.RETRY, self.redact(f"{type(exc).__name__}: {exc}"))
        return Outcome.ok()

    def _password(self) -> str | None:
        if self.settings.password_file:
            password = Path(self.settings.password_file).read_text().strip()
            self.redact.add(password)
            return password
        return self.settings.password

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.settings.ca_file)
        if self.settings.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _deliver(self, message: EmailMessage, password: str | None) -> None:
        """One SMTP session (in a worker thread): connect, TLS, AUTH, send, quit."""
        s = self.settings
        smtp: smtplib.SMTP
        if s.port == IMPLICIT_TLS_PORT:
            smtp = smtplib.SMTP_SSL(s.host, s.port, local_hostname=s.hello, timeout=s.timeout_s, context=self._tls())
        else:
            smtp = smtplib.SMTP(s.host, s.port, local_hostname=s.hello, timeout=s.timeout_s)
        with smtp:
            smtp.ehlo()
            if s.port != IMPLICIT_TLS_PORT and s.require_tls:
                if not smtp.has_extn("starttls"):
                    raise _NoStartTLS(f"require_tls: true (default), but {s.host}:{s.port} does not advertise "
                                      "the STARTTLS extension")
                smtp.starttls(context=self._tls())
                smtp.ehlo()
            if s.username:
                _login(smtp, s.username, password or "")
            smtp.send_message(message)


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH PLAIN, or LOGIN when the server offers only that: one attempt, so a wrong password is one 535."""
    if not smtp.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError("the server does not offer AUTH, but auth_username is set")
    offered = smtp.esmtp_features["auth"].upper().split()
    mechanism = next((m for m in ("PLAIN", "LOGIN") if m in offered), None)
    if mechanism is None:
        raise smtplib.SMTPNotSupportedError(f"the server offers AUTH {' '.join(offered)}; healwatch speaks PLAIN "
                                            "and LOGIN")
    smtp.user, smtp.password = username, password
    smtp.auth(mechanism, smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login)


class _NoStartTLS(Exception):
    """The server does not offer STARTTLS although require_tls asks for it."""


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
