"""One real call per paid provider, only where its key is set (skipped otherwise, and in CI).

Run by hand before a paid sweep: OPENAI_API_KEY=... bash scripts/test.sh -m needs_key
"""

from __future__ import annotations

import json
import os

import pytest

from stagbench.agents.models.base import ChatMessage, GenerateConfig
from stagbench.agents.models.pool import ModelPool
from stagbench.agents.prompts import act_schema

MODELS = {
    "OPENAI_API_KEY": os.environ.get("STAGBENCH_LIVE_OPENAI", "openai/gpt-4o-mini"),
    "ANTHROPIC_API_KEY": os.environ.get("STAGBENCH_LIVE_ANTHROPIC", "anthropic/claude-haiku-4-5"),
}


@pytest.mark.needs_key
@pytest.mark.parametrize("key_env", sorted(MODELS))
async def test_one_real_structured_call(key_env: str) -> None:
    if not os.environ.get(key_env):
        pytest.skip(f"{key_env} is not set")
    pool = ModelPool()
    model = pool.get(MODELS[key_env])
    messages = [
        ChatMessage(role="system", content="You play a Stag Hunt. Stag pays 10 if all hunt it."),
        ChatMessage(role="user", content="Choose your action for round 1. Reply with JSON."),
    ]
    try:
        res = await model.generate(
            messages, GenerateConfig(max_tokens=100, seed=1), act_schema(True)
        )
    finally:
        await pool.aclose()
    assert json.loads(res.output.text)["action"] in ("stag", "hare")
    assert res.output.input_tokens > 0 and res.cost_usd > 0
    assert os.environ[key_env] not in res.output.model_dump_json()
