"""A fleet-wide healing budget kept in Redis: leased slots per group, live members, a run-rate window.

Each heal that disrupts a service first takes a slot of its group. A slot is a lease: an entry
in a sorted set scored by its expiry, renewed by its holder while the playbook runs, so an agent
that dies mid-playbook frees its slot within ``lease_ttl_s``. Acquiring is one Lua script, so
the check and the take are atomic across the fleet; it uses the server's clock (``TIME``) so
agents' clock skew does not matter. A percentage limit is taken of the group's live members (or
of a fixed ``fleet_size``), rounded down but never below 1 so a small fleet can still heal.
Any store failure raises ``FleetUnavailable`` within about the socket timeout; never a hang.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError
from redis.retry import Retry

from healers.fleet.base import DEFAULT_TIMEOUT_S, BudgetSettings, BudgetState, FleetUnavailable

KEY_PREFIX = "healwatch:fleet"
Client = aioredis.Redis

# KEYS: slots, members, runs. ARGV: holder, lease_ms, limit, percent, fleet_size, max_runs, within_ms, run_id.
# Returns {verdict, slots in use}: 1 granted (or already held: renewed), 0 group full, -1 run rate used up.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease, within = tonumber(ARGV[2]), tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - within)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
  return {1, redis.call('ZCARD', KEYS[1])}
end
local limit = tonumber(ARGV[3])
local percent = tonumber(ARGV[4])
if percent >= 0 then
  local size = tonumber(ARGV[5])
  if size <= 0 then size = redis.call('ZCARD', KEYS[2]) end
  limit = math.max(1, math.floor(size * percent / 100))
end
local used = redis.call('ZCARD', KEYS[1])
if used >= limit then return {0, used} end
local max_runs = tonumber(ARGV[6])
if max_runs > 0 and redis.call('ZCARD', KEYS[3]) >= max_runs then return {-1, used} end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('ZADD', KEYS[3], now, ARGV[8])
redis.call('PEXPIRE', KEYS[1], lease * 2)
redis.call('PEXPIRE', KEYS[3], within + 1000)
return {1, used + 1}
"""

# KEYS: slots. ARGV: holder, lease_ms. Returns {1 renewed | 0 lost, slots in use}.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {0, redis.call('ZCARD', KEYS[1])} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return {1, redis.call('ZCARD', KEYS[1])}
"""

# KEYS: slots. ARGV: holder. Returns the slots still in use.
_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('ZCARD', KEYS[1])
"""

# KEYS: members. ARGV: member, ttl_ms. Returns the live members.
_REGISTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
"""


def connect(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Client:
    """A client that fails fast: short connect/read timeouts and no retries (the caller retries later)."""
    client: Client = aioredis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False, single_connection_client=False,
    )
    return client


class RedisBudget(BudgetState):
    """The slots of one group: ``acquire``/``renew``/``release`` a holder's lease, ``register`` a live member."""

    def __init__(self, client: Client, settings: BudgetSettings, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(settings)
        self.timeout_s = timeout_s
        self._keys = tuple(f"{KEY_PREFIX}:{{{settings.group}}}:{kind}" for kind in ("slots", "members", "runs"))
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._register = client.register_script(_REGISTER)

    async def acquire(self, holder_id: str) -> bool:
        """Take a slot for ``holder_id`` (renewing it if already held); False when the budget denies it."""
        limit, settings = self.limit, self.settings
        verdict, used = await self._call_pair(
            self._acquire, list(self._keys),
            [holder_id, _ms(self.lease_ttl_s), limit.count, -1 if limit.percent is None else limit.percent,
             settings.fleet_size or 0, settings.max_runs or 0, _ms(settings.within_s),
             f"{holder_id}:{uuid.uuid4().hex}"],
        )
        self._in_use = used
        if verdict == 1:
            self.last_denial = ""
            return True
        if verdict == 0:
            self.last_denial = f"all {used} slots of fleet group {self.group} are in use"
        else:
            self.last_denial = (
                f"fleet group {self.group} already healed {settings.max_runs} times within {settings.within_s:g}s"
            )
        return False

    async def renew(self, holder_id: str) -> bool:
        """Extend the lease; False when it had already expired (the slot is lost and may be someone else's)."""
        renewed, used = await self._call_pair(self._renew, [self._keys[0]], [holder_id, _ms(self.lease_ttl_s)])
        self._in_use = used
        return renewed == 1

    async def release(self, holder_id: str) -> None:
        """Give the slot back; releasing a slot not held does nothing."""
        self._in_use = await self._call(self._release, [self._keys[0]], [holder_id])

    async def register(self, member_id: str) -> int:
        """Announce ``member_id`` as live for ``member_ttl_s``; returns the group's live members."""
        return await self._call(self._register, [self._keys[1]], [member_id, _ms(self.settings.member_ttl_s)])

    async def _call(self, script: AsyncScript, keys: list[str], args: list[str | int | float]) -> int:
        """The script's integer reply (``_call_pair`` for the scripts that answer two)."""
        return int(await self._run(script, keys, args))

    async def _call_pair(self, script: AsyncScript, keys: list[str], args: list[str | int | float]) -> tuple[int, int]:
        first, second = await self._run(script, keys, args)
        return int(first), int(second)

    async def _run(self, script: AsyncScript, keys: list[str], args: list[str | int | float]) -> Any:
        try:
            # The socket timeouts bound each exchange; this bounds connect + NOSCRIPT reload as a whole.
            async with asyncio.timeout(self.timeout_s * 3):
                return await script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise FleetUnavailable(f"fleet store: {type(exc).__name__}: {exc}") from None


class RedisStore:
    """One Redis client shared by the budgets of every group (the ``FleetStore`` for ``backend: redis``)."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self.client = connect(url, timeout_s)

    def budget(self, settings: BudgetSettings) -> RedisBudget:
        """The budget of ``settings.group``, exchanging with the store within this store's timeout."""
        return RedisBudget(self.client, settings, self.timeout_s)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)
