"""Adversaries as wrappers around any agent, and where to seat them."""

from adversaries.placement import PLACEMENTS, place
from adversaries.wrappers import (
    ADVERSARIES,
    Byzantine,
    Delayed,
    GroupPlan,
    Injector,
    SoftByzantine,
    wrap_adversary,
)

__all__ = [
    "ADVERSARIES",
    "Byzantine",
    "Delayed",
    "GroupPlan",
    "Injector",
    "PLACEMENTS",
    "SoftByzantine",
    "place",
    "wrap_adversary",
]
