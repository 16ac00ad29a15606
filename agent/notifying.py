"""The notification runtime the daemon owns: alerts in through ``on_alerts``, notifications out via the outbox.

Alerts the rule engine sends arrive as one batch per call of ``on_alerts``.
They go to the dispatcher (routing, grouping, silences, inhibition), whose due
notifications are written to the outbox and delivered from there. Alertmanager
receivers need no route: like Prometheus, they get every alert batch as it is
sent, and Alertmanager does the grouping.

Both loops have crash barriers: an error (a locked or full database, a bug) is
logged, counted in ``healwatch_notification_loop_errors_total`` and retried with
backoff; notifications the database refused wait in memory, in order, with the
notification log's changes, until one transaction writes them all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import httpx
import structlog
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric

from agent.config import AgentConfig, ReceiverConfig
from agent.config.timeintervals import intervener
from agent.health.checks import Check
from exporters import outbox as outbox_module
from exporters import silences as silences_module
from exporters.delivery import Outcome, OutcomeKind, Receiver
from exporters.dispatcher import NFLOG_MIGRATIONS, Dispatcher, NotificationLog
from exporters.notification import AlertPayload, Notification, payload_from_alert
from exporters.outbox import Backoff, Outbox, OutboxMetrics
from exporters.receivers import HEALING_GROUP_PREFIX, RECEIVER_MIGRATIONS
from exporters.silences import ACTIVE, Silences, new_silence
from exporters.templating import TemplateSet, template_files
from healers.runner import Notice
from rules.matchers import Matcher, MatchOp
from rules.model import Alert
from rules.rulefile import GroupSpec

log = structlog.get_logger("healwatch")

# The daemon applies these with StateDB.migrate(namespace, migrations) before start().
NOTIFY_MIGRATIONS: dict[str, Sequence[str]] = {
    "outbox": outbox_module.MIGRATIONS,
    **RECEIVER_MIGRATIONS,
    "silences": silences_module.MIGRATIONS,
    "nflog": NFLOG_MIGRATIONS,
}

# Maintenance has no planned end: its silence lasts until maintenance is switched off.
MAINTENANCE_SILENCE_S = 10 * 365 * 86400.0
# Pushes to one Alertmanager receiver share one outbox group, so they arrive in the order they were sent.
PUSH_GROUP_KEY = "alertmanager-push"
# Healers' notices are routed as alerts of this name (with service, incident_id and severity labels).
HEALING_ALERTNAME = "HealwatchHealing"
# Upper bound on one idle wait, so a wall-clock jump is noticed within this.
MAX_IDLE_WAIT_S = 30.0
# `healwatch notify test` sends an alert of this name, and waits at most this long for the receiver's answers.
TEST_ALERTNAME = "HealwatchTestNotification"
TEST_TIMEOUT_S = 30.0
# Retrying after a loop error (a locked or full database): each write may block the loop for the busy
# timeout, so the retries back off, but never so far that a freed disk waits long.
ERROR_RETRY_INITIAL_S = 0.5
ERROR_RETRY_MAX_S = 8.0


def alert_exprs(specs: Iterable[GroupSpec]) -> dict[str, str]:
    """Alert name -> expression of the first alerting rule of that name, for generatorURL."""
    exprs: dict[str, str] = {}
    for group in specs:
        for rule in group.rules:
            if rule.kind == "alert":
                exprs.setdefault(rule.name, rule.expr)
    return exprs


def _slack(config: ReceiverConfig, conn: sqlite3.Connection, templates: TemplateSet) -> Receiver:
    from exporters.receivers.slack import SlackReceiver, SlackSettings, SlackTexts

    slack = config.slack
    assert slack is not None
    texts = SlackTexts(templates.text(config.name, "title", slack.title), templates.text(config.name, "text", slack.text))
    if slack.bot_token is not None:
        from exporters.receivers.slack_app import SlackAppReceiver, SlackAppSettings

        assert slack.channel is not None  # enforced by the config model
        return SlackAppReceiver(config.name, SlackAppSettings(
            bot_token=slack.bot_token.get_secret_value(), channel=slack.channel, username=slack.username,
            api_url=slack.api_url, timeout_s=slack.timeout, texts=texts), conn)
    assert slack.webhook_url is not None
    return SlackReceiver(config.name, SlackSettings(
        webhook_url=slack.webhook_url.get_secret_value(), channel=slack.channel, username=slack.username,
        timeout_s=slack.timeout, texts=texts))


def _webhook(config: ReceiverConfig, conn: sqlite3.Connection, templates: TemplateSet) -> Receiver:
    from exporters.receivers.webhook import WebhookReceiver, WebhookSettings

    hook = config.webhook
    assert hook is not None
    return WebhookReceiver(config.name, WebhookSettings(
        url=hook.url.get_secret_value(),
        bearer_token=hook.bearer_token.get_secret_value() if hook.bearer_token else None,
        bearer_token_file=hook.bearer_token_file,
        headers={k: v.get_secret_value() for k, v in hook.headers.items()},
        hmac_secret=hook.hmac_secret.get_secret_value() if hook.hmac_secret else None,
        max_alerts=hook.max_alerts, timeout_s=hook.timeout))


def _alertmanager(config: ReceiverConfig, conn: sqlite3.Connection, templates: TemplateSet) -> Receiver:
    from exporters.receivers.alertmanager import AlertmanagerReceiver, AlertmanagerSettings

    assert config.alertmanager is not None
    return AlertmanagerReceiver(config.name, AlertmanagerSettings(
        urls=tuple(config.alertmanager.urls), timeout_s=config.alertmanager.timeout))


def _pagerduty(config: ReceiverConfig, conn: sqlite3.Connection, templates: TemplateSet) -> Receiver:
    from exporters.receivers.pagerduty import PagerDutyReceiver, PagerDutySettings

    pd = config.pagerduty
    assert pd is not None
    return PagerDutyReceiver(config.name, PagerDutySettings(
        routing_key=pd.routing_key.get_secret_value() if pd.routing_key else None,
        routing_key_file=pd.routing_key_file, url=pd.url, source=pd.source or socket.getfqdn(),
        severity=pd.severity, event_class=pd.class_, component=pd.component, group=pd.group, details=pd.details,
        timeout_s=pd.timeout))


def _msteams(config: ReceiverConfig, conn: sqlite3.Connection, templates: TemplateSet) -> Receiver:
    from exporters.receivers.msteams import MSTeamsReceiver, MSTeamsSettings

    teams = config.msteams
    assert teams is not None
    return MSTeamsReceiver(config.name, MSTeamsSettings(
        webhook_url=teams.webhook_url.get_secret_value() if teams.webhook_url else None,
        webhook_url_file=teams.webhook_url_file, title=templates.text(config.name, "title", teams.title),
        text=templates.text(config.name, "text", teams.text), timeout_s=teams.timeout))


def _email(config: ReceiverConfig, conn: sqlite3.Connection, templates: TemplateSet) -> Receiver:
    from exporters.receivers.email import EmailReceiver, EmailSettings, EmailTexts

    mail = config.email
    assert mail is not None
    host, _, port = mail.smarthost.rpartition(":")
    return EmailReceiver(config.name, EmailSettings(
        to=mail.to, sender=mail.from_, host=host.strip("[]"), port=int(port), hello=mail.hello,
        username=mail.auth_username, password=mail.auth_password.get_secret_value() if mail.auth_password else None,
        password_file=mail.auth_password_file, require_tls=mail.require_tls,
        insecure_skip_verify=mail.tls_config.insecure_skip_verify, ca_file=mail.tls_config.ca_file,
        timeout_s=mail.timeout,
    ), templates, EmailTexts(
        subject=templates.text(config.name, "title", mail.title),
        text=templates.text(config.name, "text", mail.text),
        html=templates.text(config.name, "html", mail.html or None), send_html=mail.html != "",
        headers={name: templates.parse(config.name, f"headers.{name}", value) for name, value in mail.headers.items()},
    ))


# The receiver registry: config key -> builder. Each builder imports its receiver's module itself, so a
# kind's module (and whatever it imports) is loaded only when the config has a receiver of that kind (issue #14).
RECEIVER_KINDS: dict[str, Callable[[ReceiverConfig, sqlite3.Connection, TemplateSet], Receiver]] = {
    "slack": _slack,
    "webhook": _webhook,
    "alertmanager": _alertmanager,
    "pagerduty": _pagerduty,
    "msteams": _msteams,
    "email": _email,
}


def build_receiver(config: ReceiverConfig, conn: sqlite3.Connection,
                   templates: TemplateSet | None = None) -> Receiver | None:
    """The receiver a config entry describes; None for one without a kind, which discards what it gets.
    Its texts render against ``templates`` (the defaults alone when None)."""
    for kind, build in RECEIVER_KINDS.items():
        if getattr(config, kind) is not None:
            return build(config, conn, templates or TemplateSet())
    return None


def check_why(checks: Mapping[str, Sequence[Check]], labels: Mapping[str, str]) -> dict[str, str]:
    """Why an alert about a service fires: its failing checks' last reasons (``check_reason``) and the last
    lines an exec check printed (``check_output``), already redacted and bounded by the checks; only the
    check named by a ``check`` label when the alert has one."""
    failing = [check for check in checks.get(labels.get("service", ""), ())
               if not check.healthy and labels.get("check", check.name) == check.name]
    if not failing:
        return {}
    if len(failing) == 1:
        reasons = failing[0].failure()
    else:
        reasons = "; ".join(f"{check.name}: {check.failure()}" for check in failing)
    annotations = {"check_reason": reasons}
    outputs = [check.last_result.output for check in failing if check.last_result and check.last_result.output]
    if outputs:
        annotations["check_output"] = outputs[0]
    return annotations


def default_external_url(config: AgentConfig) -> str:
    """Prometheus' default: this host's name and the port the agent listens on."""
    port = config.listen.rpartition(":")[2]
    return f"http://{socket.getfqdn()}:{port}"


class Notifying:
    """Owns the dispatcher, the outbox and the delivery loop; ``start`` starts the loops, ``stop`` ends it all."""

    def __init__(
        self,
        config: AgentConfig,
        conn: sqlite3.Connection,
        clock: Callable[[], float] = time.time,
        *,
        exprs: Callable[[], Mapping[str, str]] = dict,
        random_fraction: Callable[[], float] = random.random,
        why: Callable[[Mapping[str, str]], Mapping[str, str]] = lambda labels: {},
    ) -> None:
        """``why`` gives the annotations that say why an alert with these labels fires (``check_why``)."""
        notify = config.notify
        self.clock = clock
        self.conn = conn
        self.exprs = exprs
        self.why = why
        self.registry = CollectorRegistry(auto_describe=True)
        self.silences = Silences.load(conn)
        # What each receiver was told, kept across restarts so unchanged groups are not notified again.
        self.notification_log = NotificationLog(conn)
        self.config = config
        # Test notifications' ids -> what their receiver answered to each attempt (filled by _Observed).
        self._test_answers: dict[str, list[Outcome]] = {}
        self._test_answered = asyncio.Event()
        self.template_errors = Counter(
            "healwatch_notification_template_errors",
            "Receiver templates that failed when sent; the receiver's default text went out instead.",
            ["receiver"], registry=self.registry,
        )
        self._configure(config)
        self.outbox = Outbox(
            conn, self.receivers, clock=clock, random=random_fraction,
            backoff=Backoff(notify.outbox.backoff_initial, notify.outbox.backoff_max),
            max_age_s=notify.outbox.max_age, metrics=OutboxMetrics(self.registry), log=log,
        )
        self.registry.register(_MutedCollector(self))
        self.loop_errors = Counter(
            "healwatch_notification_loop_errors",
            "Errors in the notification loops (dispatch: writing to the outbox; deliver: reading it), retried.",
            ["loop"], registry=self.registry,
        )
        # Notifications not yet in the outbox (the database refused them), oldest first.
        self._unsaved: list[Notification] = []
        self._retry = {"dispatch": _ErrorBackoff(), "deliver": _ErrorBackoff()}
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._dispatch_wanted = asyncio.Event()
        self._delivery_wanted = asyncio.Event()

    def _configure(self, config: AgentConfig) -> None:
        notify = config.notify
        self.external_url = config.evaluation.external_url or default_external_url(config)
        templates = TemplateSet(template_files(notify.templates), on_error=self._template_failed)
        self.receivers: dict[str, Receiver] = {
            r.name: _Observed(built, self._test_answers, self._test_answered)
            for r in notify.receivers if (built := build_receiver(r, self.conn, templates)) is not None
        }
        self.push_receivers = [r.name for r in notify.receivers if r.alertmanager is not None]
        self._send_resolved = {r.name: r.send_resolved for r in notify.receivers}
        route = notify.build_route()
        self.dispatcher = None if route is None else Dispatcher(
            route, notify.build_inhibitor(), self.silences,
            send_resolved=lambda name: self._send_resolved.get(name, True), external_url=self.external_url,
            notification_log=self.notification_log, intervener=intervener(config.time_intervals),
        )

    def _template_failed(self, receiver: str, template: str, error: str) -> None:
        self.template_errors.labels(receiver).inc()
        log.warning("notification template failed; the default text is sent instead", receiver=receiver,
                    template=template, error=error)

    def reload(self, config: AgentConfig) -> None:
        """Take a reloaded config: new receivers at once; a changed route or inhibition starts new groups."""
        old, dispatcher = self.config, self.dispatcher
        self.config = config
        self._configure(config)
        self.outbox.receivers = dict(self.receivers)
        self.outbox.backoff = Backoff(config.notify.outbox.backoff_initial, config.notify.outbox.backoff_max)
        self.outbox.max_age_s = config.notify.outbox.max_age
        same_tree = (old.notify.route, old.notify.inhibit_rules, old.evaluation.external_url) == (
            config.notify.route, config.notify.inhibit_rules, config.evaluation.external_url)
        if same_tree and dispatcher is not None and self.dispatcher is not None:
            # Keep its groups and what each receiver was already told; the intervals may have changed.
            dispatcher.intervener = self.dispatcher.intervener
            self.dispatcher = dispatcher
        elif dispatcher is not None:
            log.warning("notification routes changed; alert groups start over and may notify again")
        self._dispatch_wanted.set()
        self._delivery_wanted.set()

    async def start(self) -> None:
        """Start dispatching and delivering; undelivered notifications go out first."""
        pending = self.outbox.pending()
        if pending:
            log.info("delivering notifications left in the outbox", pending=pending)
        self._tasks = [
            asyncio.create_task(self._dispatch_loop(), name="notify-dispatch"),
            asyncio.create_task(self._delivery_loop(), name="notify-deliver"),
        ]

    async def stop(self) -> None:
        """Stop at once; whatever is in flight stays in the outbox and is sent after the next start."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.outbox.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def test_receiver(self, name: str, labels: Mapping[str, str],
                            timeout_s: float = TEST_TIMEOUT_S) -> list[ReceiverAnswers]:
        """Send a synthetic firing, then resolved, notification to receiver ``name`` through the outbox and wait
        (at most ``timeout_s``) for its final answers; raises LookupError for a receiver that does not exist."""
        if name not in self.receivers:
            kinds = {r.name for r in self.config.notify.receivers}
            raise LookupError(f"receiver {name!r} discards what it gets: it has no kind" if name in kinds
                              else f"no receiver named {name!r} (receivers: {', '.join(sorted(kinds)) or 'none'})")
        now = self.clock()
        labels = {"alertname": TEST_ALERTNAME, **labels}
        firing = AlertPayload.of(labels, starts_at=now, annotations={
            "summary": f"Test notification to {name} (healwatch notify test)",
            "description": "Sent on request to check this receiver; a resolved one follows."})
        group_key = f"test:{uuid.uuid4().hex}"  # a group of its own: PagerDuty opens and resolves a fresh alert
        sent = [Notification(id=uuid.uuid4().hex, receiver=name, group_key=group_key,
                             group_labels={"alertname": TEST_ALERTNAME}, alerts=(alert,), created_at=now,
                             external_url=self.external_url)
                for alert in (firing, dataclasses.replace(firing, ends_at=now))]
        for notification in sent:
            self._test_answers[notification.id] = []
        try:
            self.outbox.enqueue(sent)
            self._delivery_wanted.set()
            try:
                async with asyncio.timeout(timeout_s):
                    while not all(_final(self._test_answers[n.id]) for n in sent):
                        self._test_answered.clear()
                        await self._test_answered.wait()
            except TimeoutError:
                pass  # reported as not final; the outbox keeps retrying until max_age, as for any notification
            return [ReceiverAnswers(n.status(), tuple(self._test_answers[n.id])) for n in sent]
        finally:
            for notification in sent:
                self._test_answers.pop(notification.id, None)

    def families(self) -> list[Metric]:
        return list(self.registry.collect())

    def ingest(self, alerts: Sequence[Alert]) -> None:
        """Take one batch of alerts the rule engine sends: push it to Alertmanagers, hand it to the dispatcher."""
        now = self.clock()
        exprs = self.exprs()
        external_labels = self.config.evaluation.external_labels
        payloads = [payload_from_alert(a, self.external_url, exprs.get(a.labels.get("alertname"), ""), external_labels)
                    for a in alerts]
        # The reason joins the rule's own annotations (which win on a clash) while the alert fires.
        payloads = [dataclasses.replace(p, annotations={**self.why(p.labels), **p.annotations})
                    if p.status(now) == "firing" else p for p in payloads]
        self._unsaved.extend(self._push(name, payloads, now) for name in self.push_receivers if payloads)
        if self.dispatcher is not None:
            self.dispatcher.ingest(payloads, now)
        self._dispatch_wanted.set()

    def set_maintenance(self, service: str, on: bool) -> None:
        """A service in maintenance has its alerts silenced (and marked so) until maintenance ends."""
        now = self.clock()
        silence_id = f"maintenance-{service}"
        if on:
            self.silences.add(new_silence([Matcher("service", MatchOp.EQ, service)], now, now + MAINTENANCE_SILENCE_S,
                                          "healwatch", f"{service} is in maintenance", silence_id=silence_id), now)
        elif silence_id in {s.id for s in self.silences.list(now, ACTIVE)}:
            self.silences.expire(silence_id, now)
        self._dispatch_wanted.set()

    def notice(self, notice: Notice) -> None:
        """Send a healer's notice now to the receivers its labels route to, unless a silence mutes it."""
        if self.dispatcher is None:
            return
        now = self.clock()
        labels = {"alertname": HEALING_ALERTNAME, "service": notice.service, "incident_id": notice.incident_id,
                  "severity": notice.severity}
        if self.silences.mutes(labels, now):
            return
        incident_url = f"{self.external_url.rstrip('/')}/api/v1/incidents/{notice.incident_id}"
        alert = AlertPayload.of(labels, starts_at=notice.at,
                                annotations={"summary": notice.summary, "incident_url": incident_url})
        receivers = dict.fromkeys(route.options.receiver for route in self.dispatcher.route.match(labels)
                                  if not self.dispatcher.time_muted(route, now))
        self._unsaved.extend(
            Notification(id=uuid.uuid4().hex, receiver=name, group_key=HEALING_GROUP_PREFIX + notice.incident_id,
                         group_labels={"service": notice.service, "incident_id": notice.incident_id},
                         alerts=(alert,), created_at=now, external_url=self.external_url)
            for name in receivers if name in self.receivers
        )
        self._dispatch_wanted.set()

    def _push(self, receiver: str, payloads: list[AlertPayload], now: float) -> Notification:
        return Notification(id=uuid.uuid4().hex, receiver=receiver, group_key=PUSH_GROUP_KEY, group_labels={},
                            alerts=tuple(payloads), created_at=now, external_url=self.external_url)

    def on_alerts(self, alerts: Sequence[Alert]) -> None:
        """The rule engine's hook: ``ingest`` behind a crash barrier, so a bad batch never stops notifications."""
        try:
            self.ingest(alerts)
        except Exception as exc:
            log.error("alerts not taken for notification", error=f"{type(exc).__name__}: {exc}", exc_info=True)

    async def _dispatch_loop(self) -> None:
        while True:
            await self._wait(self._dispatch_wanted, self._guarded("dispatch", self._dispatch))

    async def _delivery_loop(self) -> None:
        while True:
            await self._wait(self._delivery_wanted, self._guarded("deliver", self._deliver))

    def _guarded(self, loop: str, step: Callable[[], float | None]) -> float | None:
        """Run one step of a loop behind a crash barrier; return when to run it next."""
        backoff = self._retry[loop]
        now = self.clock()
        if now < backoff.retry_at:
            return backoff.retry_at
        try:
            until = step()
        except Exception as exc:  # a locked or full database is data waiting, not a reason to stop notifying
            self.loop_errors.labels(loop).inc()
            retry_at = backoff.failed(now)
            log.error("notification loop failed; retrying", loop=loop, retry_in_s=round(retry_at - now, 3),
                      error=f"{type(exc).__name__}: {exc}", exc_info=not isinstance(exc, sqlite3.Error))
            return retry_at
        backoff.succeeded()
        return until

    def _dispatch(self) -> float | None:
        """Flush due groups; write what waits, with the notification log's changes, in one transaction."""
        if self.dispatcher is not None:
            self._unsaved.extend(n for n in self.dispatcher.due(self.clock()) if n.receiver in self.receivers)
        if self._unsaved or self.notification_log.changed():
            self.outbox.enqueue(self._unsaved, also=self.notification_log.write_changes)
            self.notification_log.mark_written()
            if self._unsaved:
                self._unsaved.clear()
                self._delivery_wanted.set()
        return self.dispatcher.next_due() if self.dispatcher else None

    def _deliver(self) -> float | None:
        """Start the attempts due now; each wakes the loop when it ends, so the next of its group follows at once."""
        if self._client is None:
            if self.outbox.next_attempt_at() is None:
                return None  # nothing to send: the client (its CA bundle ~3 MiB) waits for the first notification
            # No pool-wide cap: stuck receivers must not take the connections of healthy ones
            # (the outbox bounds the attempts in flight per receiver).
            self._client = httpx.AsyncClient(limits=httpx.Limits(max_connections=None))
        for task in self.outbox.start_due(self._client):
            task.add_done_callback(lambda _: self._delivery_wanted.set())
        return self.outbox.next_attempt_at()

    async def _wait(self, wanted: asyncio.Event, until: float | None) -> None:
        """Until ``wanted`` is set or the clock reaches ``until``, whichever is first."""
        timeout = MAX_IDLE_WAIT_S if until is None else min(max(until - self.clock(), 0.0), MAX_IDLE_WAIT_S)
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that races the event.
        try:
            async with asyncio.timeout(timeout):
                await wanted.wait()
        except TimeoutError:
            pass
        wanted.clear()


class _ErrorBackoff:
    """When a failing loop step may run again: doubling from ERROR_RETRY_INITIAL_S up to ERROR_RETRY_MAX_S."""

    def __init__(self) -> None:
        self.failures = 0
        self.retry_at = 0.0

    def failed(self, now: float) -> float:
        self.failures += 1
        self.retry_at = now + min(ERROR_RETRY_MAX_S, ERROR_RETRY_INITIAL_S * 2 ** (self.failures - 1))
        return self.retry_at

    def succeeded(self) -> None:
        self.failures, self.retry_at = 0, 0.0


class _MutedCollector:
    """Counts the alerts the dispatcher holds back right now, by reason."""

    def __init__(self, notifying: Notifying) -> None:
        self._notifying = notifying

    def collect(self) -> Iterator[Metric]:
        silenced, inhibited = set(), set()
        time_muted = 0
        dispatcher = self._notifying.dispatcher
        for group in dispatcher.state(self._notifying.clock()) if dispatcher else ():
            time_muted += bool(group.muted_by)
            for view in group.alerts:
                if view.silenced_by:
                    silenced.add(view.alert.fingerprint)
                if view.inhibited_by:
                    inhibited.add(view.alert.fingerprint)
        yield GaugeMetricFamily("healwatch_alerts_silenced", "Alerts muted by a silence now.", value=len(silenced))
        yield GaugeMetricFamily("healwatch_alerts_inhibited", "Alerts muted by an inhibition rule now.",
                                value=len(inhibited))
        yield GaugeMetricFamily("healwatch_alert_groups_time_muted",
                                "Alert groups whose route sends nothing now (mute or active time intervals).",
                                value=time_muted)


@dataclasses.dataclass(frozen=True)
class ReceiverAnswers:
    """What a receiver answered to each attempt at one test notification (``firing`` or ``resolved``)."""

    status: str
    answers: tuple[Outcome, ...]

    @property
    def final(self) -> bool:
        return _final(self.answers)


def _final(answers: Sequence[Outcome]) -> bool:
    return bool(answers) and answers[-1].kind is not OutcomeKind.RETRY


class _Observed:
    """A receiver whose answers to test notifications are recorded, so `notify test` can show them."""

    def __init__(self, inner: Receiver, answers: dict[str, list[Outcome]], answered: asyncio.Event) -> None:
        self.inner = inner
        self.name = inner.name
        self._answers = answers
        self._answered = answered

    @property
    def timeout_s(self) -> float:
        return self.inner.timeout_s

    async def send(self, client: httpx.AsyncClient, notification: Notification, now: float) -> Outcome:
        outcome = await self.inner.send(client, notification, now)
        if notification.id in self._answers:
            self._answers[notification.id].append(outcome)
            self._answered.set()
        return outcome
