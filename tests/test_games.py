import itertools

import pytest
from pydantic import ValidationError

from stagbench.errors import GameError
from stagbench.games import Action, GameConfig, GameState, payoffs

S, H = Action.STAG, Action.HARE


# Hand-computed table for the default game: 4 players, unanimity, 10 / 3 / 0.
DEFAULT_TABLE = {
    (S, S, S, S): (10, 10, 10, 10),
    (S, S, S, H): (0, 0, 0, 3),
    (S, S, H, S): (0, 0, 3, 0),
    (S, H, S, S): (0, 3, 0, 0),
    (H, S, S, S): (3, 0, 0, 0),
    (S, S, H, H): (0, 0, 3, 3),
    (S, H, S, H): (0, 3, 0, 3),
    (S, H, H, S): (0, 3, 3, 0),
    (H, S, S, H): (3, 0, 0, 3),
    (H, S, H, S): (3, 0, 3, 0),
    (H, H, S, S): (3, 3, 0, 0),
    (S, H, H, H): (0, 3, 3, 3),
    (H, S, H, H): (3, 0, 3, 3),
    (H, H, S, H): (3, 3, 0, 3),
    (H, H, H, S): (3, 3, 3, 0),
    (H, H, H, H): (3, 3, 3, 3),
}


def test_every_joint_action_at_four_players() -> None:
    cfg = GameConfig()
    assert len(DEFAULT_TABLE) == 16
    for joint, expected in DEFAULT_TABLE.items():
        assert payoffs(cfg, joint) == tuple(float(x) for x in expected), joint


def test_threshold_three_of_five_with_other_payoffs() -> None:
    cfg = GameConfig(n_players=5, threshold=3, stag_payoff=8, hare_payoff=2, failed_stag_payoff=-1)
    assert payoffs(cfg, (S, S, S, H, H)) == (8, 8, 8, 2, 2)
    assert payoffs(cfg, (S, S, H, H, H)) == (-1, -1, 2, 2, 2)
    assert payoffs(cfg, (S, S, S, S, S)) == (8,) * 5
    assert payoffs(cfg, (H,) * 5) == (2,) * 5


@pytest.mark.parametrize("n", [2, 3, 6])
def test_unanimity_at_other_sizes(n: int) -> None:
    cfg = GameConfig(n_players=n)
    for joint in itertools.product((S, H), repeat=n):
        pay = payoffs(cfg, joint)
        all_stag = all(a is S for a in joint)
        for a, p in zip(joint, pay, strict=True):
            assert p == (3.0 if a is H else (10.0 if all_stag else 0.0))


def test_two_players_threshold_one() -> None:
    cfg = GameConfig(n_players=2, threshold=1)
    assert payoffs(cfg, (S, H)) == (10, 3)


def test_invalid_action_forfeits_and_breaks_unanimity() -> None:
    cfg = GameConfig(invalid_payoff=-2)
    assert payoffs(cfg, (S, S, S, None)) == (0, 0, 0, -2)
    cfg3 = GameConfig(threshold=3)
    assert payoffs(cfg3, (S, S, S, None)) == (10, 10, 10, 0)


def test_wrong_number_of_actions() -> None:
    with pytest.raises(GameError, match="expected 4 actions"):
        payoffs(GameConfig(), (S, S))


def test_state_plays_rounds_then_stops() -> None:
    state = GameState(GameConfig(rounds=2))
    r1 = state.apply_joint_action((S, S, S, S))
    assert (r1.round, r1.stag_count, r1.hunt_succeeded) == (1, 4, True)
    r2 = state.apply_joint_action((S, H, S, S))
    assert (r2.round, r2.stag_count, r2.hunt_succeeded) == (2, 3, False)
    assert state.is_terminal
    assert state.totals() == (10, 13, 10, 10)
    with pytest.raises(GameError, match="over"):
        state.apply_joint_action((S, S, S, S))


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="threshold 5 exceeds"):
        GameConfig(threshold=5)
    with pytest.raises(ValidationError):
        GameConfig(n_players=1)
    with pytest.raises(ValidationError):
        GameConfig(rounds=0)
    with pytest.raises(ValidationError):
        GameConfig(unknown=1)  # type: ignore[call-arg]
    assert GameConfig().stag_needed == 4
    assert GameConfig(threshold=2).stag_needed == 2
