"""What a reply with no valid action earns is a rule like any other (redteam rt30 F7):
with an ``invalid_payoff`` other than the default, every wording of the rules says it; with
the default, the rules read exactly as they always did (the goldens hold them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagbench.agents.base import AgentView
from stagbench.agents.prompts import PARAPHRASES, render_system
from stagbench.games import GameConfig
from stagbench.records import read_transcript

from analysis_helpers import run_spec


def _system(variant: str, **game: float) -> str:
    view = AgentView(seat=0, config=GameConfig(**game), round=1, phase=0, topology=None)
    return render_system(view, variant, delimit=False)


@pytest.mark.parametrize("variant", list(PARAPHRASES))
def test_a_costly_failed_reply_is_in_the_rules(variant: str) -> None:
    plain = _system(variant).splitlines()
    costly = _system(variant, invalid_payoff=-2.5).splitlines()
    extra = [line for line in costly if line not in plain]
    assert len(costly) == len(plain) + 1 and len(extra) == 1, extra
    assert "-2.5" in extra[0] and extra[0].startswith("- ")
    # it follows the payoff rules, before the horizon
    assert costly.index(extra[0]) == 4
    assert _system(variant, invalid_payoff=1.0).count("\n- ") == 4


@pytest.mark.parametrize("variant", list(PARAPHRASES))
def test_the_default_invalid_payoff_leaves_the_rules_as_they_were(variant: str) -> None:
    assert _system(variant, invalid_payoff=0.0) == _system(variant)
    assert _system(variant).count("\n- ") == 3


SPEC = """
name = "invalid"
seed = 2
[game]
rounds = 2
invalid_payoff = -2
[factors]
models = ["mock/garbage"]
"""


def test_agents_told_the_cost_of_a_failed_reply_pay_it(tmp_path: Path) -> None:
    out = run_spec(SPEC, tmp_path / "run", llm=True)
    (path,) = sorted((out / "transcripts").glob("*.jsonl"))
    t = read_transcript(path)
    rule = (
        "- A player whose reply gives no valid action (stag or hare) gets -2 points and does "
        "not count as a stag hunter."
    )
    assert all(rule in (s.system or "").splitlines() for s in t.header.seats)
    assert t.end.totals == [-4.0] * 4  # two rounds of no valid action, as told
