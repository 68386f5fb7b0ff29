"""How LLM agents are prompted and sampled; part of every trial's identity."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AgentSettings(BaseModel):
    """LLM agent settings from the spec's ``[agents]`` table (scripted agents ignore them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float | None = 0.7
    max_tokens: int = Field(256, ge=1)
    top_p: float | None = None
    timeout_s: float = Field(60.0, gt=0)
    max_reasks: int = Field(2, ge=0)
    prompt_variant: str = "default"
    reasoning: bool = True
    defence: Literal["none", "delimit"] = "none"
