"""A fleet-wide healing budget kept in etcd v3, through the JSON API of its gRPC gateway.

The keys of a group live under ``healwatch/fleet/<group>/``:

- ``slots/<holder>``: one per holder of a slot, attached to the holder's own lease of
  ``lease_ttl_s``, kept alive by ``renew`` while the playbook runs. An agent that dies
  mid-playbook stops renewing, etcd revokes the lease and the key goes with it: the slot is free.
- ``members/<member>``: one per live agent, attached to a lease of ``member_ttl_s`` that
  ``register`` keeps alive; a percentage limit is taken of how many there are (or of a fixed
  ``fleet_size``), rounded down but never below 1 so a small fleet can still heal.
- ``runs/<id>``: one per slot granted, attached to a lease of ``within_s``: ``max_runs`` of them
  alive means the group has healed enough for now.

Acquiring is optimistic and serializable: one read-only transaction reads the group at revision R,
the agent decides, grants the leases, and a second transaction writes the slot (and run) key only
if no key under ``slots/`` or ``runs/`` was created after R (a compare on the mod revision of every
key under each prefix; slot and run keys are only ever created and deleted, never rewritten). Keys
that vanish meanwhile only free room, so a commit never takes more than the decision saw free. A
lost race answers the group as it is now (the transaction's failure branch) and is decided again,
at most ``TAKE_ATTEMPTS`` times. Members joining or lapsing between the read and the commit are
not guarded: the limit then follows the fleet a moment late, as it would with a read a moment
earlier. ``renew`` is a lease keepalive; ``release`` deletes the slot key, then revokes its lease.

The server's leases decide expiry, so agents' clock skew does not matter. etcd counts leases in
whole seconds: a TTL is rounded up, raised to the server's minimum (1.5 election timeouts: 2 s
with default settings), and expired leases are reaped every 0.5 s, so a dead holder's slot frees
within about ``lease_ttl_s`` + 0.5 s. Each exchange is one HTTP request bounded by the timeout;
any transport error, timeout or error status raises ``FleetUnavailable``: never a hang.
"""

from __future__ import annotations

import asyncio
import base64
import math
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from healers.fleet.base import DEFAULT_TIMEOUT_S, BudgetSettings, BudgetState, FleetUnavailable

KEY_PREFIX = "healwatch/fleet"
TAKE_ATTEMPTS = 10  # each lost race means another agent took a slot: the group is making progress
Json = dict[str, Any]


class EtcdStore:
    """One HTTP client for an etcd endpoint, shared by the budgets of every group (``backend: etcd``)."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        # No proxies from the environment: the store is reached directly, within the timeout.
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout_s, trust_env=False)

    def budget(self, settings: BudgetSettings) -> EtcdBudget:
        """The budget of ``settings.group``, exchanging with the store within this store's timeout."""
        return EtcdBudget(self, settings)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._http.aclose()

    async def call(self, path: str, body: Json, *, missing_ok: bool = False) -> Json:
        """POST ``body`` to a gateway path; with ``missing_ok`` a not-found answer (a lease gone) is ``{}``."""
        where = f"fleet store: {self.url}{path}"
        try:
            # httpx bounds connect, write and read each; this bounds the exchange as a whole.
            async with asyncio.timeout(self.timeout_s * 2):
                response = await self._http.post(path, json=body)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise FleetUnavailable(f"{where}: {type(exc).__name__}: {exc or 'no answer in time'}") from None
        if response.status_code == httpx.codes.NOT_FOUND and missing_ok:
            return {}
        try:
            answer = response.json()
        except ValueError:
            answer = None
        # A streamed answer (keepalive) reports a failure as {"error": {...}} under status 200.
        if not response.is_success or not isinstance(answer, dict) or "error" in answer:
            raise FleetUnavailable(f"{where} answered {response.status_code}: {_error_message(answer, response)}")
        return answer


def _error_message(answer: object, response: httpx.Response) -> str:
    """The gateway's error message ({"error": ..., "message": ...}), else the start of the body."""
    if isinstance(answer, dict):
        error = answer.get("error")
        message = answer.get("message") or (error.get("message") if isinstance(error, dict) else error)
        if message:
            return str(message)
    return response.text[:200] or "no body"


@dataclass(frozen=True)
class _View:
    """A group as read at one revision."""

    revision: int
    slots: dict[str, str]  # holder -> the lease its slot key is attached to
    members: int
    runs: int


@dataclass(frozen=True)
class _Leases:
    """The leases a slot being taken will use: its own, and its run's when runs are limited."""

    slot: str
    run: str | None


class EtcdBudget(BudgetState):
    """The slots of one group: ``acquire``/``renew``/``release`` a holder's lease, ``register`` a live member."""

    def __init__(self, store: EtcdStore, settings: BudgetSettings) -> None:
        super().__init__(settings)
        self._store = store
        self._prefix = f"{KEY_PREFIX}/{settings.group}/"
        # Leases this budget granted, so renewals and releases need no lookup (one is made if missing).
        self._slot_leases: dict[str, str] = {}
        self._member_leases: dict[str, str] = {}

    async def acquire(self, holder_id: str) -> bool:
        """Take a slot for ``holder_id`` (renewing it if already held); False when the budget denies it."""
        view = await self._read()
        granted: _Leases | None = None  # granted once a slot looks free, kept across lost races
        for _ in range(TAKE_ATTEMPTS):
            self._in_use = len(view.slots)
            held = view.slots.get(holder_id)
            if held is not None:
                if await self._keepalive(held):
                    await self._discard(granted)
                    self._slot_leases[holder_id] = held
                    self.last_denial = ""
                    return True
                view = await self._read()  # its lease expired just now: its key goes with it
                continue
            self.last_denial = self._denial(view)
            if self.last_denial:
                await self._discard(granted)
                return False
            granted = granted or await self._grant_leases()
            now = await self._take(holder_id, granted, view.revision)
            if now is None:
                self._slot_leases[holder_id] = granted.slot
                return True
            view = now
        self.last_denial = f"the slots of fleet group {self.group} kept changing over {TAKE_ATTEMPTS} attempts"
        await self._discard(granted)
        return False

    async def renew(self, holder_id: str) -> bool:
        """Extend the lease; False when it had already expired (the slot is lost and may be someone else's)."""
        lease = self._slot_leases.get(holder_id) or await self._lease_of(holder_id)
        alive = lease is not None and await self._keepalive(lease)
        if not alive:
            self._slot_leases.pop(holder_id, None)
        self._in_use = await self._count("slots/")
        return alive

    async def release(self, holder_id: str) -> None:
        """Give the slot back; releasing a slot not held does nothing."""
        self._slot_leases.pop(holder_id, None)
        answer = await self._txn(
            success=[
                {"request_delete_range": {"key": self._key("slots/", holder_id), "prev_kv": True}},
                _count_op(self._prefix + "slots/"),
            ]
        )
        deleted, counted = answer["responses"]
        self._in_use = int(counted["response_range"].get("count", 0))
        for kv in deleted["response_delete_range"].get("prev_kvs", []):
            await self._revoke(kv.get("lease"))  # nothing else is attached to it

    async def register(self, member_id: str) -> int:
        """Announce ``member_id`` as live for ``member_ttl_s``; returns the group's live members."""
        lease = self._member_leases.get(member_id)
        if lease is not None and await self._keepalive(lease):
            return await self._count("members/")
        lease = self._member_leases[member_id] = await self._grant(self.settings.member_ttl_s)
        answer = await self._txn(
            success=[_put_op(self._key("members/", member_id), member_id, lease), _count_op(self._prefix + "members/")]
        )
        return int(answer["responses"][1]["response_range"].get("count", 0))

    # -- deciding ------------------------------------------------------------------

    def _denial(self, view: _View) -> str:
        """Why ``view`` leaves no slot to take, or ``""``."""
        used = len(view.slots)
        settings = self.settings
        if used >= self.limit.of(settings.fleet_size or view.members):
            return f"all {used} slots of fleet group {self.group} are in use"
        if settings.max_runs is not None and view.runs >= settings.max_runs:
            return f"fleet group {self.group} already healed {settings.max_runs} times within {settings.within_s:g}s"
        return ""

    async def _read(self) -> _View:
        return self._view(await self._txn(success=self._view_ops()))

    async def _take(self, holder_id: str, granted: _Leases, revision: int) -> _View | None:
        """Write the slot (and run) keys unless a slot or run appeared after ``revision``.

        Returns None when taken, else the group as it is now.
        """
        guarded = ["slots/", *(["runs/"] if granted.run is not None else [])]
        success = [_put_op(self._key("slots/", holder_id), holder_id, granted.slot)]
        if granted.run is not None:
            success.append(_put_op(self._key("runs/", uuid.uuid4().hex), holder_id, granted.run))
        answer = await self._txn(
            compare=[_unchanged_since(self._prefix + kind, revision) for kind in guarded],
            success=[*success, _count_op(self._prefix + "slots/")],
            failure=self._view_ops(),
        )
        if answer.get("succeeded"):
            self._in_use = int(answer["responses"][-1]["response_range"].get("count", 0))
            return None
        return self._view(answer)

    def _view_ops(self) -> list[Json]:
        slots = self._prefix + "slots/"
        return [
            {"request_range": {"key": _b64(slots), "range_end": _b64(_prefix_end(slots))}},
            _count_op(self._prefix + "members/"),
            _count_op(self._prefix + "runs/"),
        ]

    def _view(self, answer: Json) -> _View:
        slots, members, runs = (response["response_range"] for response in answer["responses"])
        skip = len(self._prefix + "slots/")
        return _View(
            revision=int(answer["header"]["revision"]),
            slots={_text(kv["key"])[skip:]: kv.get("lease", "0") for kv in slots.get("kvs", [])},
            members=int(members.get("count", 0)),
            runs=int(runs.get("count", 0)),
        )

    # -- exchanges -----------------------------------------------------------------

    async def _txn(
        self, *, success: list[Json], compare: list[Json] | None = None, failure: list[Json] | None = None
    ) -> Json:
        return await self._store.call(
            "/v3/kv/txn", {"compare": compare or [], "success": success, "failure": failure or []}
        )

    async def _count(self, kind: str) -> int:
        answer = await self._store.call("/v3/kv/range", _count_op(self._prefix + kind)["request_range"])
        return int(answer.get("count", 0))

    async def _lease_of(self, holder_id: str) -> str | None:
        answer = await self._store.call("/v3/kv/range", {"key": self._key("slots/", holder_id)})
        kvs = answer.get("kvs", [])
        return str(kvs[0].get("lease", "0")) if kvs else None

    async def _grant(self, ttl_s: float) -> str:
        answer = await self._store.call("/v3/lease/grant", {"TTL": max(1, math.ceil(ttl_s))})
        return str(answer["ID"])

    async def _grant_leases(self) -> _Leases:
        if self.settings.max_runs is None:
            return _Leases(await self._grant(self.lease_ttl_s), None)
        slot, run = await asyncio.gather(self._grant(self.lease_ttl_s), self._grant(self.settings.within_s))
        return _Leases(slot, run)

    async def _keepalive(self, lease: str) -> bool:
        """Renew ``lease``; False when it has expired (etcd answers no TTL for it)."""
        answer = await self._store.call("/v3/lease/keepalive", {"ID": lease})
        return int(answer.get("result", {}).get("TTL", 0)) > 0

    async def _revoke(self, lease: str | None) -> None:
        if lease is not None and lease != "0":
            await self._store.call("/v3/lease/revoke", {"ID": lease}, missing_ok=True)

    async def _discard(self, granted: _Leases | None) -> None:
        """Revoke leases granted for a slot not taken after all (they would expire anyway)."""
        if granted is not None:
            await self._revoke(granted.slot)
            await self._revoke(granted.run)

    def _key(self, kind: str, name: str) -> str:
        return _b64(f"{self._prefix}{kind}{name}")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _text(encoded: str) -> str:
    return base64.b64decode(encoded).decode()


def _prefix_end(prefix: str) -> str:
    """The first key after every key starting with ``prefix`` (its last character incremented)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _count_op(prefix: str) -> Json:
    return {"request_range": {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix)), "count_only": True}}


def _put_op(key: str, value: str, lease: str) -> Json:
    return {"request_put": {"key": key, "value": _b64(value), "lease": lease}}


def _unchanged_since(prefix: str, revision: int) -> Json:
    """True when every key under ``prefix`` was last written at ``revision`` or before (true when none)."""
    return {
        "key": _b64(prefix), "range_end": _b64(_prefix_end(prefix)),
        "target": "MOD", "result": "LESS", "mod_revision": str(revision + 1),
    }
