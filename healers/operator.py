"""An operator cutting or restoring a service's traffic by hand, outside any playbook run."""

from __future__ import annotations

import asyncio

from healers.backends.base import ActionContext, ActionResult, TrafficBackend
from healers.journal import Journal

OPERATOR = "operator"  # the journal's traffic_cut_by for a cut an operator made, not an incident
OPERATOR_TRAFFIC_TIMEOUT_S = 30.0


async def operator_traffic(
    journal: Journal, traffic: TrafficBackend, service: str, cut: bool, pid: int | None
) -> ActionResult:
    """Cut or restore through ``traffic``; the journal holds the operator's cut while it lasts.

    A cut is recorded before acting, as the runner does, so it never goes unrecorded; a failed
    action puts back what the journal said before.
    """
    before = journal.service_state(service).traffic_cut_by
    if cut:
        journal.set_traffic_cut(service, OPERATOR)
    ctx = ActionContext(service, OPERATOR, OPERATOR_TRAFFIC_TIMEOUT_S, pid=pid)
    try:
        async with asyncio.timeout(OPERATOR_TRAFFIC_TIMEOUT_S):
            result = await (traffic.cut(ctx) if cut else traffic.restore(ctx))
    except TimeoutError:
        result = ActionResult(False, f"timed out after {OPERATOR_TRAFFIC_TIMEOUT_S:g}s")
    if not result.ok:
        journal.set_traffic_cut(service, before)
    elif not cut:
        journal.set_traffic_cut(service, None)
    return result
