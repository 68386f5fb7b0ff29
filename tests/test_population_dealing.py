"""A mixed population's honest seats: every entry of the list has the same expected share
of them in every adversary arm (an arm leaves fewer honest seats; dealt from the start of
the list, the last entries lost their seats, and the arm's "effect" was partly a change of
population). A list that divides the honest seats is dealt as before; a transcript dealt
before the fix still replays."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from stagbench.records import read_transcript
from stagbench.runs.compose import seat_agents
from stagbench.runs.estimate import _llm_seats
from stagbench.runs.replay import check
from stagbench.runs.spec import parse_spec

from helpers import RecorderSeats

#: the golden run's trials with two adversaries of four seats, as stagbench dealt them
#: before the fix (``golden/v2``: its v1 files migrated)
LEGACY = [
    Path(__file__).parent / "golden" / "v2" / name
    for name in ("2f73f0e84594b7f4.jsonl", "db6848784c512e8c.jsonl")
]

#: the red team's design: two strategies that react to nothing, so no arm can change
#: what the honest seats play; only who holds them
STAG_HARE = """
name = "deal"
seed = 5
repetitions = {reps}
[game]
n_players = 3
rounds = 1
[factors]
models = [["scripted/always-stag", "scripted/always-hare"]]
adversaries = ["none", "byzantine(count=1)", "byzantine(count=2)"]
"""


class _AnySeats(RecorderSeats):
    def __init__(self) -> None:
        super().__init__({})

    def build_adversary(self, seat: int, inner: str, rng: random.Random, group: object):  # type: ignore[no-untyped-def, override]
        return self.build(inner, seat, rng)


def _honest(trial: object, legacy: bool = False) -> list[str]:
    seating = seat_agents(trial, _AnySeats(), legacy=legacy)  # type: ignore[arg-type]
    return [s.model for s in seating.seats if s.role == "honest"]


def test_every_model_has_the_same_expected_share_of_the_honest_seats_in_every_arm() -> None:
    trials = parse_spec(STAG_HARE.format(reps=200)).trials()
    share: dict[int, Counter[str]] = {}
    for t in trials:
        share.setdefault(t.adversary.count, Counter()).update(_honest(t))
    assert set(share) == {0, 1, 2}
    for count, seats in share.items():
        hare = seats["scripted/always-hare"] / sum(seats.values())
        # 200 trials: the share's sd is at most 0.035 (one honest seat a trial)
        assert abs(hare - 0.5) < 0.12, (count, seats)
    # one honest seat: each model holds it in some trials (dealt from the list's start,
    # always-hare never sat, and "byzantine(count=2)" looked like it made everyone hunt stag)
    assert share[2]["scripted/always-hare"] > 0 and share[2]["scripted/always-stag"] > 0


def test_a_list_that_divides_the_honest_seats_is_dealt_as_before() -> None:
    text = STAG_HARE.format(reps=20).replace("n_players = 3", "n_players = 4")
    text = text.replace('"byzantine(count=1)", ', "")  # 4 and 2 honest seats
    divisible = parse_spec(text).trials()
    assert all(_honest(t) == _honest(t, legacy=True) for t in divisible)
    # and one that does not is dealt at random, not always from the start
    odd = [t for t in parse_spec(STAG_HARE.format(reps=20)).trials() if t.adversary.count == 2]
    assert {tuple(_honest(t)) for t in odd} == {
        ("scripted/always-stag",),
        ("scripted/always-hare",),
    }
    assert {tuple(_honest(t, legacy=True)) for t in odd} == {("scripted/always-stag",)}


def test_the_cost_estimate_seats_the_models_the_run_seats() -> None:
    text = """
name = "estimate"
seed = 3
repetitions = 12
[factors]
models = [["mock/stag", "mock/hare", "mock/random"]]
adversaries = ["none", "byzantine(count=1)", "byzantine(count=2)"]
"""
    trials = parse_spec(text).trials()
    assert {t.adversary.count for t in trials} == {0, 1, 2}  # 4, 3 and 2 honest seats
    for t in trials:
        estimated = Counter(m for m, _ in _llm_seats(t))
        assert estimated == Counter(_honest(t)), t.trial_id


def test_a_transcript_dealt_before_the_fix_still_replays() -> None:
    """The golden run's two trials with two adversaries of four seats, as stagbench dealt
    them before (a list of three models over two honest seats: the first two, never
    grim-trigger): the check re-deals them so, and finds nothing; the same file with a
    seat's model changed is still caught."""
    for path in LEGACY:
        transcript = read_transcript(path)
        trial = transcript.header.trial
        recorded = [s.model for s in transcript.header.seats if s.role == "honest"]
        assert sorted(recorded) == sorted(_honest(trial, legacy=True))
        assert "scripted/grim-trigger" not in recorded
        assert check(transcript) == []
        seats = list(transcript.header.seats)
        i = next(k for k, s in enumerate(seats) if s.role == "honest")
        other = next(m for m in trial.models if m != seats[i].model)
        seats[i] = seats[i].model_copy(update={"model": other})
        tampered = transcript.model_copy(
            update={"header": transcript.header.model_copy(update={"seats": seats})}
        )
        assert any("seating differs" in p for p in check(tampered))
