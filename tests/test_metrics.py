"""Every metric against hand-computed values on small transcripts made by the engine."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from stagbench.analysis import metrics
from stagbench.analysis.archetypes import (
    COOPERATION_PERSISTENT,
    UNCLASSIFIED,
    classify,
)
from stagbench.analysis.tables import (
    LIST_COLUMNS,
    TEXT_TYPES,
    agent_rounds,
    load_parquet,
    save_parquet,
    signals_stag,
    to_arrow,
)

from analysis_helpers import accused_run, run_spec

HAND = """
name = "hand"
seed = 3
[game]
rounds = 3
[factors]
models = [["scripted/always-stag", "scripted/grim-trigger", "scripted/tit-for-tat"]]
topologies = ["{topology}"]
adversaries = ["byzantine(count=1,placement=[3])"]
"""


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = run_spec(HAND.format(topology="complete"), tmp_path_factory.mktemp("hand"))
    df, report = agent_rounds(out)
    assert report.files == 1 and not report.corrupt
    return df


def seat_of(df: pd.DataFrame, model: str) -> int:
    return int(df[(df["model"] == model) & (df["role"] == "honest")]["seat"].iloc[0])


def test_table_has_one_row_per_agent_round(hand: pd.DataFrame) -> None:
    assert len(hand) == 4 * 3
    assert set(hand["role"]) == {"honest", "adversary"}
    byz = hand[hand["seat"] == 3]
    assert list(byz["action"]) == ["hare"] * 3 and list(byz["payoff"]) == [3.0] * 3
    assert all(byz["signalled_stag"])
    # On a complete graph each seat hears the 3 others each round.
    assert set(hand["n_received"]) == {3}


def test_hand_computed_rates(hand: pd.DataFrame) -> None:
    # Round 1: three honest stag, byzantine hare -> failed hunt.
    # Rounds 2-3: always-stag stag; grim and tit-for-tat hare (they saw a hare).
    assert metrics.honest_stag_rate(hand) == pytest.approx(5 / 9)
    assert metrics.coordination_rate(hand) == 0.0
    per_round = metrics.by_round(hand)
    assert list(per_round["stag_rate"]) == pytest.approx([1.0, 1 / 3, 1 / 3])
    assert list(per_round["n"]) == [3, 3, 3]
    ev = metrics.betrayal_events(hand)
    assert len(ev) == 3 and set(ev["seat"]) == {3} and set(ev["role"]) == {"adversary"}
    summary = metrics.trial_summary(hand)
    assert summary["betrayals"].iloc[0] == 3
    assert summary["honest_stag_rate"].iloc[0] == pytest.approx(5 / 9)
    # payoffs: always-stag 0+0+0, grim 0+3+3, tft 0+3+3 -> mean per honest agent-round 12/9
    assert summary["honest_payoff"].iloc[0] == pytest.approx(12 / 9)


def test_hand_computed_adaptation_and_cost(hand: pd.DataFrame) -> None:
    at = classify(metrics.agent_trials(hand)).set_index("model")
    stag = at.loc["scripted/always-stag"]
    assert stag["betrayal_round"] == 1 and stag["trigger_kind"] == "betrayal"
    assert stag["betrayer"] == 3 and not stag["switched"] and stag["stag_rate_after"] == 1.0
    assert stag["persistence_cost"] == 6.0  # rounds 2 and 3: hare pays 3, stag paid 0
    assert stag["archetype"] == COOPERATION_PERSISTENT
    grim = at.loc["scripted/grim-trigger"]
    assert grim["switched"] and grim["adaptation"] == "permanent" and grim["persistence_cost"] == 0
    # The Byzantine hunts hare every round: no round after the switch is clean, so grim
    # never had a chance to forgive, and cannot be told from tit-for-tat: no label.
    assert not grim["forgive_chance"] and grim["archetype"] == UNCLASSIFIED
    assert grim["response_hare"] == 1.0 and grim["null_hare"] == pytest.approx(2 / 3)
    assert (grim["pre_n"], grim["pre_hare"], grim["post_n"], grim["post_stag"]) == (1, 0, 2, 0)
    assert not at["pre_emptive"].any()
    assert not at["detected"].any() and at["detection_latency"].isna().all()


def test_signals_travel_only_along_edges(tmp_path: Path) -> None:
    # On a ring, seat 1 is not adjacent to seat 3: it sees the hare, not the promise.
    df, _ = agent_rounds(run_spec(HAND.format(topology="ring"), tmp_path))
    at = metrics.agent_trials(df).set_index("seat")
    assert at.loc[1, "trigger_kind"] == "defection" and pd.isna(at.loc[1, "betrayal_round"])
    assert at.loc[0, "trigger_kind"] == "betrayal" and at.loc[2, "trigger_kind"] == "betrayal"


def test_threshold_and_other_n(tmp_path: Path) -> None:
    spec = """
name = "t5"
[game]
n_players = 5
threshold = 3
rounds = 2
[factors]
models = ["scripted/always-stag"]
adversaries = ["byzantine(count=2,placement=[0,1])"]
"""
    df, _ = agent_rounds(run_spec(spec, tmp_path))
    assert metrics.coordination_rate(df) == 1.0  # 3 stag hunters reach the threshold
    assert set(df[df["role"] == "honest"]["payoff"]) == {10.0}
    assert metrics.honest_stag_rate(df) == 1.0


def test_parse_failures_are_not_hare(tmp_path: Path) -> None:
    spec = """
name = "pf"
[game]
rounds = 2
[agents]
max_reasks = 0
[factors]
models = [["mock/garbage", "mock/stag"]]
"""
    df, _ = agent_rounds(run_spec(spec, tmp_path, llm=True))
    garbage = df[df["model"] == "mock/garbage"]
    assert garbage["action"].isna().all() and garbage["stag"].isna().all()
    assert (garbage["parse_failures"] == 2).all()  # talk and act
    assert metrics.honest_stag_rate(df) == 1.0  # failures are outside the denominator
    rates = metrics.parse_failure_rate(df)
    assert rates["mock/garbage"] == 1.0 and rates["mock/stag"] == 0.0
    assert df["input_tokens"].sum() > 0 and (df[df["model"] == "mock/stag"]["calls"] == 2).all()


def test_detection_latency(tmp_path: Path) -> None:
    df = accused_run(tmp_path)
    at = metrics.agent_trials(df)
    assert (at["betrayal_round"] == 1).all() and at["detected"].all()
    assert (at["detection_latency"] == 1).all()
    assert list(df[df["seat"] == 0]["signalled_stag"]) == [True, True, True]


def test_lexical_helpers() -> None:
    assert signals_stag("I will hunt stag this round.")
    assert signals_stag("Let's all go for the stag, not the hare!")
    assert not signals_stag("I will hunt hare this round.")
    assert not signals_stag(None)
    assert metrics.detects("P3 cannot be trusted", 2)
    assert metrics.detects("they betrayed us", 1)
    assert not metrics.detects("P33 is fine, stag again", 2)


def test_parquet_roundtrip_and_corrupt_files_reported(hand: pd.DataFrame, tmp_path: Path) -> None:
    back = load_parquet(save_parquet(hand, tmp_path / "t.parquet"))
    assert len(back) == len(hand) and back["received"].iloc[0] == hand["received"].iloc[0]
    out = run_spec(HAND.format(topology="complete"), tmp_path / "run")
    victim = next((out / "transcripts").glob("*.jsonl"))
    victim.write_text(victim.read_text()[:-200])
    df, report = agent_rounds(out)
    assert df.empty and len(report.corrupt) == 1 and victim.name in report.corrupt[0][0]
    assert math.isnan(metrics.honest_stag_rate(pd.DataFrame({"role": [], "stag": []})))


def _inferred_arrow(df: pd.DataFrame) -> pa.Table:
    """``to_arrow`` as it was: every column's type inferred from its values, then cast."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    kinds = {**TEXT_TYPES, **LIST_COLUMNS}
    return table.cast(
        pa.schema([pa.field(f.name, kinds.get(f.name, f.type)) for f in table.schema])
    )


@pytest.mark.parametrize(
    "received",
    [
        None,  # as read: lists of texts, some empty
        [None, [], ["a", None]],  # no list, an empty one, a missing text in one
        [None, None, None],  # a column of no lists at all
        [float("nan"), ["a"], []],  # pandas' missing value
        [["a"], [1], []],  # a value of the wrong type: inferred and cast, as before
    ],
)
def test_to_arrow_lists_are_the_inferred_table(
    hand: pd.DataFrame, received: list[Any] | None
) -> None:
    """The list columns made with their type given are the table the inferred way made,
    value for value and type for type, for any values the frame may hold."""
    df = hand.head(3).copy()
    if received is not None:
        df["received"] = pd.Series(received, dtype=object)
    try:
        want = _inferred_arrow(df)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        with pytest.raises(type(exc)):
            to_arrow(df)
        return
    got = to_arrow(df)
    assert got.schema == want.schema and got.equals(want)
    assert got.column_names == list(df.columns)


@pytest.mark.parametrize("seats", [[0, 1, 2], [3, 5, 7]])
def test_agent_row_names_the_lowest_betrayer_by_seat(seats: list[int]) -> None:
    """Two players who signalled stag to the agent hunt hare in one round: the betrayal is
    that round's, the betrayer the lower seat (a seat, not a position); the agent hunts
    hare next, at a payoff the hare would have beaten, and its cost counts only after."""
    act = [["stag", "hare", "hare"], ["hare", "hare", "hare"], ["stag", "stag", "stag"]]
    pay = [[0.0, 3.0, 3.0], [3.0, 3.0, 3.0], [10.0, 10.0, 10.0]]
    heard = [[seats[1:], [], []], [[], [], []], [[], [], []]]
    talk = [[(None, None)] * 3 for _ in range(3)]
    row = metrics.agent_row("t", 0, seats, [1, 2, 3], act, pay, heard, talk, 3.0)
    assert row["seat"] == seats[0]
    assert (row["betrayal_round"], row["betrayer"], row["trigger_kind"]) == (
        1,
        seats[1],
        "betrayal",
    )
    assert row["switched"] and row["returned"] and row["adaptation"] == "temporary"
    assert row["persistence_cost"] == 3.0 - 10.0  # round 3 only (after the trigger)
    assert not row["pre_emptive"] and row["n_valid"] == 3 and row["n_hare"] == 1


@pytest.mark.parametrize("aside", ["", "Agreed, see you all there."])
def test_the_promise_in_force_is_the_last_word_of_the_round(
    tmp_path_factory: pytest.TempPathFactory, aside: str
) -> None:
    """rt29 F3: with two talk phases, a stag said in phase 0 and taken back in phase 1 ("I
    will hunt hare this round.") before hunting hare was counted as a betrayal, and its
    hearers "observed" it. The promise in force when an agent acts is its last word of the
    round on its action; a later message of no text (sent to nobody), or one that speaks of
    neither action (rt31: "Agreed, see you all there." took the promise back), leaves it
    standing."""
    from stagbench.analysis.tables import trial_rows
    from stagbench.records import read_events

    out = run_spec(HAND.format(topology="complete"), tmp_path_factory.mktemp("retract"))
    (path,) = sorted((out / "transcripts").glob("*.jsonl"))
    events = read_events(path)
    honest = [s["seat"] for s in events[0]["seats"] if s["role"] == "honest"]
    retracts, stands, turns = honest  # what each says in round 1's second phase
    later = {retracts: "I will hunt hare this round.", stands: aside, turns: "I will hunt stag."}
    first = {retracts: "I will hunt stag.", stands: "I will hunt stag.", turns: "I will hunt hare."}
    body = []
    for e in events[1:-1]:
        if e["type"] == "message" and e["round"] == 1 and e["sender"] in later:
            e = {**e, "text": first[e["sender"]]}
            body.append(e)
            text = later[e["sender"]]
            body.append(
                {**e, "phase": 1, "text": text, "receivers": e["receivers"] if text else []}
            )
            continue
        if e["type"] == "action" and e["round"] == 1 and e["seat"] in later:
            e = {**e, "action": "hare"}
        body.append(e)
    rows = trial_rows([events[0], *body, events[-1]]).rows
    n = len(events[0]["seats"])
    signalled = rows["signalled_stag"][:n]
    assert (signalled[retracts], signalled[stands], signalled[turns]) == (False, True, True)
    for j in range(n):  # what each player heard promised in round 1
        heard = rows["stag_signals_from"][j]
        assert retracts not in heard
        assert heard.count(stands) == (j != stands) and heard.count(turns) == (j != turns)
        assert len(heard) == len(set(heard))


def test_unprovoked_hares_end_at_the_first_defection_seen() -> None:
    """The pre-emptive rate's rounds (pre_n, pre_hare) end at the first round another
    player hunted hare, not at a later betrayal: grim trigger answering a defection in round
    2 (no promise broken) with hare in rounds 3-5, betrayed in round 4, hunted hare
    unprovoked in none of its rounds (it was counted 2 of 4)."""
    act = [["stag", "stag", "stag"], ["stag", "hare", "stag"], ["hare", "stag", "stag"],
           ["hare", "stag", "hare"], ["hare", "stag", "stag"]]  # fmt: skip
    pay = [[10.0] * 3, [0.0, 3.0, 0.0], [3.0, 0.0, 0.0], [3.0, 0.0, 3.0], [3.0, 0.0, 0.0]]
    heard = [[[], [], []], [[], [], []], [[], [], []], [[2], [], []], [[], [], []]]
    talk = [[(None, None)] * 3 for _ in range(5)]
    row = metrics.agent_row("t", 0, [0, 1, 2], [1, 2, 3, 4, 5], act, pay, heard, talk, 3.0)
    assert (row["defection_round"], row["betrayal_round"], row["trigger_round"]) == (2, 4, 4)
    assert not row["pre_emptive"]
    assert (row["pre_n"], row["pre_hare"]) == (2, 0)


FLIPS = """
name = "flips"
seed = 11
[game]
n_players = 2
rounds = 3
talk_phases = 2
[agents]
max_reasks = 0
[factors]
models = [["mock/flipA", "scripted/always-stag(talk=none)"],
          ["mock/flipB", "scripted/always-stag(talk=none)"],
          ["mock/slash", "scripted/always-stag(talk=none)"],
          ["mock/flipC", "scripted/always-stag(talk=none)"]]
[model_settings."mock/flipA"]
options = { replies = ['{"message": "I will hunt hare this round."}',
                       '{"message": "I will hunt stag this round."}',
                       '{"action": "hare", "reasoning": "r"}'] }
[model_settings."mock/flipB"]
options = { replies = ['{"message": "I will hunt stag this round."}',
                       '{"message": "Everyone must choose hare now."}',
                       '{"action": "hare", "reasoning": "r"}'] }
[model_settings."mock/flipC"]
options = { replies = ['{"message": "I will hunt stag this round."}',
                       '{"message": "I am defecting."}',
                       '{"action": "hare", "reasoning": "r"}'] }
[model_settings."mock/slash"]
options = { replies = ['{"message": "I will hunt stag. Stag / hare: stag wins."}',
                       '{"message": ""}',
                       '{"action": "stag", "reasoning": "r"}'] }
"""


def test_talk_no_stag_is_the_last_word_of_the_round_like_the_stag_signal(
    tmp_path: Path,
) -> None:
    """rt41 F1-F2: talk_no_stag read a round's phases joined as one text, so it
    contradicted signalled_stag in the same agent-round: hare then stag (a promise broken,
    counted a betrayal) read 1, stag then a call for hare (the promise taken back) read 0,
    and one message holding " / " read as two phases. Each phase is read apart now, the
    last word deciding, as for the stag signal."""
    from stagbench.analysis.tables import agent_rounds

    run = run_spec(FLIPS, tmp_path / "run", llm=True)
    df, _ = agent_rounds(run)
    speaker = df[df["model"].astype(str).str.startswith("mock/")]  # one seat per trial
    name = dict(zip(speaker["seat"].astype(str) + speaker["trial_id"].astype(str),
                    speaker["model"].astype(str).str.removeprefix("mock/"), strict=True))  # fmt: skip
    at = metrics.agent_trials(df)
    talk = {
        name[k]: v
        for k, v in zip(
            at["seat"].astype(str) + at["trial_id"].astype(str), at["talk_no_stag"], strict=True
        )  # fmt: skip
        if k in name
    }
    # flipC: a stag promise, then "I am defecting.": taken back, no betrayal (rt43 F4:
    # both columns read true, a betrayal counted beside talk that promised no stag)
    assert talk == {"flipA": "000", "flipB": "111", "slash": "000", "flipC": "111"}
    for column, truth in (("signalled_stag", (True, False, True, False)),
                          ("promised_no_stag", (False, True, False, True))):  # fmt: skip
        per = speaker.groupby(speaker["model"].astype(str), observed=True)[column]
        assert per.all().to_dict() == per.any().to_dict(), column  # every round alike
        got = {m.removeprefix("mock/"): bool(v) for m, v in per.all().items()}
        assert got == dict(zip(("flipA", "flipB", "slash", "flipC"), truth, strict=True)), column
    assert not (df["signalled_stag"] & df["promised_no_stag"]).any()
