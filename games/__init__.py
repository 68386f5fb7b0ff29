"""The N-player repeated Stag Hunt as a pure, synchronous engine (no I/O, no LLM)."""

from games.config import GameConfig
from games.stag_hunt import Action, GameState, RoundResult, payoffs

__all__ = ["Action", "GameConfig", "GameState", "RoundResult", "payoffs"]
