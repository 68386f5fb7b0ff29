"""A spec's number fields refuse a TOML boolean: pydantic's lax mode read ``repetitions =
true`` as one repetition and ``stag_payoff = true`` as a payoff of 1 (hard20 2). Every
number a spec could give before still reads as before; a ``small_world`` without an edge
(k < 2), or with an odd k (built as k - 1), is refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagbench.agents.models.settings import ModelSettings
from stagbench.cli import app
from stagbench.errors import SpecError, TopologyError
from stagbench.records import AdversarySpec, AgentSettings, GameConfig, TrialSpec
from stagbench.runs.spec import parse_spec
from stagbench.topologies import build_topology

runner = CliRunner()

BASE = """
name = "numbers"
seed = 1
repetitions = 2
[game]
rounds = 2
[factors]
models = ["mock/stag"]
topologies = ["ring"]
adversaries = ["none"]
"""


def _sub(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


ADV = 'adversaries = ["none"]'

#: (spec text, what the error says)
BOOLS: dict[str, tuple[str, str]] = {
    "repetitions": (
        _sub("repetitions = 2", "repetitions = true"),
        "repetitions: Input should be a number, not the boolean true",
    ),
    "seed": (_sub("seed = 1", "seed = false"), "seed: Input should be a number, not the boolean"),
    "budget": (
        _sub("seed = 1", "seed = 1\nbudget_usd = true"),
        "budget_usd: Input should be a number",
    ),
    "rounds": (_sub("rounds = 2", "rounds = true"), "game.rounds: Input should be a number"),
    "n_players": (_sub("rounds = 2", "rounds = 2\nn_players = true"), "game.n_players: Input"),
    "payoff": (_sub("rounds = 2", "rounds = 2\nstag_payoff = true"), "game.stag_payoff: Input"),
    "threshold": (_sub("rounds = 2", "rounds = 2\nthreshold = true"), "game.threshold: Input"),
    "talk_phases": (_sub("rounds = 2", "rounds = 2\ntalk_phases = false"), "game.talk_phases"),
    "a condition's override": (
        BASE + '[[factors.conditions]]\nname = "x"\nrounds = true\n',
        "condition 'x': rounds: Input should be a number, not the boolean true",
    ),
    "temperature": (BASE + "[agents]\ntemperature = false\n", "agents.temperature: Input"),
    "max_tokens": (BASE + "[agents]\nmax_tokens = true\n", "agents.max_tokens: Input"),
    "max_reasks": (BASE + "[agents]\nmax_reasks = true\n", "agents.max_reasks: Input"),
    "timeout_s": (BASE + "[agents]\ntimeout_s = true\n", "agents.timeout_s: Input"),
    "a model setting": (
        BASE + "[model_settings.mock]\nmax_retries = true\n",
        "model_settings.mock.max_retries: Input should be a number, not the boolean true",
    ),
    "a price": (
        BASE + "[model_settings.mock]\ninput_per_mtok = true\n",
        "model_settings.mock.input_per_mtok: Input should be a number",
    ),
    "short_max_words": (BASE + "[analysis]\nshort_max_words = true\n", "short_max_words: Input"),
    "adversary count (string)": (
        _sub(ADV, 'adversaries = ["byzantine(count=True)"]'),
        "factors.adversaries.0.count: Input should be a number, not the boolean true",
    ),
    "adversary count (table)": (
        _sub(ADV, 'adversaries = [{kind = "byzantine", count = true}]'),
        "factors.adversaries.0.count: Input should be a number, not the boolean true",
    ),
    "a placement seat": (
        _sub(ADV, 'adversaries = [{kind = "byzantine", count = 1, placement = [true]}]'),
        "factors.adversaries.0.placement: Input should be a number, not the boolean true",
    ),
    "an adversary parameter": (
        _sub(ADV, 'adversaries = ["soft(p=True)"]'),
        "bad parameters for adversary 'soft(p=True)': p must be a number, not the boolean True",
    ),
    "a topology parameter": (
        _sub('["ring"]', '["erdos_renyi(p=True)"]'),
        "bad parameters for topology 'erdos_renyi(p=True)': p must be a number",
    ),
    "a strategy parameter": (
        _sub('["mock/stag"]', '["scripted/random(p=True)"]'),
        "bad parameters for scripted strategy 'random(p=True)': p must be a number",
    ),
    "small_world(k=0)": (
        _sub('["ring"]', '["small_world(k=0)"]'),
        "small_world k=0 adds no edge: k must be at least 2 and below the number of players (4)",
    ),
    "small_world(k=1)": (_sub('["ring"]', '["small_world(k=1)"]'), "k=1 adds no edge"),
    "small_world(k=3)": (
        _sub('["ring"]', '["small_world(k=3)"]'),
        "small_world k=3 must be even: each player is joined to its k // 2 nearest neighbours "
        "on each side, so k=3 would be built as k=2; give k=2",
    ),
}


@pytest.mark.parametrize("case", sorted(BOOLS))
def test_a_boolean_where_a_spec_wants_a_number_is_refused(case: str) -> None:
    text, match = BOOLS[case]
    with pytest.raises(SpecError, match=re.escape(match)) as caught:
        parse_spec(text)
    assert "not the boolean" in str(caught.value) or "small_world" in case


@pytest.mark.parametrize(
    "case", ["repetitions", "a model setting", "small_world(k=0)", "small_world(k=3)"]
)
def test_validate_and_run_refuse_it_in_one_paragraph(case: str, tmp_path: Path) -> None:
    text, match = BOOLS[case]
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    out = tmp_path / "out"
    for args in (["validate", str(spec)], ["run", str(spec), "--out", str(out)]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, res.output
        assert match in " ".join(res.output.split()) and "Traceback" not in res.output
    assert not out.exists()


#: numbers written as TOML integers, floats or in the other's form, all valid as before
VALID = [
    _sub("rounds = 2", "rounds = 2\nstag_payoff = 12\nhare_payoff = 3.5\nthreshold = 3"),
    _sub("rounds = 2", "rounds = 2.0"),
    BASE + "[agents]\ntemperature = 1\ntop_p = 1\ntimeout_s = 5\nmax_tokens = 64\n",
    BASE + "[model_settings.mock]\nrequests_per_minute = 60\nmax_cost_usd = 0\n",
    _sub(ADV, 'adversaries = ["soft(p=1,count=1,placement=[2])", "delayed(k=2)"]'),
    _sub('["ring"]', '["erdos_renyi(p=1,seed=2,directed=True)", "small_world(k=2,p=0)"]'),
    _sub('["mock/stag"]', '["scripted/random(p=1)"]'),
    BASE + '[[factors.conditions]]\nname = "long"\nrounds = 3\nhorizon_disclosed = false\n',
]


@pytest.mark.parametrize("text", VALID)
def test_numbers_still_read_as_before(text: str) -> None:
    spec = parse_spec(text)
    assert spec.n_trials > 0
    assert spec.game.rounds in (2, 3)


def test_float_fields_take_integers_and_int_fields_take_integral_floats() -> None:
    assert GameConfig(stag_payoff=12).stag_payoff == 12.0  # type: ignore[arg-type]
    assert GameConfig.model_validate({"rounds": 2.0}).rounds == 2
    assert ModelSettings(requests_per_minute=60).requests_per_minute == 60.0


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (GameConfig, {"rounds": True}),
        (GameConfig, {"invalid_payoff": False}),
        (AgentSettings, {"max_tokens": True}),
        (AdversarySpec, {"kind": "soft", "count": True}),
        (ModelSettings, {"max_concurrency": True}),
    ],
)
def test_the_records_refuse_a_boolean_for_a_number(model: type, data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="Input should be a number, not the boolean"):
        model.model_validate(data)  # type: ignore[attr-defined]


def test_a_trial_record_refuses_a_boolean_seed_and_reads_its_own_json() -> None:
    trial = parse_spec(BASE).trials()[0]
    assert TrialSpec.model_validate_json(trial.model_dump_json()) == trial
    data = trial.model_dump()
    with pytest.raises(ValueError, match=r"repetition\n  Input should be a number"):
        TrialSpec.model_validate({**data, "repetition": False})


@pytest.mark.parametrize("k", [0, 1, -1, True])
def test_a_small_world_without_edges_is_refused(k: object) -> None:
    with pytest.raises(TopologyError):
        build_topology(f"small_world(k={k})", 6)
    assert build_topology("small_world(k=2)", 6).graph.number_of_edges() == 6
