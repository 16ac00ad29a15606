"""The daemon: wires store, jobs, exposition and HTTP server from a config on one asyncio loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import structlog
from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from agent import __version__
from agent.collectors.base import samples_of
from agent.collectors.process import ProcessScanner, ProcessTracker
from agent.collectors.scrape import ScrapeResult
from agent.config import AgentConfig, load_config
from agent.healing import Healing, StoreEvaluator
from agent.health.checks import Check
from agent.http.api import add_api_routes
from agent.http.auth import api_token, protect
from agent.http.server import HttpServer
from agent.http.statuspage import OPENAPI_PATHS as STATUS_PAGE_PATHS
from agent.http.statuspage import add_status_page
from agent.httpclient import HttpClient, new_http_client
from agent.looplag import LoopLag
from agent.notifying import NOTIFY_MIGRATIONS, Notifying, alert_exprs, check_why
from agent.schedule.jobs import Job, JobSet, build_jobs
from agent.schedule.arrival import wait_bound_s
from agent.schedule.phase import PhasedInterval, grid_stamp_ms, offset_of
from agent.schedule.rules import (
    RuleJob,
    build_rule_jobs,
    file_stamps,
    retention_needed_s,
)
from agent.schedule.rulefiles import rule_files_of, unmatched_rule_globs
from agent.sdnotify import SystemdNotifier
from agent.selfmetrics import SelfMetrics
from agent.state import AGENT_MIGRATIONS, StateDB
from exporters.exposition import Exposition, Rendered
from exporters.silences import Silences
from healers.events import CheckStateChanged
from healers.journal import MIGRATIONS as HEALERS_MIGRATIONS
from healers.journal import Journal
from healers.runtime import HealingRuntime
from rules.errors import SourceError
from rules.group import RuleGroup
from rules.model import Alert
from rules.persistence import MIGRATIONS as RULES_MIGRATIONS
from rules.promql import Engine
from rules.rulefile import GroupSpec, load_rule_files
from rules.store import SeriesStore

log = structlog.get_logger("healwatch")

# The agent's own families are handed to /metrics after jobs change something, at most this often:
# a scrape renders what changed, and no scraper needs fresher than 1 s.
MIN_RENDER_INTERVAL_S = 1.0
RULE_FILE_POLL_S = 2.0


class Agent:
    """One running agent; ``run`` serves until ``stop`` (or SIGTERM/SIGINT), SIGHUP reloads."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        config_path: str | None = None,
        listen: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.listen_override = listen
        self.clock = clock
        # Scrape jobs (sources "scrape:<service>") share one pool, so a huge target cannot starve the rest.
        self.store = SeriesStore(retention_s=config.store.retention, max_series=config.store.max_series,
                                 pool_limits={"scrape": config.store.scraped_series_limit})
        evaluation = config.evaluation
        self.engine = Engine(lookback_s=evaluation.lookback_delta, max_samples=evaluation.query_max_samples,
                             timeout_s=evaluation.query_timeout)
        self.rule_files: list[str] = []
        self.rule_specs: list[GroupSpec] = []
        self._rule_stamps: dict[str, tuple[int, int] | None] = {}
        self.config_errors: list[str] = []
        self.rule_errors: list[str] = []
        self.started_at = clock()
        self.exposition = Exposition(on_render=self._on_render)
        self.metrics = SelfMetrics(lambda: self.store)
        self.loop_lag = LoopLag(self.metrics.registry)
        self.jobset = JobSet()
        self.server: HttpServer | None = None
        self.notifying: Notifying | None = None
        self.healing: Healing | None = None
        self.state: StateDB | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._stopping = asyncio.Event()
        self._render_wanted = asyncio.Event()
        self._first_render_done = False
        self._host_landed = False
        self._render_problems: tuple[str, ...] = ()
        self._tasks: list[asyncio.Task[None]] = []
        self._running_jobs: dict[str, asyncio.Task[None]] = {}  # job name -> its run in flight
        self._http: HttpClient | None = None
        self._insecure_http: HttpClient | None = None
        # One scan of all processes serves every service matched by name or command line.
        self._scanner = ProcessScanner(max_age_s=1.0)
        # Under systemd (Type=notify): READY=1 once the first host collection landed, watchdog pings.
        self.systemd = SystemdNotifier()
        self._systemd_ready_sent = False
        # "agent stopped" answers "agent started": a failed start is the caller's error to log, not a stop.
        self._started = False

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Start everything; raise SourceError if the rule files are invalid."""
        self.rule_files, self.rule_specs = self._load_rules(self.config)
        self._rule_stamps = file_stamps(self.rule_files)
        self.state = StateDB(self.config.state_path)
        self.state.migrate("agent", AGENT_MIGRATIONS)
        self.state.migrate("rules", RULES_MIGRATIONS)
        for namespace, migrations in NOTIFY_MIGRATIONS.items():
            self.state.migrate(namespace, migrations)
        self.state.migrate("healers", HEALERS_MIGRATIONS)
        self.state.conn.execute(
            "INSERT INTO agent_starts (started_at, version, config_path) VALUES (?, ?, ?)",
            (self.clock(), __version__, self.config_path),
        )
        self._http = new_http_client()
        self._insecure_http = new_http_client(verify=False)
        self.metrics.reload_successful.set(1)
        self.metrics.reload_timestamp.set(self.clock())
        self.server = self._http_server()
        await self.server.start()  # before any job runs: a busy port fails the start at once
        self._scheduler = AsyncIOScheduler(timezone=timezone.utc)
        self._scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        self._scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES)
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        self._scheduler.start()
        self.notifying = Notifying(self.config, self.state.conn, self.clock,
                                   exprs=lambda: alert_exprs(self.rule_specs),
                                   why=lambda labels: check_why(self.jobset.checks, labels))
        await self.notifying.start()
        self._schedule(self._build_jobset())
        self.healing = Healing(self.config, self.state.conn, self.jobset.checks, clock=self.clock,
                               notify=self.notifying.notice, evaluate=StoreEvaluator(self.engine, self.store))
        await self.healing.start()
        self._scheduler.add_job(
            self._housekeep, "interval", seconds=self.config.interval, id="housekeeping",
            max_instances=1, coalesce=True,
        )
        self._scheduler.add_job(
            self._watch_rule_files, "interval", seconds=RULE_FILE_POLL_S, id="rule-files",
            max_instances=1, coalesce=True,
        )
        self._tasks.append(asyncio.create_task(self._render_loop()))
        self._tasks.append(asyncio.create_task(self.loop_lag.run(), name="loop-lag"))
        self._tasks.append(asyncio.create_task(self.systemd.ping_watchdog(), name="systemd-watchdog"))
        if "host" not in self.jobset.jobs:
            self._host_landed = True
            self._notify_ready()
        self._render_wanted.set()
        gc.freeze()  # what start-up built lives as long as the agent: the collector need not walk it again
        self._started = True
        log.info("agent started", listen=f"{self._listen_address()[0]}:{self.server.port}",
                 config=self.config_path or "<built-in>", services=len(self.config.services),
                 jobs=len(self.jobset.jobs))

    async def stop(self) -> None:
        self.systemd.stopping()
        if self.healing is not None:
            await self.healing.stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        for task in [*self._tasks, *self._running_jobs.values()]:
            task.cancel()
        await asyncio.gather(*self._running_jobs.values(), return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.stop()
        if self.notifying is not None:
            await self.notifying.stop()
        for client in (self._http, self._insecure_http):
            if client is not None:
                await client.aclose()
        if self.state is not None:
            self.state.close()
        self.systemd.close()
        if self._started:
            log.info("agent stopped")

    async def run(self) -> None:
        """Start, serve until a stop is requested, then stop (within about a second)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        try:
            await self.start()
            await self._stopping.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            async with asyncio.timeout(1.5):
                await self.stop()

    def _http_server(self) -> HttpServer:
        api = self.config.api
        ssl_context = None
        if api.tls is not None:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(api.tls.cert_file, api.tls.key_file)
        host, port = self._listen_address()
        server = HttpServer(
            self.exposition, self.ready, host, port,
            middlewares=[protect(api, api_token(api))], max_body_bytes=api.max_body_bytes, ssl_context=ssl_context,
            max_connections=api.max_connections, idle_timeout_s=api.idle_timeout,
        )
        add_api_routes(server.app, self, more_paths=STATUS_PAGE_PATHS)
        add_status_page(server.app, self)
        return server

    def set_maintenance(self, service: str, on: bool) -> None:
        """Maintenance stops healing the service and silences its alerts, until switched off."""
        if self.healing is not None:
            self.healing.runtime.set_maintenance(service, on)
        if self.notifying is not None:
            self.notifying.set_maintenance(service, on)

    def in_maintenance(self, service: str) -> bool:
        return self.healing is not None and self.healing.runtime.in_maintenance(service)

    # -- what the HTTP API reads and acts on (agent.http.view) ------------

    def rule_groups(self) -> list[RuleGroup]:
        return [job.group for job in self.jobset.jobs.values() if isinstance(job, RuleJob)]

    def service_checks(self, service: str) -> list[Check]:
        return self.jobset.checks.get(service, [])

    def service_process(self, service: str) -> ProcessTracker | None:
        return self.jobset.process_tracker(service)

    def last_scrape(self, service: str) -> ScrapeResult | None:
        return self.jobset.last_scrape(service)

    def journal(self) -> Journal | None:
        return None if self.healing is None else self.healing.runtime.journal

    def healing_control(self) -> HealingRuntime | None:
        return None if self.healing is None else self.healing.runtime

    def silences(self) -> Silences | None:
        return None if self.notifying is None else self.notifying.silences

    def receiver_tester(self) -> Notifying | None:
        return self.notifying

    def _reload_on_signal(self) -> None:
        self.reload()

    def request_stop(self) -> None:
        log.info("stop requested")
        self._stopping.set()

    def reload(self) -> list[str]:
        """Re-read the config and rule files; on any error keep running the current ones and return the errors."""
        if self.config_path is None:
            log.info("reload requested, but the agent runs on the built-in config; nothing to do")
            return []
        try:
            new = load_config(self.config_path)
            rule_files, rule_specs = self._load_rules(new)
        except SourceError as exc:
            return self._config_reload_failed([str(issue) for issue in exc.issues])
        except Exception as exc:  # crash barrier: a reload fails visibly, it never escapes the signal handler
            log.exception("config reload crashed", error_type=type(exc).__name__)
            return self._config_reload_failed([f"{self.config_path}: reload crashed ({type(exc).__name__})"])
        restart_only = ("listen", "state_path", "store", "api")
        for setting in restart_only:
            if getattr(new, setting) != getattr(self.config, setting):
                log.warning("setting changes take effect on restart", setting=setting)
        self.config = new.model_copy(update={setting: getattr(self.config, setting) for setting in restart_only})
        self.rule_files, self.rule_specs = rule_files, rule_specs
        self._rule_stamps = file_stamps(rule_files)
        if self.notifying is not None:
            self.notifying.reload(self.config)
        self._schedule(self._build_jobset())
        if self.healing is not None:
            self._tasks = [task for task in self._tasks if not task.done()]
            self._tasks.append(asyncio.create_task(self.healing.reconfigure(self.config, self.jobset.checks)))
        self.metrics.reload_successful.set(1)
        self.metrics.reload_timestamp.set(self.clock())
        self.config_errors, self.rule_errors = [], []
        log.info("config reloaded", config=self.config_path, jobs=len(self.jobset.jobs))
        return []

    def _config_reload_failed(self, errors: list[str]) -> list[str]:
        self.metrics.reload_successful.set(0)
        self._render_wanted.set()
        self.config_errors = errors
        for issue in errors:
            log.error("config reload failed; keeping the running config", error=issue)
        return errors

    # -- readiness ---------------------------------------------------------

    def ready(self, service: str | None) -> bool | None:
        """The agent is ready once /metrics serves its first host collection; a service while its checks pass."""
        if service is None:
            return self._first_render_done and self._host_landed
        ready = self.jobset.ready(service)
        if ready is None or self.healing is None:
            return ready
        return ready and self.healing.readiness(service)

    # -- scheduling --------------------------------------------------------

    def _load_rules(self, config: AgentConfig) -> tuple[list[str], list[GroupSpec]]:
        config_dir = Path(self.config_path).parent if self.config_path else Path.cwd()
        files = rule_files_of(config, config_dir)
        for pattern in unmatched_rule_globs(config, config_dir):
            log.warning("rule_files pattern matches no file yet", pattern=pattern, config=self.config_path)
        return files, load_rule_files(files, had_groups={spec.file for spec in self.rule_specs})

    def _build_jobset(self) -> JobSet:
        """Collector, check and scrape jobs of the config plus a job per rule group, keeping unchanged ones."""
        assert self._http is not None and self._insecure_http is not None
        jobset = build_jobs(
            self.config, http_client=self._http, insecure_http_client=self._insecure_http,
            on_check_change=self._on_check_change, scanner=self._scanner, previous=self.jobset,
        )
        phases = {name: (offset_of(name, job.interval_s), job.interval_s) for name, job in jobset.jobs.items()}
        rule_jobs = build_rule_jobs(
            self.rule_specs, engine=self.engine, store=self.store, evaluation=self.config.evaluation,
            state=self.state.conn if self.state else None, on_alerts=self._on_alerts, previous=self.jobset.jobs,
            phases=phases,
        )
        jobset.jobs.update(rule_jobs)
        needed = retention_needed_s((job.group for job in rule_jobs.values()), self.config.evaluation.lookback_delta)
        self.store.retention_s = max(self.config.store.retention, needed)
        return jobset

    def _watch_rule_files(self) -> None:
        """Reload the rules when a rule file changed, appeared or vanished; keep the old ones on errors."""
        config_dir = Path(self.config_path).parent if self.config_path else Path.cwd()
        try:
            files = rule_files_of(self.config, config_dir)
        except SourceError:
            files = self.rule_files
        stamps = file_stamps(files)
        if stamps == self._rule_stamps:
            return
        self._rule_stamps = stamps
        try:
            specs = load_rule_files(files, had_groups={spec.file for spec in self.rule_specs})
        except SourceError as exc:
            self._rules_reload_failed([str(issue) for issue in exc.issues])
            return
        except Exception as exc:  # crash barrier, as for a config reload
            log.exception("rule reload crashed", error_type=type(exc).__name__)
            self._rules_reload_failed([f"rule reload crashed ({type(exc).__name__})"])
            return
        self.rule_errors = []
        self.rule_files, self.rule_specs = files, specs
        self._schedule(self._build_jobset())
        self.metrics.rules_reload_successful.set(1)
        log.info("rules reloaded", files=len(files), groups=len(specs))

    def _rules_reload_failed(self, errors: list[str]) -> None:
        self.metrics.rules_reload_successful.set(0)
        self._render_wanted.set()
        self.rule_errors = errors
        for issue in errors:
            log.error("rule reload failed; keeping the running rules", error=issue)

    def _schedule(self, jobset: JobSet) -> None:
        assert self._scheduler is not None
        now_ms = self._now_ms()
        for name, old in self.jobset.jobs.items():
            if jobset.jobs.get(name) is not old:
                self._scheduler.remove_job(name)
            if name not in jobset.jobs:
                self.store.end_source(name, now_ms)
                self.exposition.remove(name)
        for name, job in jobset.jobs.items():
            if self.jobset.jobs.get(name) is job:
                continue
            offset_s = job.offset_s if isinstance(job, RuleJob) else None
            self._scheduler.add_job(
                self._run_job, PhasedInterval(name, job.interval_s, offset_s), args=[job], id=name,
                max_instances=1, coalesce=True, misfire_grace_time=None,
            )
        self.jobset = jobset

    async def _run_job(self, job: Job) -> None:
        """A crash barrier: a failing job is logged and counted, and never stops the others."""
        task = asyncio.current_task()
        assert task is not None
        self._running_jobs[job.name] = task
        try:
            if isinstance(job, RuleJob):
                await self._feeders_landed(job)
            await self._observe(job)
        except asyncio.CancelledError:
            pass  # the agent is stopping; the job ends here
        finally:
            if self._running_jobs.get(job.name) is task:  # a reload may have started the job's successor
                del self._running_jobs[job.name]

    async def _feeders_landed(self, job: RuleJob) -> None:
        """Evaluate on arrival: the group's tick follows its feeders' (agent.schedule.arrival); wait, within a
        bound, for those still in flight, so the evaluation reads the samples they are fetching."""
        in_flight = [task for name, task in self._running_jobs.items() if name in job.feeders]
        if in_flight:
            await asyncio.wait(in_flight, timeout=wait_bound_s(job.interval_s))

    async def _observe(self, job: Job) -> None:
        now = self.clock()
        started = time.perf_counter()
        try:
            observation = await job.observe(now)
        except Exception as exc:
            self.metrics.collector_errors.labels(job.name).inc()
            log.error("job failed", job=job.name, error=f"{type(exc).__name__}: {exc}", exc_info=True)
            return
        finally:
            self.metrics.collector_duration.labels(job.name).set(time.perf_counter() - started)
        if self.jobset.jobs.get(job.name) is not job:
            return  # removed or replaced by a reload while it ran
        offset_s = job.offset_s if isinstance(job, RuleJob) else offset_of(job.name, job.interval_s)
        self.store.ingest(job.name, observation.store_samples(), grid_stamp_ms(now, job.interval_s, offset_s))
        self.exposition.update(job.name, observation.families)
        self._render_wanted.set()
        if job.name == "host":
            self._host_landed = True
            self._notify_ready()

    def _notify_ready(self) -> None:
        if not self._systemd_ready_sent:
            self._systemd_ready_sent = True
            self.systemd.ready(f"serving on port {self.server.port if self.server else '?'}")

    async def _render_loop(self) -> None:
        """Keep the agent's own families in /metrics current; the first pass renders, so readiness means servable.

        Scrapes render what they ask for (``Exposition.response``); this loop only hands over
        the agent's own families after jobs changed something, at most once a second.
        """
        while True:
            await self._render_wanted.wait()
            self._render_wanted.clear()
            self.exposition.update("self", self.metrics.families())
            if self.notifying is not None:
                self.exposition.update("notify", self.notifying.families())
            if self.healing is not None:
                self.exposition.update("healing", self.healing.families())
            if not self._first_render_done:
                self._on_render(await asyncio.to_thread(self.exposition.render))
                self._first_render_done = True
            await asyncio.sleep(MIN_RENDER_INTERVAL_S)

    def _on_render(self, rendered: Rendered) -> None:
        self.metrics.render_duration.set(rendered.duration_s)
        self.metrics.render_problems.set(len(rendered.problems))
        if rendered.problems != self._render_problems:
            for problem in rendered.problems:
                log.warning("left out of /metrics", problem=problem)
            self._render_problems = rendered.problems

    def _housekeep(self) -> None:
        """Feed the agent's own metrics to the store (rules may watch them), drop old samples and silences."""
        now = self.clock()
        families = self.metrics.families()
        if self.healing is not None:
            families += self.healing.families()
        if self.notifying is not None:
            families += self.notifying.families()
            self.notifying.silences.collect_garbage(now, self.config.notify.silences.retention)
        self.store.ingest("self", list(samples_of(families)), round(now * 1000))
        self.store.evict(round(now * 1000))

    def _on_alerts(self, alerts: list[Alert]) -> None:
        """Alerts due for sending go to the notifiers, and to healing for playbooks an alert triggers."""
        if self.notifying is not None:
            self.notifying.on_alerts(alerts)
        if self.healing is not None:
            self.healing.runtime.on_alerts(alerts)

    def _on_check_change(self, event: CheckStateChanged) -> None:
        """The check has logged its change (health.checks); healing hears of it."""
        if self.healing is not None:
            self.healing.runtime.on_check_changed(event)

    def _on_submitted(self, event: JobSubmissionEvent) -> None:
        if event.scheduled_run_times:
            lag = datetime.now(timezone.utc) - event.scheduled_run_times[-1]
            self.metrics.scheduler_lag.observe(max(lag.total_seconds(), 0.0))

    def _on_skipped(self, event: JobEvent) -> None:
        self.metrics.scheduler_skipped.labels(event.job_id).inc()
        log.warning("job still running at its next start; run skipped", job=event.job_id)

    def _listen_address(self) -> tuple[str, int]:
        host, _, port = (self.listen_override or self.config.listen).rpartition(":")
        return host.strip("[]"), int(port)

    def _now_ms(self) -> int:
        return round(self.clock() * 1000)
