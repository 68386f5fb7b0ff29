import hashlib
import itertools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagbench.cli import app
from stagbench.errors import SpecError
from stagbench.records import GameConfig
from stagbench.runs.spec import (
    AdversarySpec,
    ExperimentSpec,
    load_spec,
    parse_adversary,
    parse_spec,
    payload_param,
)

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
name = "s"
seed = 3
repetitions = 2
[game]
rounds = 3
[factors]
models = ["scripted/tit-for-tat", ["scripted/always-stag", "scripted/grim-trigger"]]
topologies = ["complete", "star(hub=0)"]
disclosures = ["explicit", "silent"]
adversaries = ["none", "soft(p=0.5,count=1,placement=hub)"]
conditions = [{name = "base"}, {name = "hidden", horizon_disclosed = false}]
"""


def test_factorial_expansion_and_stable_ids() -> None:
    spec = parse_spec(GOOD)
    trials = spec.trials()
    assert len(trials) == 2 * 2 * 2 * 2 * 2 * 2
    assert len({t.trial_id for t in trials}) == len(trials)
    assert len({t.seed for t in trials}) == len(trials)
    assert trials == parse_spec(GOOD).trials()
    hidden = [t for t in trials if t.condition == "hidden"]
    assert hidden and all(not t.game.horizon_disclosed for t in hidden)
    assert all(t.game.rounds == 3 for t in trials)
    soft = [t for t in trials if t.adversary.kind == "soft"]
    assert soft[0].adversary.params == {"p": 0.5}
    assert soft[0].adversary.placement == "hub"
    assert soft[0].adversary.label == "soft(p=0.5)[1@hub]"


def test_ids_survive_growing_the_spec() -> None:
    before = {t.trial_id for t in parse_spec(GOOD).trials()}
    grown = GOOD.replace('"ring"', "").replace(
        'topologies = ["complete", "star(hub=0)"]',
        'topologies = ["complete", "star(hub=0)", "ring"]',
    )
    after = {t.trial_id for t in parse_spec(grown).trials()}
    assert before < after
    reseeded = {t.trial_id for t in parse_spec(GOOD.replace("seed = 3", "seed = 4")).trials()}
    assert not before & reseeded


def test_adversary_string_and_table_forms_agree() -> None:
    a = AdversarySpec.model_validate(
        parse_adversary("delayed(k=2,count=2,placement=leaf,colluding=True)")
    )
    b = AdversarySpec(kind="delayed", params={"k": 2}, count=2, placement="leaf", colluding=True)
    assert a == b
    assert AdversarySpec.model_validate(parse_adversary("none")).count == 0


@pytest.mark.parametrize(
    "mutation,match",
    [
        (("[factors]", "[factors\n"), "not valid TOML"),
        (('name = "s"', 'name = ""'), "name"),
        (
            (
                'models = ["scripted/tit-for-tat", ["scripted/always-stag", "scripted/grim-trigger"]]',
                "models = []",
            ),
            "models",
        ),
        (('"complete"', '"hexagon"'), "unknown topology 'hexagon'"),
        (('"scripted/tit-for-tat"', '"scripted/nice"'), "unknown scripted strategy"),
        (('"scripted/tit-for-tat"', '"tit-for-tat"'), "provider/model"),
        (('"scripted/tit-for-tat"', '"nosuchprovider/x"'), "unknown provider 'nosuchprovider'"),
        (('"none"', '"sneaky"'), "unknown adversary 'sneaky'"),
        (('"none"', '"byzantine(count=5)"'), "count 5 exceeds 4 players"),
        (('"none"', '"soft(p=3)"'), "0 <= p <= 1"),
        (('"explicit"', '"loud"'), "disclosures"),
        (("rounds = 3", "rounds = 0"), "rounds"),
        (("rounds = 3", "rounds = 3\nbogus = 1"), "bogus"),
        (("seed = 3", "seed = 3\nunknown_key = 1"), "unknown_key"),
        (
            ('{name = "hidden", horizon_disclosed = false}', '{name = "base", threshold = 9}'),
            "threshold 9 exceeds",
        ),
    ],
)
def test_bad_specs_give_clear_errors(mutation: tuple[str, str], match: str) -> None:
    old, new = mutation
    assert old in GOOD
    with pytest.raises(SpecError, match=match):
        parse_spec(GOOD.replace(old, new, 1))


def test_bad_spec_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('"complete"', '"hexagon"'))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(bad), "--out", str(out)])
    assert result.exit_code == 2
    assert "unknown topology 'hexagon'" in result.output
    assert not out.exists()
    missing = CliRunner().invoke(app, ["run", str(tmp_path / "nope.toml"), "--out", str(out)])
    assert missing.exit_code == 2 and "not found" in missing.output
    assert not out.exists()


def _plain_trials(spec: ExperimentSpec) -> list[dict[str, object]]:
    """The design written out the plain way, each trial's content hashed on its own: what
    ``iter_trials`` must give, however it computes it."""
    f = spec.factors
    out: list[dict[str, object]] = []
    for models, cond, topo, disc, adv, agents in itertools.product(
        f.models, f.conditions, f.topologies, f.disclosures, f.adversaries, spec.agent_settings()
    ):
        game = GameConfig.model_validate({**spec.game.model_dump(), **cond.overrides()})
        population = [models] if isinstance(models, str) else list(models)
        param = payload_param(adv) if f.payloads else None
        for rep in range(spec.repetitions):
            content = {
                "seed": spec.seed, "repetition": rep, "condition": cond.name,
                "game": game.model_dump(mode="json"), "models": population, "topology": topo,
                "disclosure": disc.value, "adversary": adv.model_dump(mode="json"),
                "agents": agents.model_dump(mode="json"),
            }  # fmt: skip
            base = hashlib.sha256(
                json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
            ).hexdigest()
            if param is None:
                out.append({"trial_id": base[:16], "seed": int(base[16:32], 16) % 2**63})
                continue
            for level in f.payloads:
                said = {**adv.model_dump(mode="json")}
                said["params"] = {**adv.params, param: level.text}
                arm = {**content, "adversary": said, "payload": level.model_dump(mode="json")}
                digest = hashlib.sha256(
                    json.dumps(arm, sort_keys=True, separators=(",", ":")).encode()
                ).hexdigest()
                out.append({"trial_id": digest[:16], "seed": int(base[16:32], 16) % 2**63,
                            "match": base[:16]})  # fmt: skip
    return out


@pytest.mark.parametrize("name", ["paper.toml", "paper_scripted.toml", "injection.toml"])
def test_trial_ids_are_the_hash_of_each_trials_content(name: str) -> None:
    spec, _ = load_spec(ROOT / "experiments" / name)
    spec = spec.model_copy(update={"repetitions": min(spec.repetitions, 12)})
    want = _plain_trials(spec)
    got = [
        {"trial_id": t.trial_id, "seed": t.seed, **({"match": t.match} if t.match else {})}
        for t in spec.iter_trials()
    ]
    assert len(want) > 10 and got == want
    assert spec.trials() == list(spec.iter_trials())
