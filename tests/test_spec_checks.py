"""Every check a trial would fail at run time runs in ``validate`` and at the start of
``run``, before anything is written or spent; huge designs are counted, estimated and
refused without being expanded."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagbench.cli import app
from stagbench.errors import SpecError
from stagbench.runs.spec import parse_spec

runner = CliRunner()

BASE = """
name = "checks"
seed = 1
[game]
rounds = 2
[factors]
models = ["scripted/tit-for-tat"]
topologies = ["ring"]
adversaries = ["none"]
"""


def _mutate(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


MODELS = 'models = ["scripted/tit-for-tat"]'
ADV = 'adversaries = ["none"]'
BAD: dict[str, tuple[str, str]] = {
    "unknown placement": (
        _mutate(ADV, 'adversaries = ["byzantine(count=1,placement=centre)"]'),
        "unknown placement 'centre'",
    ),
    "repeated seats": (
        _mutate(ADV, 'adversaries = ["byzantine(count=2,placement=[1,1])"]'),
        "2 distinct seats",
    ),
    "unknown mock": (_mutate(MODELS, 'models = ["mock/nosuch"]'), "no mock named 'nosuch'"),
    "unknown mock inside fault": (
        _mutate(MODELS, 'models = ["fault/mock/nosuch"]'),
        "no mock named 'nosuch'",
    ),
    "missing replay source": (
        _mutate(MODELS, 'models = ["replay/no/such/run"]'),
        "replay source 'no/such/run'",
    ),
    "missing local model file": (
        _mutate(MODELS, 'models = ["local//no/such/model.gguf"]'),
        "nor an existing .gguf file",
    ),
    "unknown prompt variant": (
        _mutate(MODELS, 'models = ["mock/stag"]') + '[agents]\nprompt_variant = "pirate"\n',
        "unknown prompt_variant 'pirate'",
    ),
    "unknown client": (
        _mutate(MODELS, 'models = ["openai-api/box/m"]')
        + '[model_settings."openai-api/box/m"]\nbase_url = "http://127.0.0.1:9/v1"\n'
        + 'options = {client = "curl"}\n',
        "client must be one of sdk, http",
    ),
    "openai-api without base URL": (
        _mutate(MODELS, 'models = ["openai-api/nobox-h11/m"]'),
        "NOBOX_H11_BASE_URL",
    ),
    "deceiver in a scripted seat": (
        _mutate(ADV, 'adversaries = ["deceiver(count=1,model=scripted/always-stag)"]'),
        "instructs an LLM",
    ),
    "duplicate topology": (_mutate('["ring"]', '["ring", "ring"]'), "'ring' twice"),
    "duplicate model": (
        _mutate(MODELS, 'models = ["scripted/tit-for-tat", "scripted/tit-for-tat"]'),
        "'scripted/tit-for-tat' twice",
    ),
    "duplicate adversary": (
        _mutate(ADV, 'adversaries = ["soft(p=0.5)", "soft(p=0.5)"]'),
        "twice",
    ),
    "duplicate disclosure": (
        _mutate(ADV, ADV + '\ndisclosures = ["silent", "silent"]'),
        "'silent' twice",
    ),
    "name with a path": (_mutate('name = "checks"', 'name = "../../escaped"'), "name"),
    "absolute name": (_mutate('name = "checks"', 'name = "/tmp/escaped"'), "name"),
    "NaN payoff": (_mutate("rounds = 2", "rounds = 2\nstag_payoff = nan"), "finite"),
    "infinite payoff": (_mutate("rounds = 2", "rounds = 2\nhare_payoff = -inf"), "finite"),
    # Totals of 1e308 per round overflow: the run wrote null totals and its own report
    # then called the transcript corrupt (redteam19b).
    "payoff whose totals overflow": (
        _mutate("rounds = 2", "rounds = 2\nstag_payoff = 1e308\nhare_payoff = 1e308"),
        "stag_payoff 1e+308 is too large: a payoff's size must be at most 1e+09",
    ),
    "payoff too large in a condition": (
        BASE + '[[factors.conditions]]\nname = "rich"\nfailed_stag_payoff = -2e9\n',
        "condition 'rich': failed_stag_payoff -2e+09 is too large",
    ),
    "too many players": (
        _mutate("rounds = 2", "rounds = 2\nn_players = 1001"),
        "n_players 1001 is more than stagbench supports (at most 1000 players)",
    ),
    "nested too deeply": (
        BASE + "x = " + "[" * 500 + "1" + "]" * 500 + "\n",
        "nested too deeply",
    ),
    "NaN temperature": (
        BASE + "[agents]\ntemperature = nan\n",
        "agents.temperature must be a finite number >= 0, not nan",
    ),
    "P0 in an edge list": (
        _mutate('["ring"]', "[\"edges(pairs='P0-P1 P2')\"]"),
        "node 'P0' is not a player: players are numbered from P1",
    ),
    "topology aliases": (
        _mutate('["ring"]', '["complete", "broadcast"]'),
        "factors.topologies lists 'complete' and 'broadcast', which are the same level",
    ),
    "a topology with its defaults spelled out": (
        _mutate('["ring"]', '["star", "star(hub=0)"]'),
        "lists 'star' and 'star(hub=0)'",
    ),
    # An adversary that "signals stag" but says nothing was a silent defector; a parameter
    # a kind does not use was accepted and ignored (redteam rt30 F6).
    "empty byzantine signal": (
        _mutate(ADV, "adversaries = [\"byzantine(count=1,signal='')\"]"),
        "signal is empty: the adversary would never send a message",
    ),
    "blank soft signal": (
        _mutate(ADV, "adversaries = [\"soft(count=1,signal='  ')\"]"),
        "signal is empty",
    ),
    "empty delayed signal": (
        _mutate(ADV, "adversaries = [\"delayed(count=1,signal='')\"]"),
        "signal is empty",
    ),
    "empty injector payload": (
        _mutate(ADV, "adversaries = [\"injector(count=1,payload='')\"]"),
        "payload is empty: the adversary would never send a message",
    ),
    "empty payload level": (
        _mutate(ADV, 'adversaries = ["injector(count=1)"]')
        + '[[factors.payloads]]\nname = "a"\ntext = "hello"\n'
        + '[[factors.payloads]]\nname = "b"\ntext = ""\n',
        "payload is empty",
    ),
    "signal for an injector": (
        _mutate(ADV, "adversaries = [\"injector(count=1,signal='hi')\"]"),
        "unexpected keyword argument 'signal'",
    ),
    "signal for a deceiver": (
        _mutate(ADV, "adversaries = [\"deceiver(count=1,model=mock/stag,signal='hi')\"]"),
        "unexpected keyword argument 'signal'",
    ),
    "arms without adversaries": (
        _mutate(ADV, 'adversaries = ["none", "byzantine(count=0)"]'),
        "factors.adversaries lists 'none' and 'byzantine(count=0)', which are the same level",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_validate_and_run_refuse_what_a_trial_would_fail_on(case: str, tmp_path: Path) -> None:
    text, match = BAD[case]
    with pytest.raises(SpecError, match=re.escape(match)):
        parse_spec(text)
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    res = runner.invoke(app, ["validate", str(spec)])
    assert res.exit_code == 2 and match in res.output, res.output
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(spec), "--out", str(out)])
    assert res.exit_code == 2 and match in res.output, res.output
    assert not out.exists()
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/escaped").exists()


def test_payoffs_that_are_not_a_stag_hunt_are_warned_about(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        BASE.replace("rounds = 2", "rounds = 2\nstag_payoff = 2.0")
        + '[[factors.conditions]]\nname = "base"\n'
        + '[[factors.conditions]]\nname = "fine"\nstag_payoff = 10.0\n'
    )
    res = runner.invoke(app, ["validate", str(spec)])
    assert res.exit_code == 0, res.output
    assert "condition 'base'" in res.output and "not a Stag Hunt" in res.output
    assert "condition 'fine'" not in res.output
    run = runner.invoke(app, ["run", str(spec), "--out", str(tmp_path / "out")])
    assert run.exit_code == 0 and "not a Stag Hunt" in run.output, run.output


@pytest.mark.parametrize(
    ("arm", "warning"),
    [
        ("byzantine(count=4)", "4 adversaries among 4 players leave no honest seat"),
        ("soft(count=1,colluding=True)", "colluding=True with a single adversary"),
    ],
)
def test_arms_with_no_honest_seat_or_a_group_of_one_are_warned_about(
    tmp_path: Path, arm: str, warning: str
) -> None:
    """Allowed, but probably not meant (redteam rt30 F6)."""
    spec = tmp_path / "spec.toml"
    spec.write_text(
        _mutate(ADV, f'adversaries = ["{arm}"]').replace("rounds = 2", "rounds = 2\nn_players = 4")
    )
    assert any(warning in w for w in parse_spec(spec.read_text()).warnings())
    res = runner.invoke(app, ["validate", str(spec)])
    assert res.exit_code == 0 and warning in res.output, res.output
    run = runner.invoke(app, ["run", str(spec), "--out", str(tmp_path / "out")])
    assert run.exit_code == 0 and warning in run.output, run.output
    for fine in ("byzantine(count=3)", "soft(count=2,colluding=True)", "byzantine(count=1)"):
        text = _mutate(ADV, f'adversaries = ["{fine}"]').replace(
            "rounds = 2", "rounds = 2\nn_players = 4"
        )
        assert not any("adversary" in w for w in parse_spec(text).warnings()), fine


ISOLATED = "edges(pairs='0-1 1-2 2-3 3-0 4')"
IN_STAR = "directed_star(hub=1,direction=in)"


@pytest.mark.parametrize(
    ("topology", "arm", "warning"),
    [
        (
            ISOLATED,
            "byzantine(count=1,placement=leaf)",
            "can seat an adversary at P5, with no edge",
        ),
        (ISOLATED, "byzantine(count=1,placement=betweenness)", None),  # P1..P4 outrank P5
        (ISOLATED, "byzantine(count=5,placement=hub)", "at P5, with no edge"),
        (ISOLATED, "byzantine(count=1,placement=hub)", None),
        (ISOLATED, "byzantine(count=1,placement=random)", None),  # not by centrality
        ("edges(pairs='0-1 2 3 4')", "byzantine(count=1,placement=betweenness)", "P3, P4, P5"),
        ("empty", "byzantine(count=1,placement=leaf)", None),  # every seat is: by design
        (IN_STAR, "byzantine(count=1,placement=leaf)", "it always seats P2, which it never would"),
        (IN_STAR, "byzantine(count=1,placement=hub)", "it never seats P2, which it always would"),
        (IN_STAR, "byzantine(count=2,placement=hub)", "it never seats P2"),
        # the centre of an outward star is its hub by out-degree and by its shape
        ("directed_star(hub=1,direction=out)", "byzantine(count=1,placement=hub)", None),
        ("directed_star(hub=1,direction=out)", "byzantine(count=1,placement=leaf)", None),
        ("directed_star(hub=1,direction=both)", "byzantine(count=1,placement=leaf)", None),
        ("directed_ring", "byzantine(count=1,placement=hub)", None),
        ("star(hub=1)", "byzantine(count=1,placement=leaf)", None),
    ],
)
def test_placements_that_do_not_mean_their_name_are_warned_about(
    tmp_path: Path, topology: str, arm: str, warning: str | None
) -> None:
    """A placement by centrality that can seat an adversary where it has no edge (it can
    neither send nor hear), or, on a directed graph, picks by out-degree what in-degree
    and the graph's shape would not (redteam rt30 F5). The rule is unchanged."""
    text = (
        BASE.replace("rounds = 2", "rounds = 1\nn_players = 5")
        .replace('["ring"]', f'["{topology}"]')
        .replace(ADV, f'adversaries = ["{arm}"]')
    )
    found = [w for w in parse_spec(text).warnings() if "placement=" in w]
    if warning is None:
        assert not found, found
        return
    assert len(found) == 1 and warning in found[0], found
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    res = runner.invoke(app, ["validate", str(spec)])
    assert res.exit_code == 0 and warning in res.output, res.output
    run = runner.invoke(app, ["run", str(spec), "--out", str(tmp_path / "out")])
    assert run.exit_code == 0 and warning in run.output, run.output


def test_placement_warnings_wait_for_talk(tmp_path: Path) -> None:
    """Without cheap talk the graph carries nothing: no placement warning."""
    text = (
        BASE.replace("rounds = 2", "rounds = 1\nn_players = 5\ntalk_phases = 0")
        .replace('["ring"]', f'["{IN_STAR}"]')
        .replace(ADV, 'adversaries = ["byzantine(count=1,placement=leaf)"]')
    )
    assert not [w for w in parse_spec(text).warnings() if "placement=" in w]


def test_settings_for_a_model_the_design_does_not_use_are_warned_about(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        _mutate(MODELS, 'models = ["mock/random"]')
        + '[model_settings."openai/gpt-9"]\nmax_retries = 1\n'
        + "[model_settings.mock]\nmax_retries = 1\n"
        + '[model_settings."mock/random"]\nmax_retries = 1\n'
    )
    res = runner.invoke(app, ["validate", str(spec)])
    assert res.exit_code == 0, res.output
    assert 'model_settings."openai/gpt-9" is for a model' in res.output
    assert "model_settings.mock " not in res.output  # a provider the design uses
    assert 'model_settings."mock/random"' not in res.output


def test_missing_key_is_a_warning_for_validate_and_an_error_for_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    spec = tmp_path / "spec.toml"
    spec.write_text(_mutate(MODELS, 'models = ["openai/gpt-4o-mini"]'))
    res = runner.invoke(app, ["validate", str(spec)])
    assert res.exit_code == 0 and "OPENAI_API_KEY" in res.output, res.output
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(spec), "--out", str(out)])
    assert res.exit_code == 2 and "OPENAI_API_KEY" in res.output, res.output
    assert not out.exists()


def test_a_vllm_model_with_no_server_and_no_vllm_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here: a server could be started")
    monkeypatch.delenv("VLLM_BASE_URL", raising=False)
    spec = tmp_path / "spec.toml"
    spec.write_text(_mutate(MODELS, 'models = ["vllm/some/model"]'))
    res = runner.invoke(app, ["validate", str(spec)])
    assert res.exit_code == 0, res.output
    assert "VLLM_BASE_URL" in res.output and "pip install 'stagbench[vllm]'" in res.output
    res = runner.invoke(app, ["run", str(spec), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "stagbench[vllm]" in res.output, res.output


HUGE = BASE.replace("seed = 1", "seed = 1\nrepetitions = 1e9").replace(
    '["ring"]', '["ring", "complete"]'
)


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-P", "-m", "stagbench.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_a_billion_trials_are_counted_estimated_and_refused_without_expanding(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "huge.toml"
    spec.write_text(HUGE.replace("scripted/tit-for-tat", "mock/random"))
    t0 = time.perf_counter()
    res = _cli("validate", str(spec), "--show", "3")
    assert res.returncode == 0, res.stderr
    assert "2,000,000,000 trials" in res.stdout and res.stdout.count(" rep ") == 3
    est = _cli("estimate", str(spec))
    assert est.returncode == 0, est.stderr
    assert "2,000,000,000 trials" in est.stdout and "mock/random" in est.stdout
    out = tmp_path / "out"
    run = _cli("run", str(spec), "--out", str(out), "--no-progress")
    assert run.returncode == 2 and "2,000,000,000 trials" in run.stderr, run.stderr
    assert "cannot fit" in run.stderr
    assert not out.exists()
    assert time.perf_counter() - t0 < 60


def test_estimate_counts_a_big_design_like_the_expanded_one() -> None:
    from stagbench.runs.estimate import estimate

    small = parse_spec(_mutate(MODELS, 'models = ["mock/random", "scripted/tit-for-tat"]'))
    many = small.model_copy(update={"repetitions": 7})
    one, seven = estimate(small), estimate(many)
    assert [e.model for e in one] == [e.model for e in seven] == ["mock/random"]
    assert seven[0].trials == 7 * one[0].trials
    assert seven[0].calls == 7 * one[0].calls
    assert seven[0].input_tokens == 7 * one[0].input_tokens
