"""Token prices in USD per million tokens. Extend with ``[model_settings."<model>"]``
``input_per_mtok`` / ``output_per_mtok`` in a spec; local and scripted models cost nothing."""

from __future__ import annotations

from dataclasses import dataclass

from agents.models.settings import ModelSettings


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


FREE = Price(0.0, 0.0)

# Public list prices known when this table was written; newer models are unpriced until you
# add them (the estimate says so). Check your provider's page before you budget.
PRICES: dict[str, Price] = {
    "openai/gpt-4o": Price(2.50, 10.00),
    "openai/gpt-4o-mini": Price(0.15, 0.60),
    "openai/gpt-4.1": Price(2.00, 8.00),
    "openai/gpt-4.1-mini": Price(0.40, 1.60),
    "openai/gpt-4.1-nano": Price(0.10, 0.40),
    "anthropic/claude-haiku-4-5": Price(1.00, 5.00),
    "anthropic/claude-sonnet-4-5": Price(3.00, 15.00),
    "anthropic/claude-opus-4-5": Price(5.00, 25.00),
}

#: providers that run on your own hardware or are simulated: free
FREE_PROVIDERS = ("local", "mock", "replay", "vllm", "vllm-offline", "scripted", "fault")


def price_for(model: str, settings: ModelSettings | None = None) -> Price | None:
    """The price of ``model``; None when it is unknown (cost is then reported as unpriced)."""
    if settings and settings.input_per_mtok is not None and settings.output_per_mtok is not None:
        return Price(settings.input_per_mtok, settings.output_per_mtok)
    if model in PRICES:
        return PRICES[model]
    if model.split("/", 1)[0] in FREE_PROVIDERS:
        return FREE
    return None
