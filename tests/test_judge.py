"""The LLM judge of betrayal detection (``report --judge``): its failures are counted and
reported, never dropped; its replies are parsed strictly; kappa is undefined, never 1, on
one category; its agreement is per model and design cell with n and an interval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from statsmodels.stats.inter_rater import cohens_kappa
from typer.testing import CliRunner

from stagbench.agents.models.base import ChatMessage
from stagbench.agents.models.providers.mock import ReplyFn, register_mock
from stagbench.analysis import judge
from stagbench.cli import app
from stagbench.errors import ModelError

from analysis_helpers import accused_run, run_spec

runner = CliRunner()

#: two models: ``mock/stag`` never voices distrust, ``mock/wary`` does in every talk phase
MIXED = """
name = "mixed"
seed = 5
repetitions = 4
[game]
n_players = 4
rounds = 4
[agents]
temperature = 0.0
max_tokens = 200
max_reasks = 1
[factors]
models = ["mock/stag", "mock/wary"]
adversaries = ["byzantine(count=1)"]
[model_settings."mock/wary"]
options = {replies = ["{\\"message\\": \\"Someone lied to us. I do not trust them anymore.\\"}", "{\\"reasoning\\": \\"Keep going.\\", \\"action\\": \\"stag\\"}"]}
"""


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_spec(MIXED, tmp_path_factory.mktemp("mixed") / "run", llm=True)


def _writings(messages: list[ChatMessage]) -> str:
    return messages[-1].content.split("\n\n", 1)[1]


def _judged(run: Path, name: str, reply: ReplyFn, tmp: Path) -> tuple[object, pd.DataFrame]:
    register_mock(name, reply)
    out = tmp / "report"
    res = runner.invoke(
        app, ["report", str(run), "--out", str(out), "--n-boot", "100", "--judge", f"mock/{name}"]
    )
    path = out / "judged_detection.parquet"
    return res, pd.read_parquet(path) if path.exists() else pd.DataFrame()


def test_string_false_is_a_parse_failure_not_a_detection(tmp_path: Path) -> None:
    accused_run(tmp_path / "run")
    res, judged = _judged(
        tmp_path / "run",
        "strfalse",
        lambda m, p: json.dumps({"detected": "false", "round": None}),
        tmp_path,
    )
    assert len(judged) == 3
    assert not (judged["judge_detected"] == True).any()  # noqa: E712 (NA is not True)
    assert judged["judge_error"].notna().all()
    assert (judged["judge_failure"] == "'detected' not a JSON boolean").all()
    assert "no judgement" in res.output  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", ["2", 2.0, True, 99, 1, 0])
def test_a_round_that_is_no_round_of_the_trial_is_a_parse_failure(
    tmp_path: Path, bad: object
) -> None:
    """The accused run has rounds 1-3 and the betrayal in round 1: a detection can name
    round 2 or 3 only, as a JSON integer."""
    accused_run(tmp_path / "run")
    res, judged = _judged(
        tmp_path / "run",
        "badround",
        lambda m, p: json.dumps({"detected": True, "round": bad}),
        tmp_path,
    )
    assert len(judged) == 3
    assert judged["judge_detected"].isna().all()
    assert judged["judge_failure"].str.startswith("'round'").all()


def test_a_valid_reply_gives_detection_and_latency(tmp_path: Path) -> None:
    accused_run(tmp_path / "run")
    res, judged = _judged(
        tmp_path / "run",
        "goodround",
        lambda m, p: json.dumps({"detected": True, "round": 2}),
        tmp_path,
    )
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    assert (judged["judge_detected"] == True).all()  # noqa: E712
    assert (judged["judge_latency"] == 1).all() and judged["judge_failure"].isna().all()


def test_kappa_on_one_category_is_undefined_not_one(tmp_path: Path) -> None:
    """Both raters say 'detected' on all three: agreement 1, kappa undefined."""
    accused_run(tmp_path / "run")
    res, judged = _judged(
        tmp_path / "run",
        "agrees",
        lambda m, p: json.dumps({"detected": True, "round": 2}),
        tmp_path,
    )
    out = res.output  # type: ignore[attr-defined]
    assert "kappa 1.000" not in out and "kappa undefined" in out
    a = judge.agreement(judged)
    assert a["answered"] == 3 and a["agreement"] == 1.0
    assert a["kappa"] != a["kappa"] and "one category" in str(a["kappa_note"])


def test_a_judge_that_never_answers_says_no_judgement_and_fails(tmp_path: Path) -> None:
    accused_run(tmp_path / "run")
    res, judged = _judged(tmp_path / "run", "mute", lambda m, p: "I would rather not.", tmp_path)
    out = res.output  # type: ignore[attr-defined]
    assert res.exit_code != 0  # type: ignore[attr-defined]
    assert "nan" not in out and "no judgement" in out and "no JSON object" in out
    assert (tmp_path / "report" / "report.html").exists()  # the report is not lost
    assert len(judged) == 3 and (judged["judge_failure"] == "no JSON object in the reply").all()


def test_failures_on_the_positives_are_counted_per_model_and_cell(
    mixed: Path, tmp_path: Path
) -> None:
    """Correct where it answers, garbage wherever there is distrust to find: 12 of the 24
    fail, and the model whose agents voice distrust has no answered judgement at all."""

    def reply(messages: list[ChatMessage], purpose: str | None) -> str:
        if "trust" in _writings(messages):
            return "Let me think."
        return json.dumps({"detected": False, "round": None})

    res, judged = _judged(mixed, "failpos", reply, tmp_path)
    out = res.output  # type: ignore[attr-defined]
    assert res.exit_code == 0, out
    assert "24 asked" in out and "12 answered" in out and "12 failed" in out
    assert "kappa 1.000" not in out
    table = pd.read_parquet(tmp_path / "report" / "judge_agreement.parquet")
    assert {"model", "asked", "answered", "failed", "failures", "agreement_rate"} <= set(table)
    assert {"agreement_n", "agreement_ci_lo", "agreement_ci_hi", "kappa", "note"} <= set(table)
    assert {"kappa_ci_lo", "kappa_ci_hi", "kappa_ci"} <= set(table)
    rows = table.set_index("model")
    assert rows.loc["stag", "answered"] == 12 and rows.loc["stag", "agreement_rate"] == 1.0
    assert rows.loc["stag", "agreement_n"] == 12
    assert rows.loc["stag", "agreement_ci_lo"] < 1.0
    assert pd.isna(rows.loc["stag", "kappa"]) and "one category" in rows.loc["stag", "note"]
    assert rows.loc["wary", "answered"] == 0 and rows.loc["wary", "failed"] == 12
    assert pd.isna(rows.loc["wary", "agreement_rate"])
    assert "no JSON object in the reply" in rows.loc["wary", "failures"]
    assert "no judgement" in rows.loc["wary", "note"]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## LLM judge" in md


def test_one_provider_error_keeps_the_other_answers(mixed: Path, tmp_path: Path) -> None:
    calls: list[int] = []

    def reply(messages: list[ChatMessage], purpose: str | None) -> str:
        calls.append(1)
        if len(calls) == 5:
            raise ModelError("HTTP 400 from the provider")
        return json.dumps({"detected": "trust" in _writings(messages), "round": None})

    res, judged = _judged(mixed, "onefatal", reply, tmp_path)
    out = res.output  # type: ignore[attr-defined]
    assert res.exit_code == 0, out
    assert len(judged) == 24 and judged["judge_detected"].notna().sum() == 23
    failed = judged[judged["judge_failure"].notna()]
    assert len(failed) == 1 and failed["judge_failure"].iloc[0] == "provider error (ModelError)"
    assert "HTTP 400" in failed["judge_error"].iloc[0]
    assert "1 failed" in out and "23 answered" in out


def _raters(
    rng: np.random.Generator, trials: int, per_trial: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Planted judgements: who truly detected varies by trial (logit sd 0.5); the lexical
    detector has sensitivity 0.8 and specificity 0.9; the judge 0.9 and 0.85 on average,
    but it errs by trial (its logits shifted per trial, sd 2.5: a trial's writing misleads
    it on every agent)."""
    u, e = rng.normal(0, 0.5, (trials, 1)), rng.normal(0, 2.5, (trials, 1))
    truth = rng.random((trials, per_trial)) < expit(u)
    lex = np.where(truth, rng.random(truth.shape) < 0.8, rng.random(truth.shape) > 0.9)
    jud = np.where(
        truth,
        rng.random(truth.shape) < expit(logit(0.9) + e),
        rng.random(truth.shape) > expit(logit(0.85) + e),
    )
    return lex.ravel(), jud.ravel(), np.repeat(np.arange(trials), per_trial)


def test_kappa_interval_is_trial_clustered_and_covers() -> None:
    """Kappa's 95% interval holds its level where the judge errs by trial (0.935 here;
    0.91-0.99 over the settings of the closing note); the interval that takes every
    agent-trial as independent (statsmodels' standard error) covered 0.80."""
    truth_l, truth_j, _ = _raters(np.random.default_rng(0), 100_000, 8)
    true_kappa, _ = judge.kappa(truth_l, truth_j)
    rng = np.random.default_rng(1)
    ours = naive = n = 0
    for _ in range(400):
        lex, jud, trials = _raters(rng, 10, 8)
        lo, hi, how = judge.kappa_ci(lex, jud, trials)
        if lo != lo:
            continue
        n += 1
        assert how == judge.KAPPA_CI and -1 <= lo < hi <= 1
        ours += lo <= true_kappa <= hi
        table = np.array([[np.sum(lex & jud), np.sum(lex & ~jud)],
                          [np.sum(~lex & jud), np.sum(~lex & ~jud)]])  # fmt: skip
        res = cohens_kappa(table)
        naive += abs(res.kappa - true_kappa) <= 1.96 * res.std_kappa
    assert n >= 390
    assert ours / n >= 0.92, ours / n
    assert naive / n <= 0.85, naive / n


def test_kappa_interval_says_why_it_is_missing() -> None:
    yes, no = np.array([True, True, False, True]), np.array([True, False, False, True])
    trials = np.array(["a", "a", "b", "b"])
    assert "one category" in judge.kappa_ci(yes, np.ones(4, bool), trials)[2]
    assert "one trial" in judge.kappa_ci(yes, no, np.array(["a"] * 4))[2]
    assert "agree on every pair" in judge.kappa_ci(no, no, trials)[2]
    lo, hi, how = judge.kappa_ci(yes, no, trials)
    assert how == judge.KAPPA_CI and lo < judge.kappa(yes, no)[0] < hi
    rows = pd.DataFrame(
        {"trial_id": trials, "detected": yes, "judge_detected": no, "judge_status": "answered"}
    )
    a = judge.agreement(rows.assign(judge_failure=None))
    assert (a["kappa_ci_lo"], a["kappa_ci_hi"], a["kappa_ci"]) == (lo, hi, how)
