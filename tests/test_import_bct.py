"""``stagbench import bct``: the published Byzantine Cheap Talk logs as a results folder.

The shared sample must come out of ``stagbench report`` with the numbers its README gives
(per condition and per round, conditions kept apart); synthetic folders in the study's
format exercise what the sample lacks (other group sizes, directed visibility maps, hard
and soft Byzantines at the hub or a leaf, failed replies); bad input is a clear error or a
recorded failure.
"""

from __future__ import annotations

import json
import random
import re
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from stagbench.cli import app
from stagbench.games.audit import audit_events
from stagbench.records import read_events, read_manifest, read_transcript
from stagbench.runs.importers import IMPORTERS
from stagbench.runs.store import read_checked

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT.parent / "shared" / "bct-sample"
runner = CliRunner()

#: README row -> the condition the import gives it
README_ROWS = {
    "explicit broadcast": "topology_v1/broadcast",
    "explicit ring": "topology_v1/ring",
    "explicit star": "topology_v1/star",
    "silent broadcast": "topology_silent_v1/broadcast",
    "silent ring": "topology_silent_v1/ring",
    "silent star": "topology_silent_v1/star",
    "soft Byzantine p=0.5": "byzantine_soft_v1",
}


def readme_numbers() -> dict[str, tuple[float, float, list[float]]]:
    """condition -> (Phi, rho, rho by round) as the sample's README states them."""
    out = {}
    for line in (SAMPLE / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in README_ROWS:
            rounds = [float(x) for x in cells[3].split("/")]
            out[README_ROWS[cells[0]]] = (float(cells[1]), float(cells[2]), rounds)
    assert len(out) == len(README_ROWS)
    return out


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SAMPLE.is_dir():
        pytest.skip(f"the shared sample is not at {SAMPLE}")
    out = tmp_path_factory.mktemp("bct") / "imported"
    sources = [str(SAMPLE / n) for n in ("topology_v1", "topology_silent_v1", "byzantine_soft_v1")]
    res = runner.invoke(app, ["import", "bct", *sources, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "imported 140 trials" in res.output
    res = runner.invoke(app, ["report", str(out), "--n-boot", "100"])
    assert res.exit_code == 0, res.output
    return out


def test_report_reproduces_the_study_numbers(imported: Path) -> None:
    want = readme_numbers()
    cells = pd.read_parquet(imported / "report" / "cooperation_by_cell.parquet")
    rounds = pd.read_parquet(imported / "report" / "cooperation_by_round.parquet")
    assert sorted(cells["condition"]) == sorted(want)  # one row per condition: kept apart
    for condition, (phi, rho, per_round) in want.items():
        row = cells[cells["condition"] == condition].iloc[0]
        assert abs(100 * row["coord_rate"] - phi) <= 0.1, (condition, row["coord_rate"], phi)
        assert abs(100 * row["stag_rate"] - rho) <= 0.1, (condition, row["stag_rate"], rho)
        assert row["stag_trials"] == 20
        got = rounds[rounds["condition"] == condition].sort_values("round")["stag_rate"]
        assert len(got) == 5
        for r, (mine, theirs) in enumerate(zip(100 * got, per_round, strict=True), 1):
            assert abs(mine - theirs) <= 0.5 + 1e-9, (condition, r, mine, theirs)  # whole points
    md = (imported / "report" / "report.md").read_text()
    assert "| topology_v1/star | star(hub=varied) | explicit | none |" in md


def test_the_folder_is_a_normal_results_folder(imported: Path) -> None:
    manifest = read_manifest(imported / "manifest.json")
    assert manifest is not None and manifest.imported_from and len(manifest.imported_from) == 3
    assert manifest.n_trials == manifest.finished_trials == 140 and manifest.status == "complete"
    spec = tomllib.loads((imported / "spec.toml").read_text())
    assert spec["imported"]["prompts_kept"] is False and spec["imported"]["harness"] == "bct"
    trials = [json.loads(line) for line in (imported / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 140 and len({t["trial_id"] for t in trials}) == 140
    by_id = {t["trial_id"]: t for t in trials}
    files = sorted((imported / "transcripts").glob("*.jsonl"))
    assert len(files) == 140
    for path in files:
        t = read_checked(path)  # strict reader and the engine's audit
        assert audit_events(read_events(path)) == []
        assert t.header.trial.model_dump(mode="json") == by_id[t.trial_id]
        assert t.header.trial.game.horizon_disclosed is False
        trial = t.header.trial
        families = {"Mixtral", "Qwen", "Llama", "DeepSeek"}
        assert set(trial.models) == families
        honest = [s for s in t.header.seats if s.role == "honest"]
        assert {s.model for s in honest} <= families
        for e in t.events:
            if e.type == "model_call":
                assert e.call.messages == [] and e.call.raw is None and e.call.input_tokens == 0
        if trial.condition == "byzantine_soft_v1":
            (adv,) = [s for s in t.header.seats if s.role == "adversary"]
            assert trial.adversary.kind == "soft" and trial.adversary.params == {"p": 0.5}
            assert adv.model == "scripted/always-stag" and adv.adversary == "soft(p=0.5)"
            assert not any(e.type == "model_call" and e.seat == adv.seat for e in t.events)
        else:
            assert trial.adversary.kind == "none"
        silent = trial.condition.startswith("topology_silent")
        assert trial.disclosure.value == ("silent" if silent else "explicit")


def test_star_edges_are_the_visibility_map(imported: Path) -> None:
    sources = {}
    for folder in ("topology_v1", "topology_silent_v1"):
        for f in (SAMPLE / folder / "star").glob("trial_*/results.json"):
            meta = json.loads(f.read_text())["metadata"]
            sources[(folder, f.parent.name)] = meta
    seen = 0
    for path in (imported / "transcripts").glob("*.jsonl"):
        t = read_transcript(path)
        if not t.header.trial.condition.endswith("/star"):
            continue
        assert t.header.trial.topology == "star(hub=varied)"
        metas = [
            m
            for (folder, _), m in sources.items()
            if t.header.trial.condition.startswith(folder + "/")
            and m["trial"] == t.header.trial.repetition + 1
        ]
        assert len(metas) == 1
        vis = metas[0]["visibility_map"]
        want = sorted(
            (int(s.split("_")[1]) - 1, int(v.split("_")[1]) - 1)
            for v, senders in vis.items()
            for s in senders
            if s != v
        )
        assert [tuple(e) for e in t.header.edges] == want
        hub = int(metas[0]["hub_agent"]["agent_id"].split("_")[1]) - 1
        assert {u for u, _ in t.header.edges} >= {hub} and sum(
            1 for u, _ in t.header.edges if u == hub
        ) == 3
        seen += 1
    assert seen == 40


# -- synthetic folders in the study's format ---------------------------------------------
def _decision(
    reasoning: str,
    action: Any,
    family: str,
    seen: list[list[str]] | None = None,
    failed: bool = False,
) -> dict[str, Any]:
    d: dict[str, Any] = {"reasoning": reasoning, "action": action, "model_family": family}
    if seen is not None:
        d["words_visible"] = seen
    if failed:
        d["action_parsing_failed"] = True
    return d


def make_trial(
    path: Path,
    *,
    n: int = 4,
    rounds: int = 5,
    trial: int = 1,
    adversaries: tuple[int, ...] = (),
    soft_p: float | None = None,
    visibility: dict[int, list[int]] | None = None,
    hub: int | None = None,
    seed: int = 0,
    fail: tuple[tuple[int, int], ...] = (),
    talk_fail: tuple[tuple[int, int], ...] = (),
    experiment: str = "byzantine_cheap_talk",
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One results.json the way the study wrote them: honest agents hunt stag with a
    seeded probability that drops after a hare; ``fail`` lists (round, seat) with a failed
    action reply, ``talk_fail`` (round, seat) with a failed talk reply."""
    rng = random.Random(seed)
    names = [f"Agent_{i + 1}" for i in range(n)]
    families = [f"Fam{i + 1}" for i in range(n)]
    vis = visibility or {v: list(range(n)) for v in range(n)}
    data_rounds = []
    saw_hare = False
    for r in range(1, rounds + 1):
        words, talk_dec = {}, {}
        for s, name in enumerate(names):
            if s in adversaries:
                words[name] = "stag"
                why = ("Soft " if soft_p is not None else "") + "Byzantine agent: signal."
                talk_dec[name] = _decision(
                    why, {"type": "communicate", "word": "stag"}, families[s]
                )
            elif (r, s) in talk_fail:
                words[name] = "cooperate"
                talk_dec[name] = _decision(
                    "Error occurred, signaling cooperation",
                    {"type": "communicate", "word": "cooperate"},
                    families[s],
                )
            else:
                word = rng.choice(["stag", "COMMIT", "Together", "UNITE"])
                words[name] = word
                talk_dec[name] = _decision(
                    "I want stag.", {"type": "communicate", "word": word}, families[s]
                )
        data_rounds.append(
            {
                "round": r,
                "stage": "communication",
                "communications": words,
                "summary": "",
                "full_decisions": talk_dec,
            }
        )
        choices, decisions = {}, {}
        for s, name in enumerate(names):
            seen = [[names[x], words[names[x]]] for x in sorted(vis[s])]
            if s in adversaries:
                hare = soft_p is None or rng.random() < soft_p
                c = "Hunt Hare" if hare else "Hunt Stag"
                decisions[name] = _decision(
                    "Byzantine agent: defect.", {"choice": c}, families[s], seen
                )
            elif (r, s) in fail:
                c = None
                decisions[name] = _decision(
                    "Error occurred, all retries failed", None, families[s], seen, failed=True
                )
            else:
                p = 0.5 if saw_hare else 0.9
                c = "Hunt Stag" if rng.random() < p else "Hunt Hare"
                decisions[name] = _decision("thinking", {"choice": c}, families[s], seen)
            choices[name] = c
        all_stag = all(c == "Hunt Stag" for c in choices.values())
        pays = {
            k: (10 if all_stag else 0) if c == "Hunt Stag" else (3 if c == "Hunt Hare" else 0)
            for k, c in choices.items()
        }
        saw_hare = saw_hare or any(c == "Hunt Hare" for c in choices.values())
        data_rounds.append(
            {
                "round": r,
                "communications": words,
                "choices": choices,
                "payoffs": pays,
                "all_cooperated": all_stag,
                "cooperation_rate": 9.9,
                "summary": "",
                "full_decisions": decisions,
            }
        )
    meta: dict[str, Any] = {
        "experiment": experiment,
        "version": "v1",
        "trial": trial,
        "rounds": rounds,
        "agents": [
            {"name": nm, "model": f"org/{f}-70B", "model_family": f}
            for nm, f in zip(names, families, strict=True)
        ],
        "n_adversaries": len(adversaries),
        "adversary_agents": [names[a] for a in adversaries],
    }
    if soft_p is not None:
        meta["defect_prob"] = soft_p
    if visibility is not None:
        meta["visibility_map"] = {names[v]: [names[x] for x in xs] for v, xs in vis.items()}
    if hub is not None:
        meta["hub_agent"] = {"agent_id": names[hub], "model_family": families[hub]}
        meta["topology"] = "star"
    meta.update(extra_meta or {})
    data = {"cooperation_rate": 0.123, "rounds_data": data_rounds, "metadata": meta}
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps(data))
    return data


def star(n: int, hub: int) -> dict[int, list[int]]:
    return {v: (list(range(n)) if v == hub else sorted({v, hub})) for v in range(n)}


def expected(datas: list[dict[str, Any]]) -> dict[str, Any]:
    """The study's own analysis: Phi over rounds (all players), rho over honest rows."""
    rounds = all_stag = 0
    stag = valid = rows = 0
    per_round: dict[int, list[int]] = {}
    for d in datas:
        adv = set(d["metadata"]["adversary_agents"])
        for e in d["rounds_data"]:
            if e.get("stage"):
                continue
            rounds += 1
            all_stag += all(c == "Hunt Stag" for c in e["choices"].values())
            for name, c in e["choices"].items():
                if name in adv:
                    continue
                rows += 1
                valid += c is not None
                stag += c == "Hunt Stag"
                k = per_round.setdefault(e["round"], [0, 0])
                k[0] += c == "Hunt Stag"
                k[1] += c is not None
    return {
        "phi": all_stag / rounds,
        "rho": stag / valid,
        "rho_all": stag / rows,
        "rounds": {r: k / n for r, (k, n) in per_round.items()},
    }


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    base = tmp_path_factory.mktemp("synthetic")
    src_star = base / "byzantine_star_v1"
    src_n5 = base / "byzantine_n5"
    datas: dict[str, list[dict[str, Any]]] = {}
    for t in range(1, 7):
        d = make_trial(
            src_star / "hub_is_adversary" / f"trial_{t:02d}",
            trial=t,
            adversaries=(3,),
            visibility=star(4, 3),
            hub=3,
            seed=t,
            experiment="byzantine_star",
            fail=((2, 0),) if t == 1 else (),
            talk_fail=((1, 1),) if t == 2 else (),
        )
        datas.setdefault("byzantine_star_v1/hub_is_adversary", []).append(d)
        hub = t % 3
        d = make_trial(
            src_star / "hub_is_honest" / f"trial_{t:02d}",
            trial=t,
            adversaries=(3,),
            visibility=star(4, hub),
            hub=hub,
            seed=100 + t,
            experiment="byzantine_star",
        )
        datas.setdefault("byzantine_star_v1/hub_is_honest", []).append(d)
        # five players, two soft Byzantines, a directed visibility map (each sees the next)
        directed = {v: sorted({v, (v + 1) % 5, (v + 2) % 5}) for v in range(5)}
        d = make_trial(
            src_n5 / "adv_2" / f"trial_{t:02d}",
            n=5,
            rounds=4,
            trial=t,
            adversaries=(0, 4),
            soft_p=0.7,
            visibility=directed,
            seed=200 + t,
            experiment="byzantine_soft",
            fail=((3, 2),),
        )
        datas.setdefault("byzantine_n5/adv_2", []).append(d)
    out = base / "out"
    res = runner.invoke(app, ["import", "bct", str(src_star), str(src_n5), "--out", str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", str(out), "--n-boot", "100"])
    assert res.exit_code == 0, res.output
    return out, datas


def test_synthetic_numbers_match_the_study_analysis(
    synthetic: tuple[Path, dict[str, Any]],
) -> None:
    out, datas = synthetic
    cells = pd.read_parquet(out / "report" / "cooperation_by_cell.parquet").set_index("condition")
    rounds = pd.read_parquet(out / "report" / "cooperation_by_round.parquet")
    assert sorted(cells.index) == sorted(datas)
    for condition, group in datas.items():
        want = expected(group)
        row = cells.loc[condition]
        assert row["coord_rate"] == pytest.approx(want["phi"])
        assert row["stag_rate"] == pytest.approx(want["rho"])
        assert row["stag_all_rate"] == pytest.approx(want["rho_all"])  # failures as not stag
        got = rounds[rounds["condition"] == condition].set_index("round")["stag_rate"]
        assert got.to_dict() == pytest.approx(want["rounds"])


def test_synthetic_design_is_kept(synthetic: tuple[Path, dict[str, Any]]) -> None:
    out, _ = synthetic
    trials = {}
    for path in (out / "transcripts").glob("*.jsonl"):
        t = read_checked(path)
        trials.setdefault(t.header.trial.condition, []).append(t)
    hub_adv = trials["byzantine_star_v1/hub_is_adversary"]
    assert {t.header.trial.topology for t in hub_adv} == {"star(hub=3)"}
    assert {t.header.trial.adversary.label for t in hub_adv} == {"byzantine[1@hub]"}
    hub_honest = trials["byzantine_star_v1/hub_is_honest"]
    assert {t.header.trial.topology for t in hub_honest} == {"star(hub=varied)"}
    assert {t.header.trial.adversary.label for t in hub_honest} == {"byzantine[1@leaf]"}
    n5 = trials["byzantine_n5/adv_2"]
    t = n5[0]
    assert t.header.trial.game.n_players == 5 and t.header.trial.game.rounds == 4
    assert t.header.directed and t.header.trial.topology == "graph(custom)"
    assert t.header.trial.adversary.label == "soft(p=0.7)[2@seats[0, 4]]"
    assert sorted(s.seat for s in t.header.seats if s.role == "adversary") == [0, 4]
    assert (1, 0) in [tuple(e) for e in t.header.edges]  # Agent_1 sees Agent_2
    assert (0, 1) not in [tuple(e) for e in t.header.edges]  # Agent_2 does not see Agent_1
    # failed replies are parse failures, never hare
    first = next(t for t in hub_adv if t.header.trial.repetition == 0)
    act = [e for e in first.events if e.type == "action" and e.round == 2 and e.seat == 0][0]
    assert act.action is None and act.parse_failed
    second = next(t for t in hub_adv if t.header.trial.repetition == 1)
    msg = [e for e in second.events if e.type == "message" and e.round == 1 and e.sender == 1][0]
    assert msg.parse_failed and msg.text == "cooperate" and "fallback" in (msg.error or "")
    pf = pd.read_parquet(out / "report" / "parse_failures.parquet")
    per_model = pf.groupby("model")["no_valid_action"].sum()  # rows per role and cell
    assert per_model["Fam1"] == 1 and per_model["Fam3"] == 6
    comp = pd.read_parquet(out / "report" / "comparisons.parquet")
    placement = comp[comp["factor"] == "adversary"]
    assert set(zip(placement["a"], placement["b"], strict=True)) == {
        ("byzantine[1@hub]", "byzantine[1@leaf]")
    }


# -- bad input -------------------------------------------------------------------------------
def test_bad_files_are_recorded_failures_with_clear_reasons(tmp_path: Path) -> None:
    src = tmp_path / "exp"
    make_trial(src / "trial_01", trial=1)
    make_trial(src / "trial_02", trial=2, extra_meta={"rounds": 7})  # stopped early
    bad = make_trial(src / "trial_03", trial=3)
    bad["rounds_data"][1]["choices"]["Agent_2"] = "Hunt Deer"
    (src / "trial_03" / "results.json").write_text(json.dumps(bad))
    nometa = make_trial(src / "trial_04", trial=4)
    del nometa["metadata"]
    (src / "trial_04" / "results.json").write_text(json.dumps(nometa))
    (src / "trial_05").mkdir()
    (src / "trial_05" / "results.json").write_text("{not json")
    ghost = make_trial(src / "trial_06", trial=6)
    ghost["metadata"]["adversary_agents"] = ["Agent_9"]
    (src / "trial_06" / "results.json").write_text(json.dumps(ghost))
    liar = make_trial(src / "trial_07", trial=7)
    liar["rounds_data"][1]["payoffs"]["Agent_1"] = 99
    (src / "trial_07" / "results.json").write_text(json.dumps(liar))
    out = tmp_path / "out"
    res = runner.invoke(app, ["import", "bct", str(src), "--out", str(out)])
    assert res.exit_code == 1, res.output
    assert "imported 1 trials" in res.output
    text = " ".join(f.read_text() for f in (out / "failures").glob("*.txt"))
    for why in (
        "stopped after 5 of 7 rounds",
        "'Hunt Deer' is neither",
        "missing field 'metadata'",
        "not JSON",
        "are not players",
        "are not the game's",
    ):
        assert why in text or why in res.output, why
    report = runner.invoke(app, ["report", str(out), "--n-boot", "100"])
    assert report.exit_code == 0, report.output
    md = (out / "report" / "report.md").read_text()
    assert "LEFT OUT" in md.split("## Cooperation")[0]


def test_refusals(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(app, ["import", "bct", str(empty), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no results.json" in res.output
    res = runner.invoke(
        app, ["import", "bct", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "not found" in res.output
    src = tmp_path / "exp"
    make_trial(src / "trial_01")
    out = tmp_path / "out"
    assert runner.invoke(app, ["import", "bct", str(src), "--out", str(out)]).exit_code == 0
    again = runner.invoke(app, ["import", "bct", str(src), "--out", str(out)])
    assert again.exit_code == 2 and "already holds" in again.output
    res = runner.invoke(app, ["import", "textarena", str(src), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and re.search(r"importer", res.output)
    assert "bct" in IMPORTERS.names()


def test_sources_that_overlap_or_share_a_condition_are_refused_and_one_trial_keeps_its_place(
    tmp_path: Path,
) -> None:
    """A file under two sources (``results`` and ``results/byzantine``) would be two
    trials of two conditions (redteam19a: 10 trials from 8 files, a cell compared with its
    copy), and two folders of one name would pool their conditions: both are refused. A
    trial folder or file given on its own keeps its experiment in its condition (it was
    ``adv_2`` or ``trial_04``), and files of different experiments import together."""
    results = tmp_path / "results"
    for exp in ("byzantine", "byzantine_n5_test"):
        for t in (1, 2):
            make_trial(results / exp / "adv_2" / f"trial_{t:02d}", trial=t, seed=t)
    out = tmp_path / "o"
    res = runner.invoke(
        app, ["import", "bct", str(results), str(results / "byzantine"), "--out", str(out)]
    )
    assert res.exit_code == 2 and "under two sources" in " ".join(res.output.split())
    assert not (out / "transcripts").exists()
    res = runner.invoke(
        app,
        ["import", "bct", str(results / "byzantine" / "adv_2"),
         str(results / "byzantine_n5_test" / "adv_2"), "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 2 and "would mix" in " ".join(res.output.split())
    one = results / "byzantine" / "adv_2" / "trial_01"
    other = results / "byzantine_n5_test" / "adv_2" / "trial_02" / "results.json"
    res = runner.invoke(app, ["import", "bct", str(one), str(other), "--out", str(out)])
    assert res.exit_code == 0, res.output
    conditions = {read_checked(p).header.trial.condition for p in (out / "transcripts").iterdir()}
    assert conditions == {"byzantine/adv_2", "byzantine_n5_test/adv_2"}
    loose = tmp_path / "loose" / "trial_09"
    make_trial(loose, trial=9)
    res = runner.invoke(app, ["import", "bct", str(loose), "--out", str(tmp_path / "l")])
    assert res.exit_code == 0, res.output
    (path,) = (tmp_path / "l" / "transcripts").iterdir()
    assert read_checked(path).header.trial.condition == "loose"


def test_replies_the_harness_read_by_its_heuristic_are_parse_failures(tmp_path: Path) -> None:
    """A reply the harness could not load as JSON was read by its heuristic: the reasoning
    it kept is the raw reply cut at 200 characters, the word it sent the reply's first run
    of letters (redteam19a: ``byzantine_soft_v3``'s word "reasoning" out of
    ``{"reasoning": ...``, imported as a valid message), and the action it played a guess
    from the text. Both are parse failures; the action played stays (the study's figures
    count it); a reasoning that merely starts with the word is no failure."""
    src = tmp_path / "exp"
    data = make_trial(src / "trial_01", trial=1, seed=3)
    talk, act = data["rounds_data"][0], data["rounds_data"][1]
    raw = '{\n  "reasoning": "In Round 1, I think everyone will'
    talk["communications"]["Agent_1"] = "reasoning"
    talk["full_decisions"]["Agent_1"]["reasoning"] = raw
    talk["full_decisions"]["Agent_1"]["action"]["word"] = "reasoning"
    talk["communications"]["Agent_2"] = "Stag"
    talk["full_decisions"]["Agent_2"]["reasoning"] = "Stag is the best outcome."
    talk["full_decisions"]["Agent_2"]["action"]["word"] = "Stag"
    act["full_decisions"]["Agent_3"]["reasoning"] = '```json\n{"reasoning": "stag'
    played = act["choices"]["Agent_3"]
    (src / "trial_01" / "results.json").write_text(json.dumps(data))
    out = tmp_path / "out"
    assert runner.invoke(app, ["import", "bct", str(src), "--out", str(out)]).exit_code == 0
    (path,) = (out / "transcripts").iterdir()
    t = read_checked(path)
    said = {e.sender: e for e in t.events if e.type == "message" and e.round == 1}
    assert said[0].parse_failed and said[0].text == "reasoning" and "first word" in said[0].error
    assert not said[1].parse_failed and said[1].text == "Stag"
    (third,) = [e for e in t.events if e.type == "action" and e.round == 1 and e.seat == 2]
    assert third.parse_failed and third.action == {"Hunt Stag": "stag", "Hunt Hare": "hare"}[played]
    assert t.end.parse_failures == 2
