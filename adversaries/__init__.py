"""Adversaries as wrappers around any agent, and where to seat them.

Each kind is one registered wrapper (``stagbench.adversaries.registry``); importing this
package registers the built-in ones.
"""

from stagbench.adversaries.group import GroupPlan
from stagbench.adversaries.llm import Deceiver
from stagbench.adversaries.placement import PLACEMENTS, place, placement_warnings
from stagbench.adversaries.registry import (
    ADVERSARIES,
    AdversaryKind,
    adversary,
    check_adversary,
    inner_model,
    wrap_adversary,
)
from stagbench.adversaries.wrappers import (
    BaseWrapper,
    Byzantine,
    Delayed,
    Injector,
    SoftByzantine,
    Wrapper,
)

__all__ = [
    "ADVERSARIES",
    "PLACEMENTS",
    "AdversaryKind",
    "BaseWrapper",
    "Byzantine",
    "Deceiver",
    "Delayed",
    "GroupPlan",
    "Injector",
    "SoftByzantine",
    "Wrapper",
    "adversary",
    "check_adversary",
    "inner_model",
    "place",
    "placement_warnings",
    "wrap_adversary",
]
