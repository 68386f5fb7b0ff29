"""Token prices in USD per million tokens. Each provider lists its own in its registration
(``stagbench.agents.models.providers``); a spec can set or override a model's with
``[model_settings."<model>"]`` ``input_per_mtok`` / ``output_per_mtok``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


FREE = Price(0.0, 0.0)
