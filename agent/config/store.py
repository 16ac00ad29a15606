"""The ``store`` section: how long the in-memory series store keeps samples, and how many series it holds."""

from __future__ import annotations

from pydantic import Field, model_validator

from agent.config.types import PositiveDuration, Section


class StoreConfig(Section):
    retention: PositiveDuration = Field(600.0, description="How long samples are kept in memory.")
    max_series: int = Field(100_000, ge=1, description="New series beyond this are refused and counted.")
    max_scraped_series: int | None = Field(
        None, ge=1, description="Series all scrapes together may hold, so the host's, the probes' and the agent's "
        "own always have room (default: 90% of max_series).",
    )

    @model_validator(mode="after")
    def _scraped_within_max(self) -> StoreConfig:
        if self.max_scraped_series is not None and self.max_scraped_series > self.max_series:
            raise ValueError(f"max_scraped_series {self.max_scraped_series} exceeds max_series {self.max_series}")
        return self

    @property
    def scraped_series_limit(self) -> int:
        return self.max_scraped_series or max(1, self.max_series * 9 // 10)
