"""The report's faster paths give, to the last bit, what the code they replaced gave (the
reference functions below are that code): per-cell means with trial-clustered intervals
made in one pass over the rows (payoffs), the GEE sample drawn by category codes, and the
contagion tables made from one count of the rows. Planted populations with noise: NaN
values, cells without spread, one-trial cells, cells whose every value is NaN, missing
factor levels, categorical and text trial ids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stagbench.analysis import injection, report, stats

from analysis_helpers import run_spec


def _old_group_means(
    frame: pd.DataFrame, keys: list[str], values: pd.Series
) -> dict[tuple[str, ...], tuple[float, float, float, int]]:
    """``report._group_means`` as it was: ``stats.mean_ci`` on each group's rows."""
    out = {}
    trial = frame["trial_id"]
    data = pd.DataFrame(
        {
            **{k: frame[k] for k in keys},
            "_v": values,
            "_t": trial.cat.codes if isinstance(trial.dtype, pd.CategoricalDtype) else trial,
        },
        index=frame.index,
    )
    groups = data.groupby(keys, observed=True, sort=False) if keys else [((), data)]
    found = {}
    for key, g in groups:
        parts = tuple(str(k) for k in key) if isinstance(key, tuple) else (str(key),)
        found[parts] = g
    for parts in sorted(found):
        g = found[parts]
        mean, lo, hi = stats.mean_ci(g["_v"], g["_t"])
        out[parts] = (mean, lo, hi, int(g["_v"].notna().sum()))
    return out


def _planted(seed: int, categorical: bool) -> pd.DataFrame:
    """Agent-rounds of a 3 x 4 design with a planted mean per cell and noise: a cell whose
    values are all equal (no interval), a cell of one trial, a cell whose values are all
    NaN, NaN values elsewhere, rows whose factor level is missing, trials of uneven
    length, and the rows of a trial not contiguous."""
    rng = np.random.default_rng(seed)
    rows = []
    t = 0
    for i, disc in enumerate(["explicit", "silent", "mixed"]):
        for j, arm in enumerate(["none", "byz", "soft", "hub"]):
            trials = 1 if (i, j) == (1, 2) else int(rng.integers(3, 12))
            for _ in range(trials):
                t += 1
                for r in range(int(rng.integers(1, 6))):
                    for seat in range(3):
                        if (i, j) == (0, 0):
                            v = 2.0  # no spread
                        elif (i, j) == (2, 3) or rng.random() < 0.07:
                            v = math.nan
                        else:
                            v = float(rng.normal(i + j / 3, 1.0))
                        level = None if rng.random() < 0.01 else arm
                        rows.append({"trial_id": f"t{t:03d}", "round": r, "seat": seat,
                                     "disclosure": disc, "arm": level, "v": v})  # fmt: skip
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=seed)  # rows of a trial apart
    df = df.sort_values("trial_id", kind="stable").reset_index(drop=True)
    df = df.iloc[rng.permutation(len(df))[: len(df) - 5]]  # and a few rows lost
    if categorical:
        for col in ("trial_id", "disclosure", "arm"):
            df[col] = df[col].astype("category")
    return df


def _same(
    a: dict[tuple[str, ...], tuple[float, ...]], b: dict[tuple[str, ...], tuple[float, ...]]
) -> bool:
    if list(a) != list(b):
        return False
    for key in a:
        for x, y in zip(a[key], b[key], strict=True):
            if not (x == y or (math.isnan(x) and math.isnan(y))):
                return False
    return True


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("categorical", [False, True])
@pytest.mark.parametrize("keys", [["disclosure", "arm"], ["arm"], []])
def test_group_means_equal_mean_ci_on_each_group(
    seed: int, categorical: bool, keys: list[str]
) -> None:
    df = _planted(seed, categorical)
    new = report._group_means(df, keys, df["v"])
    old = _old_group_means(df, keys, df["v"])
    assert _same(new, old), (new, old)
    if len(keys) == 2:  # the planted exceptions come out as mean_ci says they must
        got = report._group_means(df, keys, df["v"])
        mean, lo, hi, n = got[("explicit", "none")]
        assert mean == 2.0 and math.isnan(lo) and math.isnan(hi) and n > 0  # no spread
        mean, lo, hi, n = got[("mixed", "hub")]
        assert math.isnan(mean) and n == 0  # every value NaN
        assert math.isnan(got[("silent", "soft")][1])  # one trial


def test_group_means_are_in_the_order_of_the_levels_text() -> None:
    """The groups in the order of their text, each with its own rows' mean and interval."""
    df = _planted(3, categorical=True)
    df = df[df["disclosure"] != "explicit"]  # every cell has spread
    got = report._group_means(df, ["disclosure"], df["v"])
    assert list(got) == [("mixed",), ("silent",)]  # sorted text
    for level in ("mixed", "silent"):
        g = df[df["disclosure"] == level]
        assert got[(level,)][:3] == stats.mean_ci(g["v"], g["trial_id"].cat.codes)


def _old_gee_sample(df: pd.DataFrame, max_trials: int, seed: int = 0) -> pd.DataFrame:
    ids = df["trial_id"].astype(str).unique()
    if len(ids) <= max_trials:
        return df
    keep = set(np.random.default_rng(seed).choice(ids, size=max_trials, replace=False))
    return df[df["trial_id"].astype(str).isin(keep)]


@pytest.mark.parametrize("categorical", [False, True])
def test_gee_sample_draws_the_same_trials_by_category_as_by_text(categorical: bool) -> None:
    df = _planted(4, categorical)
    if categorical:  # categories in another order than the rows meet them, some unused
        ids = sorted(set(df["trial_id"].astype(str)) | {"zz-unused"}, reverse=True)
        df["trial_id"] = df["trial_id"].astype(str).astype(pd.CategoricalDtype(ids))
    for max_trials in (5, 17, 10_000):
        for seed in (0, 1):
            new = stats.gee_sample(df, max_trials, seed)
            old = _old_gee_sample(df, max_trials, seed)
            pd.testing.assert_frame_equal(new, old)
    assert stats.gee_sample(df, 5)["trial_id"].nunique() == 5


def _text_formula_anova(data: injection.InjectionData) -> pd.DataFrame:
    """The type-II table as the section made it before: ``C(...)`` of each factor's text."""
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    rows = data.rows
    h = rows[(rows["role"] == "honest") & rows["stag"].notna()]
    per = h.groupby("trial_id")["stag"].mean().rename("y")
    trials = data.trials.set_index("trial_id").join(per, how="inner")
    trials["payload"] = trials["payload"].fillna("-")
    factors = [f for f in injection.VARIANCE_FACTORS if trials[f].nunique() > 1]
    frame = trials[["y", *factors]].rename(columns={f: f"f{i}" for i, f in enumerate(factors)})
    for i in range(len(factors)):
        frame[f"f{i}"] = frame[f"f{i}"].astype(str).to_numpy(dtype=object)
    formula = "y ~ " + " + ".join(f"C(f{i})" for i in range(len(factors)))
    table = anova_lm(smf.ols(formula, data=frame).fit(), typ=2)
    return table.rename(index={f"C(f{i})": f for i, f in enumerate(factors)})


def test_variance_explained_equals_the_text_formula(tmp_path: Path) -> None:
    """Factors given to patsy as categories (its fast path) give the same sums of squares,
    F and p, to the last bit, as the same factors as text under ``C(...)``."""
    spec = """
name = "variance"
seed = 5
repetitions = 4
[game]
n_players = 4
rounds = 3
[factors]
models = ["scripted/random(p=0.7)", "scripted/tit-for-tat"]
topologies = ["complete", "ring", "star(hub=0)"]
adversaries = ["none", "byzantine(count=1)"]
"""
    data = injection.load(run_spec(spec, tmp_path / "run"))
    table, note = injection.variance_explained(data)
    ref = _text_formula_anova(data)
    assert len(table) == len(ref) >= 3 and note == "48 trials"
    for row in table.itertuples():
        r = ref.loc["Residual" if row.factor == "residual" else row.factor]
        assert row.df == int(r["df"]) and row.sum_sq == float(r["sum_sq"])
        if row.factor != "residual":
            assert float(r["F"]) == row.F and row.p == float(r["PR(>F)"])


@pytest.mark.parametrize(
    "values",
    [
        ["b", "a", None, "b", "c"],
        ["x", "x", "x"],
        [None, None],
        [],
        ["scripted/a", "mock/a", "scripted/a"],
    ],
)
def test_distinct_and_texts_by_category_equal_the_row_by_row_ones(values: list[str | None]) -> None:
    """Counting and naming a column's values by its categories' codes gives what nunique
    and astype(str).unique give row by row, with unused categories and missing values."""
    text = pd.Series(values, dtype=object)
    cats = text.astype(pd.CategoricalDtype(["zz", "c", "b", "a", "x", "mock/a", "scripted/a"]))
    for column in (text, cats):
        assert report._distinct(column) == column.nunique()
        assert sorted(report._texts(column)) == sorted(str(v) for v in column.astype(str).unique())


SMALL = """
name = "small"
seed = 3
repetitions = 3
[game]
n_players = 4
rounds = 3
[factors]
models = ["scripted/random(p=0.6)", "scripted/tit-for-tat"]
disclosures = ["explicit", "silent"]
adversaries = ["none", "byzantine(count=1)"]
"""


def _outputs(folder: Path) -> dict[str, object]:
    import pyarrow.parquet as pq

    out: dict[str, object] = {"report.md": (folder / "report.md").read_text()}
    for p in sorted(folder.glob("*.parquet")):
        out[p.name] = pq.read_table(p)
    return out


def test_sections_made_in_a_forked_process_equal_those_made_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sections made beside the others in a forked process (and the early injection
    section) give the same report and tables as all made in this process, one by one."""
    if not report._forking():
        pytest.skip("no fork here (not Linux, or one core)")
    run = run_spec(SMALL, tmp_path / "run")
    forked = report.build(run, tmp_path / "forked", n_boot=60).parent
    monkeypatch.setenv("STAGBENCH_REPORT_FORK", "0")
    assert not report._forking()
    here = report.build(run, tmp_path / "here", n_boot=60).parent
    a, b = _outputs(forked), _outputs(here)
    assert list(a) == list(b) and len(a) > 10
    for name in a:
        assert a[name] == b[name] if name == "report.md" else a[name].equals(b[name]), name  # type: ignore[attr-defined]


#: how the meeting sections below meet: a folder, this process's pid, how long to wait
_MEET: dict[str, object] = {}


def _meeting(tag: str) -> report.SectionFn:
    """A section that leaves its mark in ``_MEET["dir"]`` and waits (up to
    ``_MEET["wait"]`` s) for the other's: two lanes each take one. With ``_MEET["die"]``,
    the one made in a forked process kills it once both have met."""

    def section(d: report.ReportData) -> report.Section:
        import os
        import time

        folder = Path(str(_MEET["dir"]))
        (folder / f"{tag}-{os.getpid()}").touch()
        deadline = time.monotonic() + float(_MEET["wait"])  # type: ignore[arg-type]
        while len(list(folder.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        if _MEET.get("die") and os.getpid() != _MEET["parent"]:
            os._exit(3)
        s = report.Section(f"Where {tag}")
        s.text(f"{tag} pid {os.getpid()} trials {d.df['trial_id'].nunique()}")
        return s

    section.__name__ = f"meeting_{tag}"
    return section


_MEET_A, _MEET_B = _meeting("a"), _meeting("b")


def _failing_section(d: report.ReportData) -> report.Section:
    raise ValueError("this section fails")


def _pids(html: Path) -> dict[str, str]:
    md = (html.parent / "report.md").read_text()
    lines = [x.split() for x in md.splitlines() if " pid " in x]
    assert all(x[-2:] == ["trials", "24"] for x in lines)  # the data reached both lanes
    return {x[0]: x[2] for x in lines}


def test_sections_run_in_two_lanes_and_a_lane_that_dies_or_fails_is_handled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two lanes, this process and a forked one, each take a section; a section that
    raises in either raises here; a forked lane that dies leaves its section to be made
    here; a run too large to fork, or forking switched off, makes every section here."""
    import os

    if not report._forking():
        pytest.skip("no fork here (not Linux, or one core)")
    run = run_spec(SMALL, tmp_path / "run")
    me = str(os.getpid())

    def build(name: str, wait: float = 30.0, die: bool = False) -> dict[str, str]:
        folder = tmp_path / f"meet-{name}"
        folder.mkdir()
        _MEET.update(dir=str(folder), wait=wait, die=die, parent=os.getpid())
        return _pids(report.build(run, tmp_path / name, n_boot=20, sections=[_MEET_A, _MEET_B]))

    pids = build("lanes")
    assert set(pids) == {"a", "b"} and me in pids.values() and len(set(pids.values())) == 2
    assert build("dies", die=True) == {"a": me, "b": me}  # the dead lane's section: made here
    with pytest.raises(ValueError, match="this section fails"):
        report.build(
            run, tmp_path / "fails", n_boot=20, sections=[_failing_section, report.overview]
        )
    monkeypatch.setattr(report, "FORK_MAX_TRIALS", 23)  # a run too large to fork: made here
    assert build("large", wait=0.2) == {"a": me, "b": me}
    monkeypatch.setattr(report, "FORK_MAX_TRIALS", 24)
    monkeypatch.setenv("STAGBENCH_REPORT_FORK", "0")  # switched off: made here
    assert build("off", wait=0.2) == {"a": me, "b": me}


def test_a_cell_has_one_interval_in_every_table(tmp_path: Path) -> None:
    """The honest stag rate of a cell, in the cell table and in the explicit-vs-silent
    table, has one interval (each drawn from the cell's own trials)."""
    import pyarrow.parquet as pq

    run = run_spec(SMALL, tmp_path / "run")
    out = report.build(
        run, tmp_path / "r", n_boot=200, sections=[report.cooperation, report.comparisons]
    ).parent
    cells = pq.read_table(out / "cooperation_by_cell.parquet").to_pandas()
    pairs = pq.read_table(out / "explicit_vs_silent.parquet").to_pandas()
    keys = [c for c in pairs.columns if c in cells.columns and not c.startswith("stag_")]
    both = cells.merge(pairs, on=keys, suffixes=("", "_pair"))
    assert len(both) == len(cells) == 8 and both["stag_ci_hi"].gt(both["stag_ci_lo"]).any()
    for col in ("stag_rate", "stag_ci_lo", "stag_ci_hi", "stag_n"):
        assert both[col].equals(both[f"{col}_pair"]), col
