"""How seats are named to players, in prompts, tables and replays alike."""

from __future__ import annotations


def player_label(seat: int) -> str:
    """Seat 0 is ``P1``: players are numbered from one where people and models read them."""
    return f"P{seat + 1}"
