"""The incident journal: every playbook run and step, and the healing state that must survive restarts.

Rows are written before and after each step, so an agent killed mid-run leaves an incident
``running`` with its last step ``running``; the next start finds it (``running_incidents``)
and marks it ``interrupted``. Budget counters are the incidents themselves; suspension,
maintenance, "traffic cut by incident X" and the last budget reset live in ``heal_service_state``.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass

from healers.safety import COUNTED_OUTCOMES, RunRecord

# Applied by the agent with StateDB.migrate("healers", MIGRATIONS); append only.
MIGRATIONS = (
    """CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        service TEXT NOT NULL,
        playbook TEXT NOT NULL,
        trigger TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL,
        outcome TEXT NOT NULL,
        dry_run INTEGER NOT NULL DEFAULT 0,
        detail TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX incidents_by_service ON incidents (service, started_at)",
    """CREATE TABLE incident_steps (
        incident_id TEXT NOT NULL REFERENCES incidents (id),
        idx INTEGER NOT NULL,
        action TEXT NOT NULL,
        backend TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL,
        result TEXT NOT NULL,
        error TEXT NOT NULL DEFAULT '',
        output_tail TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (incident_id, idx)
    )""",
    """CREATE TABLE heal_service_state (
        service TEXT PRIMARY KEY,
        suspended_reason TEXT,
        maintenance INTEGER NOT NULL DEFAULT 0,
        traffic_cut_by TEXT
    )""",
    # An operator's reset (or a long enough healthy period): runs that ended before it no longer count.
    "ALTER TABLE heal_service_state ADD COLUMN budget_reset_at REAL",
    # A capture step's output (bounded by its max_bytes), attached to the incident.
    "ALTER TABLE incident_steps ADD COLUMN attachment TEXT NOT NULL DEFAULT ''",
)

OUTPUT_TAIL_BYTES = 1024


@dataclass(frozen=True)
class IncidentRecord:
    id: str
    service: str
    playbook: str
    trigger: str
    started_at: float
    ended_at: float | None
    outcome: str  # running | succeeded | aborted | escalated | blocked | interrupted
    dry_run: bool
    detail: str


@dataclass(frozen=True)
class StepRecord:
    incident_id: str
    index: int
    action: str
    backend: str
    started_at: float
    ended_at: float | None
    result: str  # running | ok | failed | timeout | skipped | dry_run
    error: str
    output_tail: str
    attachment: str = ""


@dataclass(frozen=True)
class ServiceRecord:
    service: str
    suspended_reason: str | None
    maintenance: bool
    traffic_cut_by: str | None
    budget_reset_at: float | None = None


def new_incident_id() -> str:
    return uuid.uuid4().hex[:12]


class Journal:
    """Reads and writes the healers' tables on the agent's state connection (autocommit)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # -- incidents and steps -------------------------------------------------

    def start_incident(
        self, incident_id: str, service: str, playbook: str, trigger: str, now: float, *, dry_run: bool
    ) -> None:
        self.conn.execute(
            "INSERT INTO incidents (id, service, playbook, trigger, started_at, outcome, dry_run) "
            "VALUES (?, ?, ?, ?, ?, 'running', ?)",
            (incident_id, service, playbook, trigger, now, int(dry_run)),
        )

    def finish_incident(self, incident_id: str, now: float, outcome: str, detail: str = "") -> None:
        self.conn.execute(
            "UPDATE incidents SET ended_at = ?, outcome = ?, detail = ? WHERE id = ?",
            (now, outcome, detail, incident_id),
        )

    def record_incident(
        self, incident_id: str, service: str, playbook: str, trigger: str, now: float, outcome: str, detail: str
    ) -> None:
        """An incident that ran no steps, such as a suspension when the budget is exhausted."""
        self.start_incident(incident_id, service, playbook, trigger, now, dry_run=False)
        self.finish_incident(incident_id, now, outcome, detail)

    def start_step(self, incident_id: str, index: int, action: str, backend: str, now: float) -> None:
        self.conn.execute(
            "INSERT INTO incident_steps (incident_id, idx, action, backend, started_at, result) "
            "VALUES (?, ?, ?, ?, ?, 'running')",
            (incident_id, index, action, backend, now),
        )

    def finish_step(
        self, incident_id: str, index: int, now: float, result: str, error: str = "", output_tail: str = "",
        attachment: str = "",
    ) -> None:
        tail = output_tail.encode()[-OUTPUT_TAIL_BYTES:].decode(errors="replace")
        self.conn.execute(
            "UPDATE incident_steps SET ended_at = ?, result = ?, error = ?, output_tail = ?, attachment = ? "
            "WHERE incident_id = ? AND idx = ?",
            (now, result, error, tail, attachment, incident_id, index),
        )

    def next_step_index(self, incident_id: str) -> int:
        row = self.conn.execute(
            "SELECT COALESCE(MAX(idx) + 1, 0) FROM incident_steps WHERE incident_id = ?", (incident_id,)
        ).fetchone()
        return int(row[0])

    def incident(self, incident_id: str) -> IncidentRecord | None:
        row = self.conn.execute(f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return _incident(row) if row else None

    def incidents(self, *, service: str | None = None, limit: int = 50) -> list[IncidentRecord]:
        """The newest incidents first."""
        where, params = ("WHERE service = ?", (service,)) if service else ("", ())
        rows = self.conn.execute(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents {where} ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [_incident(row) for row in rows]

    def steps(self, incident_id: str) -> list[StepRecord]:
        rows = self.conn.execute(
            "SELECT incident_id, idx, action, backend, started_at, ended_at, result, error, output_tail, attachment "
            "FROM incident_steps WHERE incident_id = ? ORDER BY idx",
            (incident_id,),
        ).fetchall()
        return [StepRecord(*row) for row in rows]

    def running_incidents(self) -> list[IncidentRecord]:
        """Incidents a previous agent left unfinished (it was killed or lost power mid-run)."""
        rows = self.conn.execute(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE outcome = 'running' ORDER BY started_at"
        ).fetchall()
        return [_incident(row) for row in rows]

    def mark_interrupted(self, incident_id: str, now: float, detail: str) -> None:
        """Close an unfinished incident and any of its steps still marked running."""
        self.conn.execute(
            "UPDATE incident_steps SET ended_at = ?, result = 'interrupted' WHERE incident_id = ? AND result = 'running'",
            (now, incident_id),
        )
        self.finish_incident(incident_id, now, "interrupted", detail)

    def runs(self, service: str, since: float) -> list[RunRecord]:
        """Past real runs of the service's playbooks that count against its budget.

        A real run is not dry and began at least one step: a budget-exhausted escalation or a
        fleet denial is journaled as a step-less incident that acted on nothing. Runs that
        ended before the service's last budget reset are forgotten, as ``Safety.reset`` does.
        """
        marks = ",".join("?" * len(COUNTED_OUTCOMES))
        rows = self.conn.execute(
            f"SELECT started_at, ended_at, outcome FROM incidents WHERE service = ? AND started_at >= ? "
            f"AND dry_run = 0 AND outcome IN ({marks}) "
            "AND EXISTS (SELECT 1 FROM incident_steps WHERE incident_id = incidents.id) "
            "AND (ended_at IS NULL OR ended_at > COALESCE("
            "(SELECT budget_reset_at FROM heal_service_state WHERE service = incidents.service), 0)) "
            "ORDER BY started_at",
            (service, since, *sorted(COUNTED_OUTCOMES)),
        ).fetchall()
        return [RunRecord(*row) for row in rows]

    # -- per-service state ---------------------------------------------------

    def service_states(self) -> dict[str, ServiceRecord]:
        rows = self.conn.execute(
            "SELECT service, suspended_reason, maintenance, traffic_cut_by, budget_reset_at FROM heal_service_state"
        ).fetchall()
        return {row[0]: ServiceRecord(row[0], row[1], bool(row[2]), row[3], row[4]) for row in rows}

    def service_state(self, service: str) -> ServiceRecord:
        return self.service_states().get(service, ServiceRecord(service, None, False, None))

    def set_suspended(self, service: str, reason: str | None) -> None:
        self._upsert(service, "suspended_reason", reason)

    def reset_budget(self, service: str, now: float) -> None:
        """Lift a suspension and start counting the budget afresh from ``now``, in one write."""
        self.conn.execute(
            "INSERT INTO heal_service_state (service, suspended_reason, budget_reset_at) VALUES (?, NULL, ?) "
            "ON CONFLICT(service) DO UPDATE SET suspended_reason = NULL, budget_reset_at = excluded.budget_reset_at",
            (service, now),
        )

    def set_maintenance(self, service: str, on: bool) -> None:
        self._upsert(service, "maintenance", int(on))

    def set_traffic_cut(self, service: str, incident_id: str | None) -> None:
        """Remember which incident took the service out of rotation (None: it is back in rotation)."""
        self._upsert(service, "traffic_cut_by", incident_id)

    def _upsert(self, service: str, column: str, value: object) -> None:
        self.conn.execute(
            f"INSERT INTO heal_service_state (service, {column}) VALUES (?, ?) "
            f"ON CONFLICT(service) DO UPDATE SET {column} = excluded.{column}",
            (service, value),
        )


_INCIDENT_COLUMNS = "id, service, playbook, trigger, started_at, ended_at, outcome, dry_run, detail"


def _incident(row: tuple[object, ...]) -> IncidentRecord:
    values = list(row)
    values[7] = bool(values[7])
    return IncidentRecord(*values)  # type: ignore[arg-type]
