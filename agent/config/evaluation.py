"""The ``evaluation`` section: how rule groups are evaluated."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from agent.config.types import Duration, PositiveDuration, Section


class EvaluationConfig(Section):
    """How rule groups are evaluated; names follow Prometheus' settings and flags."""

    interval: PositiveDuration = Field(15.0, description="Default evaluation interval of rule groups.")
    external_labels: dict[Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")], str] = Field(
        {}, description="Labels added to every alert that lacks them before it is routed or pushed to Alertmanager "
        "(Prometheus' global external_labels); the alert's own label wins.",
    )
    external_url: str = Field("", description="Used for generatorURL and $externalURL in templates.")
    lookback_delta: PositiveDuration = Field(300.0, description="How far back an instant selector looks.")
    for_outage_tolerance: PositiveDuration = Field(3600.0, description="Max downtime for which `for` state is restored.")
    for_grace_period: Duration = Field(600.0, description="Minimum `for` left after a restore.")
    resend_delay: PositiveDuration = Field(60.0, description="Re-send firing alerts this often.")
    query_max_samples: int = Field(
        50_000_000, gt=0, description="Samples and points one rule's query may load or compute (Prometheus' "
        "--query.max-samples); a rule over it fails its evaluation with Prometheus' error.")
    # Rules run on the agent's event loop, so Prometheus' 2m would stall checks and healing that long.
    query_timeout: PositiveDuration = Field(
        10.0, description="A rule's query (or a template's) is stopped after this and the rule fails its evaluation.")
