"""A real SMTP server on loopback (aiosmtpd in its own thread) that keeps what it receives as parsed MIME."""

from __future__ import annotations

import email
import email.policy
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Received:
    """One message as the server took it: envelope, parsed MIME, and whether the session was encrypted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool


@dataclass
class Mailbox:
    """What the SMTP server took, and how clients logged in."""

    password = "s3cret-Pa55"  # the one password AUTH accepts
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)  # (mechanism, user)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        tls = server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), parsed, tls))
        return "250 OK"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        ok = data.password.decode() == self.password
        if ok:
            self.logins.append((mechanism, data.login.decode()))
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


class SmtpServer:
    """aiosmtpd in its own thread; ``implicit`` serves TLS from the first byte (SMTPS), else STARTTLS."""

    def __init__(self, mailbox: Mailbox, context: ssl.SSLContext | None, port: int, *, implicit: bool = False,
                 starttls: bool = True, mechanisms_excluded: tuple[str, ...] = ()) -> None:
        self.port = port
        kwargs: dict[str, Any] = {"authenticator": mailbox.authenticate, "auth_require_tls": True,
                                  "auth_exclude_mechanism": mechanisms_excluded}
        if context is None:  # plain SMTP without AUTH, as a relay inside a network
            kwargs = {}
        elif implicit:
            # aiosmtpd advertises AUTH only after STARTTLS when auth_require_tls; SMTPS is TLS from the start.
            kwargs.update(ssl_context=context, server_hostname="localhost", auth_require_tls=False)
        elif starttls:
            kwargs.update(tls_context=context, require_starttls=True)
        self.controller = Controller(mailbox, hostname="127.0.0.1", port=port, **kwargs)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
