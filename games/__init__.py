"""The N-player repeated Stag Hunt as a pure, synchronous engine (no I/O, no LLM)."""

from stagbench.games.players import player_label
from stagbench.games.stag_hunt import Action, GameState, RoundResult, payoffs
from stagbench.records import GameConfig

__all__ = ["Action", "GameConfig", "GameState", "RoundResult", "payoffs", "player_label"]
