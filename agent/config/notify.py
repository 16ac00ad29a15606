"""The ``notify`` config section: receivers, the routing tree and inhibition rules, in Alertmanager's shape."""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, ValidationInfo, model_validator

from agent.config.timeintervals import IntervalName
from agent.config.types import Duration, HostPort, HttpUrl, PositiveDuration, Section
from exporters.inhibit import Inhibitor, InhibitRule
from exporters.matchers import parse_matcher_list, parse_matchers
from exporters.routing import GROUP_BY_ALL, Route, RouteSpec, build_route
from exporters.silences import RETENTION_S
from exporters.templating import FileTemplateError, TemplateError, check_text, parse_files, template_files

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _matchers(text: str) -> str:
    if not parse_matchers(text):
        raise ValueError(f"expected at least one matcher such as severity=\"critical\", got {text!r}")
    return text


def _group_label(name: str) -> str:
    if name != GROUP_BY_ALL and not _LABEL_NAME.match(name):
        raise ValueError(f"{name!r} is not a label name (or '...' for all labels)")
    return name


MatcherText = Annotated[str, AfterValidator(_matchers)]
GroupLabel = Annotated[str, AfterValidator(_group_label)]


def _http_url_secret(value: SecretStr) -> SecretStr:
    if not re.match(r"^https?://[^/\s]+", value.get_secret_value()):
        raise ValueError("expected an http:// or https:// URL")  # the value itself is a secret: not quoted
    return value


SecretUrl = Annotated[SecretStr, AfterValidator(_http_url_secret)]


def _template_text(text: str) -> str:
    """A receiver's text parses as a Go template (the error names the line and column inside the text)."""
    try:
        check_text(text, "text")
    except TemplateError as err:
        raise ValueError(f"template line {err.line}, column {err.column}: {err}") from None
    return text


TemplateText = Annotated[str, AfterValidator(_template_text)]


def _template_globs(patterns: list[str], info: ValidationInfo) -> list[str]:
    """The ``templates`` globs, made absolute against the config file's directory; every file they match parses."""
    config_dir = (info.context or {}).get("config_dir")
    absolute = [str(Path(config_dir) / p) if config_dir is not None else p for p in patterns]
    for pattern in absolute:
        if not glob.has_magic(pattern) and not Path(pattern).is_file():
            raise ValueError(f"template file {pattern!r} does not exist")
    try:
        parse_files(template_files(absolute))
    except FileTemplateError as err:
        raise ValueError(str(err)) from None
    return absolute


class SlackReceiverConfig(Section):
    """Slack through an incoming webhook, or (with a bot token) one living message per alert group."""

    webhook_url: SecretUrl | None = Field(None, description="Incoming webhook URL; a secret.")
    bot_token: SecretStr | None = Field(None, description="Bot token (xoxb-...) for chat.postMessage/chat.update.")
    channel: str | None = Field(None, description="Channel override; required with bot_token.")
    username: str | None = Field(None, description="Name to post as instead of the app's (slack_configs' username).")
    api_url: HttpUrl = Field("https://slack.com/api/", description="Slack Web API base URL (bot_token mode).")
    title: TemplateText | None = Field(
        None, description="Header template over the notification data; [FIRING:2] and the group labels if unset."
    )
    text: TemplateText | None = Field(
        None, description="Body template (mrkdwn); replaces the default blocks' alert sections when set."
    )
    send_resolved: bool = Field(
        False, description="Also notify when alerts resolve; off as in Alertmanager's slack_configs."
    )
    timeout: PositiveDuration = Field(10.0, description="One request to Slack fails (and is retried) after this.")

    @model_validator(mode="after")
    def _one_mode(self) -> SlackReceiverConfig:
        if (self.webhook_url is None) == (self.bot_token is None):
            raise ValueError("expected exactly one of webhook_url or bot_token")
        if self.bot_token is not None and not self.channel:
            raise ValueError("bot_token needs a channel to post to")
        return self


class WebhookReceiverConfig(Section):
    """POSTs Alertmanager's webhook payload (version 4); the URL counts as a secret, as in Alertmanager."""

    url: SecretUrl = Field(
        description="The http:// or https:// URL POSTed to; a secret, redacted from logs and errors."
    )
    bearer_token: SecretStr | None = Field(None, description="Sent as Authorization: Bearer; a secret.")
    bearer_token_file: str | None = Field(None, description="File holding the bearer token, read at every send.")
    headers: dict[str, SecretStr] = Field({}, description="Extra request headers; their values are secrets.")
    hmac_secret: SecretStr | None = Field(None, description="Signs the body: X-Healwatch-Signature: sha256=<hex>.")
    max_alerts: int = Field(0, ge=0, description="Send at most this many alerts (0: all); the rest are counted.")
    send_resolved: bool = Field(True, description="Also notify when alerts resolve; on as in Alertmanager's webhook.")
    timeout: PositiveDuration = Field(10.0, description="One POST fails (and is retried) after this.")

    @model_validator(mode="after")
    def _one_token(self) -> WebhookReceiverConfig:
        if self.bearer_token is not None and self.bearer_token_file is not None:
            raise ValueError("expected at most one of bearer_token or bearer_token_file")
        return self


class AlertmanagerReceiverConfig(Section):
    """Pushes every alert the rules send to Alertmanager's API v2, as Prometheus does; needs no route."""

    urls: list[HttpUrl] = Field(
        min_length=1, description="Alertmanager base URLs; each gets every alert at /api/v2/alerts, as from Prometheus."
    )
    timeout: PositiveDuration = Field(10.0, description="A push to one URL fails (and is retried) after this.")


class PagerDutyReceiverConfig(Section):
    """PagerDuty Events API v2: a group's firing notification triggers one PagerDuty alert, its resolved one resolves it."""

    routing_key: SecretStr | None = Field(
        None, description="The integration key of an Events API v2 integration; a secret, redacted everywhere."
    )
    routing_key_file: str | None = Field(None, description="File holding the routing key, read at every send.")
    url: HttpUrl = Field("https://events.pagerduty.com/v2/enqueue",
                         description="Events API v2 endpoint; healers' change events go to change/enqueue beside it.")
    severity: Literal["critical", "error", "warning", "info"] = Field(
        "error", description="payload.severity of the events (Alertmanager's default: error)."
    )
    class_: str | None = Field(None, alias="class", description="payload.class: the type of the event.")
    component: str | None = Field(None, description="payload.component: the part of the source that is broken.")
    group: str | None = Field(None, description="payload.group: a logical grouping of components.")
    source: str | None = Field(None, description="payload.source: the affected system; this host's name if unset.")
    details: dict[str, str] = Field({}, description="Extra payload.custom_details, beside the firing and resolved alerts.")
    send_resolved: bool = Field(True, description="Resolve the PagerDuty alert when the group resolves.")
    timeout: PositiveDuration = Field(10.0, description="One request to PagerDuty fails (and is retried) after this.")

    @model_validator(mode="after")
    def _one_key(self) -> PagerDutyReceiverConfig:
        if (self.routing_key is None) == (self.routing_key_file is None):
            raise ValueError("expected exactly one of routing_key or routing_key_file")
        return self


class MSTeamsReceiverConfig(Section):
    """Microsoft Teams through an incoming webhook or a Workflows URL: one Adaptive Card per notification."""

    webhook_url: SecretUrl | None = Field(None, description="Incoming webhook or Workflows URL; a secret.")
    webhook_url_file: str | None = Field(None, description="File holding the URL, read at every send.")
    title: TemplateText | None = Field(
        None, description="Card title template; Alertmanager's default ([FIRING:2] group labels) if unset.")
    text: TemplateText | None = Field(
        None, description="Card text template (Markdown); each alert's summary, reason, labels and links if unset.")
    send_resolved: bool = Field(True, description="Also notify when alerts resolve; on as in Alertmanager's msteamsv2.")
    timeout: PositiveDuration = Field(10.0, description="One POST to Teams fails (and is retried) after this.")

    @model_validator(mode="after")
    def _one_url(self) -> MSTeamsReceiverConfig:
        if (self.webhook_url is None) == (self.webhook_url_file is None):
            raise ValueError("expected exactly one of webhook_url or webhook_url_file")
        return self


class EmailTLSConfig(Section):
    """How the SMTP server's certificate is checked (STARTTLS or implicit TLS)."""

    insecure_skip_verify: bool = Field(False, description="Accept any certificate; for tests only.")
    ca_file: str | None = Field(None, description="PEM file of the CA that signed the server's certificate.")


class EmailReceiverConfig(Section):
    """Email through an SMTP smarthost: one message per notification, text and HTML, threaded per alert group."""

    to: str = Field(min_length=1, description="Recipient addresses, comma-separated.")
    from_: str = Field(alias="from", min_length=1, description="The sender address (From).")
    smarthost: HostPort = Field(description="HOST:PORT of the SMTP server; port 465 is implicit TLS (SMTPS).")
    hello: str = Field("localhost", description="The name this host gives in EHLO.")
    auth_username: str | None = Field(None, description="Log in with AUTH (PLAIN or LOGIN, as the server offers).")
    auth_password: SecretStr | None = Field(None, description="The AUTH password; a secret, redacted everywhere.")
    auth_password_file: str | None = Field(None, description="File holding the AUTH password, read at every send.")
    require_tls: bool = Field(
        True, description="Demand STARTTLS (on ports other than 465) and fail if the server lacks it, as Alertmanager."
    )
    tls_config: EmailTLSConfig = Field(EmailTLSConfig(), description="Checking the server's certificate.")
    title: TemplateText | None = Field(
        None, description="Subject template; email.default.subject ([FIRING:2] and the group labels) if unset."
    )
    headers: dict[str, TemplateText] = Field(
        {}, description="Extra headers, values templated; To, From or Subject here replace the defaults."
    )
    html: TemplateText | None = Field(
        None, description="HTML part template; email.default.html if unset, no HTML part if empty."
    )
    text: TemplateText | None = Field(None, description="Text part template; email.default.text if unset.")
    send_resolved: bool = Field(False, description="Also notify when alerts resolve; off as in Alertmanager's email.")
    timeout: PositiveDuration = Field(30.0, description="One SMTP session fails (and is retried) after this.")

    @model_validator(mode="after")
    def _auth(self) -> EmailReceiverConfig:
        if self.auth_password is not None and self.auth_password_file is not None:
            raise ValueError("expected at most one of auth_password or auth_password_file")
        if (self.auth_password is not None or self.auth_password_file is not None) and not self.auth_username:
            raise ValueError("auth_password needs an auth_username")
        return self


class ReceiverConfig(Section):
    """A named destination of notifications: at most one kind (slack, webhook, alertmanager, ...; none discards)."""

    name: Annotated[str, Field(min_length=1)] = Field(description="Unique name that routes send to.")
    slack: SlackReceiverConfig | None = Field(None, description="Post to Slack.")
    webhook: WebhookReceiverConfig | None = Field(None, description="POST Alertmanager's webhook payload.")
    alertmanager: AlertmanagerReceiverConfig | None = Field(
        None, description="Push every alert to Alertmanager; needs no route."
    )
    pagerduty: PagerDutyReceiverConfig | None = Field(None, description="Send PagerDuty Events API v2 events.")
    msteams: MSTeamsReceiverConfig | None = Field(None, description="Post an Adaptive Card to Microsoft Teams.")
    email: EmailReceiverConfig | None = Field(None, description="Send an email through an SMTP server.")

    @model_validator(mode="after")
    def _one_kind(self) -> ReceiverConfig:
        kinds = [k for k in RECEIVER_KINDS if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(f"expected one of {', '.join(RECEIVER_KINDS)} per receiver, got {', '.join(kinds)}")
        return self

    @property
    def send_resolved(self) -> bool:
        kind = next((getattr(self, k) for k in RECEIVER_KINDS if getattr(self, k) is not None), None)
        return bool(getattr(kind, "send_resolved", True))


# The receiver kinds, each a section of ReceiverConfig (agent.notifying builds each kind's receiver).
RECEIVER_KINDS = [name for name in ReceiverConfig.model_fields if name != "name"]


class OutboxConfig(Section):
    """Delivery retries: exponential backoff with full jitter, until a notification is max_age old."""

    max_age: PositiveDuration = Field(24 * 3600.0, description="Drop (and count) notifications undelivered this long.")
    backoff_initial: PositiveDuration = Field(
        1.0, description="The first retry waits a random time below this; the bound doubles each retry (full jitter)."
    )
    backoff_max: PositiveDuration = Field(300.0, description="The bound stops doubling at this.")


class RouteConfig(Section):
    """One node of the routing tree; unset options are inherited from the parent route."""

    receiver: str | None = Field(
        None, description="The receiver of alerts this route matches; inherited when unset, required at the root."
    )
    matchers: list[MatcherText] = Field([], description='Alertmanager matchers, e.g. severity="critical".')
    group_by: list[GroupLabel] | None = Field(None, description="Labels to group by; ['...'] groups by all labels.")
    group_wait: Duration | None = Field(None, description="Wait before a new group's first notification (30s).")
    group_interval: PositiveDuration | None = Field(None, description="Wait between a group's notifications (5m).")
    repeat_interval: PositiveDuration | None = Field(None, description="Re-send unchanged firing groups (4h).")
    resolve_wait: Duration | None = Field(
        None, description="Send a group's all-resolved notification this long after the last alert resolved."
    )
    mute_time_intervals: list[IntervalName] = Field(
        [], description="Names from time_intervals: while one holds, this route sends nothing (not inherited)."
    )
    active_time_intervals: list[IntervalName] = Field(
        [], description="Names from time_intervals: this route sends only while one holds (not inherited)."
    )
    continue_: bool = Field(False, alias="continue", description="Keep matching sibling routes after this one.")
    routes: list[RouteConfig] = Field(
        [], description="Child routes, tried in order: the first that matches takes the alert (and the next ones while "
        "it has continue); when none does, this route keeps it.",
    )

    @model_validator(mode="after")
    def _group_by_all_alone(self) -> RouteConfig:
        if self.group_by is not None and GROUP_BY_ALL in self.group_by and len(self.group_by) > 1:
            raise ValueError("group_by cannot have '...' and other labels at the same time")
        return self

    def to_spec(self) -> RouteSpec:
        """The plain route description the dispatcher builds its tree from."""
        return RouteSpec(
            receiver=self.receiver,
            matchers=parse_matcher_list(self.matchers),
            group_by=None if self.group_by is None else tuple(self.group_by),
            group_wait_s=self.group_wait,
            group_interval_s=self.group_interval,
            repeat_interval_s=self.repeat_interval,
            resolve_wait_s=self.resolve_wait,
            mute_time_intervals=tuple(self.mute_time_intervals),
            active_time_intervals=tuple(self.active_time_intervals),
            continue_=self.continue_,
            routes=tuple(child.to_spec() for child in self.routes),
        )


class InhibitRuleConfig(Section):
    """Firing alerts matching ``source_matchers`` mute alerts matching ``target_matchers`` with equal ``equal`` labels."""

    source_matchers: list[MatcherText] = Field(min_length=1, description="Matchers a firing alert must meet to mute.")
    target_matchers: list[MatcherText] = Field(min_length=1, description="Matchers of the alerts it mutes.")
    equal: list[Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")]] = Field(
        [], description="Labels source and target must have equal (a label missing on both counts as equal)."
    )

    def to_rule(self) -> InhibitRule:
        return InhibitRule(
            parse_matcher_list(self.source_matchers), parse_matcher_list(self.target_matchers), tuple(self.equal)
        )


class SilencesConfig(Section):
    retention: PositiveDuration = Field(RETENTION_S, description="Keep expired silences this long.")


class NotifyConfig(Section):
    """Where alerts are sent: without a route, nothing is."""

    receivers: list[ReceiverConfig] = Field([], description="Where notifications can go, each by name.")
    templates: Annotated[list[str], AfterValidator(_template_globs)] = Field(
        [], description="Globs of Go template files (relative to this file) whose define'd templates receivers' "
        "title, text, html and headers may call with {{ template \"name\" . }}, as Alertmanager's templates.",
    )
    route: RouteConfig | None = Field(
        None, description="The routing tree's root: which receiver gets which alert, grouped how, how often."
    )
    inhibit_rules: list[InhibitRuleConfig] = Field([], description="Firing alerts that mute others.")
    silences: SilencesConfig = Field(SilencesConfig(), description="Silences, set through the API or by maintenance.")
    outbox: OutboxConfig = Field(OutboxConfig(), description="How failed deliveries are retried.")

    @model_validator(mode="after")
    def _routes_reach_receivers(self) -> NotifyConfig:
        names = [r.name for r in self.receivers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate receiver names: {', '.join(duplicates)}")
        if self.route is None:
            # Alertmanager receivers get every alert without a route, as Prometheus' alerting config does.
            if any(r.alertmanager is None for r in self.receivers):
                raise ValueError("receivers are configured but no route sends anything to them")
            return self
        if self.route.receiver is None:
            raise ValueError("route: the root route needs a receiver")
        if self.route.matchers:
            raise ValueError("route: the root route must not have matchers")
        if self.route.continue_:
            raise ValueError("route: the root route cannot have continue")
        if self.route.mute_time_intervals or self.route.active_time_intervals:
            raise ValueError("route: the root route must not have mute_time_intervals or active_time_intervals")
        known = set(names)
        for where, route in _walk(self.route, "route"):
            if route.receiver is not None and route.receiver not in known:
                listed = ", ".join(names) or "none"
                raise ValueError(f"{where}: receiver {route.receiver!r} is not defined (receivers: {listed})")
        return self

    def build_route(self) -> Route | None:
        """The routing tree, or None when no route is configured."""
        return None if self.route is None else build_route(self.route.to_spec())

    def build_inhibitor(self) -> Inhibitor:
        return Inhibitor(rule.to_rule() for rule in self.inhibit_rules)


def interval_names(route: RouteConfig | None) -> list[tuple[str, str]]:
    """Every time interval name the routing tree uses, with where (for errors)."""
    if route is None:
        return []
    return [(f"{where} -> {key}", name) for where, node in _walk(route, "route")
            for key in ("mute_time_intervals", "active_time_intervals") for name in getattr(node, key)]


def _walk(route: RouteConfig, where: str) -> list[tuple[str, RouteConfig]]:
    found = [(where, route)]
    for index, child in enumerate(route.routes):
        found.extend(_walk(child, f"{where} -> routes -> {index}"))
    return found
