"""The report's regression and the design factors that vary: each is in the formula, or a
note names it and says why it is not (redteam16 finding 6)."""

from __future__ import annotations

from pathlib import Path

from stagbench.analysis import report

from analysis_helpers import run_spec

#: the red team's d10_regdef: defence x prompt wording, a gullible model beside an injector
REGDEF = """
name = "regdef"
seed = 31
repetitions = 6
[game]
n_players = 3
rounds = 4
[agents]
temperature = 0.0
max_tokens = 200
[factors]
models = ["mock/gullible"]
topologies = ["complete"]
adversaries = ["injector(count=1,placement=[0])"]
defences = ["none", "delimit"]
prompt_variants = ["default", "terse"]
"""

#: two populations of their own models, with and without an adversary
POPULATIONS = """
name = "populations"
seed = 3
repetitions = 4
[game]
n_players = 3
rounds = 4
[factors]
models = [["scripted/always-stag", "scripted/tit-for-tat"], ["scripted/grim-trigger"]]
adversaries = ["none", "byzantine(count=1)"]
"""


def _section(out: Path) -> tuple[report.ReportData, list[str], list[report.Table]]:
    data = report.prepare(out, n_boot=20)
    sec = report.regression(data)
    lines = [b for b in sec.blocks if isinstance(b, str)]
    return data, lines, [b for b in sec.blocks if isinstance(b, report.Table)]


def _formula(tables: list[report.Table]) -> str:
    """The formula at the end of the table's caption ("...: FORMULA")."""
    return tables[0].caption.rsplit(": ", 1)[1]


def test_defence_and_wording_enter_the_regression(tmp_path: Path) -> None:
    """The defence turns the gullible model from all hare (none) to all stag (delimit):
    the regression used to be ``stag ~ round`` with no word of it. Now the defence and the
    wording are terms of the formula (the defence separating, so Firth), every design factor
    that varies is in the formula or named in a note."""
    data, lines, tables = _section(run_spec(REGDEF, tmp_path, llm=True))
    assert [report.FACTORS[f] for f in data.factors] == ["wording", "defence"]
    assert len(tables) == 1, lines
    formula = _formula(tables)
    assert "C(defence) * round" in formula and "C(prompt_variant) * round" in formula, formula
    terms = tables[0].df.set_index("term")
    assert terms.loc["C(defence)[T.none]", "coef"] < -3  # no stag without the defence
    assert any("separation" in t and "C(defence)[T.none]" in t for t in lines), lines
    for f in data.factors:
        name = report.REGRESSION_COLUMNS.get(f, f)
        assert f"C({name})" in formula or any(report.FACTORS[f] in t for t in lines)


def test_a_population_the_models_stand_for_is_named(tmp_path: Path) -> None:
    """Populations of their own models: ``C(model)`` stands for the population, which is
    left out of the formula with a note that says so (it used to be left out silently)."""
    data, lines, tables = _section(run_spec(POPULATIONS, tmp_path))
    assert "population_label" in data.factors and "adversary_arm" in data.factors
    formula = _formula(tables)
    assert "C(population)" not in formula and formula.endswith("+ C(model)"), formula
    assert "C(adversary_arm) * round" in formula
    notes = [t for t in lines if t.startswith("Note: population varies")]
    assert len(notes) == 1 and "C(model) stands for it" in notes[0], lines
