"""The report's rates, omnibus test, trend test and comparisons are made from per-trial
(and per-trial-round) counts of the honest agents' actions, not from the agent-round rows:
on planted populations with noise (rates of exactly 0 and 1, adversaries, parse failures,
trials that stop early) they must equal, to the last bit, what the row-based computation
gives (the reference functions below are the row-based code the counts replaced)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stagbench.analysis import report, stats


def _planted(seed: int, trials_per_cell: int = 30) -> pd.DataFrame:
    """Agent-rounds of a 2 x 3 design (disclosure x adversary) with two models: honest
    agents hunt stag with a planted rate per cell (0 and 1 among them), adversaries hare;
    some honest actions are parse failures (NaN), some trials stop after fewer rounds."""
    rng = np.random.default_rng(seed)
    planted = {
        ("explicit", "none"): 1.0,
        ("explicit", "byzantine"): 0.6,
        ("explicit", "soft"): 0.3,
        ("silent", "none"): 0.0,
        ("silent", "byzantine"): 0.5,
        ("silent", "soft"): 0.8,
    }
    rows = []
    t = 0
    for (disc, adv), p in planted.items():
        for _ in range(trials_per_cell):
            t += 1
            rounds = 5 if rng.random() > 0.15 else int(rng.integers(1, 5))
            noise = float(np.clip(p + rng.normal(0, 0.1), 0, 1)) if 0 < p < 1 else p
            for r in range(1, rounds + 1):
                hunt = bool(rng.random() < 0.4)
                for seat in range(4):
                    role = "adversary" if adv != "none" and seat == 0 else "honest"
                    model = "scripted/a" if seat % 2 else "scripted/b"
                    if role == "adversary":
                        stag: float = 0.0
                    elif rng.random() < 0.05:
                        stag = math.nan  # no valid action
                    else:
                        stag = float(rng.random() < noise)
                    rows.append(
                        {
                            "trial_id": f"t{t:04d}",
                            "round": r,
                            "seat": seat,
                            "role": role,
                            "model": model,
                            "model_label": model.split("/")[1],
                            "stag": stag,
                            "hunt_succeeded": hunt,
                            "disclosure": disc,
                            "adversary_arm": adv,
                            "payoff": float(rng.integers(0, 4)),
                        }
                    )
    df = pd.DataFrame(rows)
    for col in ("trial_id", "role", "model", "model_label", "disclosure", "adversary_arm"):
        df[col] = df[col].astype("category")
    df["cell"] = (df["disclosure"].astype(str) + " · " + df["adversary_arm"].astype(str)).astype(
        "category"
    )
    return df


def _data(df: pd.DataFrame, n_boot: int = 200) -> report.ReportData:
    return report.ReportData(
        df=df,
        agent_trials=pd.DataFrame(),
        trials=pd.DataFrame(),
        load=report.LoadReport(),
        n_boot=n_boot,
        factors=["disclosure", "adversary_arm"],
    )


# -- the row-based computations the counts replaced ----------------------------------------
def _rates_rows(d: report.ReportData, keys: list[str]) -> pd.DataFrame:
    honest = stats.population(d.df)
    rho = stats.rate_table(honest, keys, "stag", prefix="stag_")
    if honest["stag"].isna().any():
        every = honest.assign(stag_all=honest["stag"].fillna(0.0))
        share = stats.rate_table(every, keys, "stag_all", prefix="stag_all_")
        share = share[[*keys, "stag_all_rate", "stag_all_ci_lo", "stag_all_ci_hi", "stag_all_n"]]
        rho = rho.merge(share, on=keys, how="left") if keys else rho.join(share)
    tr = d.df.drop_duplicates(["trial_id", "round"])
    tr = tr.assign(coord=tr["hunt_succeeded"].astype(float))
    keys_c = [k for k in keys if k not in ("model", "model_label")]
    phi = stats.rate_table(tr, keys_c, "coord", prefix="coord_")
    if keys_c:
        return rho.merge(phi, on=keys_c, how="left")
    return rho.assign(**{c: phi[c].iloc[0] for c in phi.columns})


def _omnibus_rows(d: report.ReportData, keys: list[str]) -> float:
    counts = stats.trial_counts(stats.population(d.df), keys, "stag")
    groups = counts.groupby(keys, observed=True, sort=False).ngroup().to_numpy()
    return stats.omnibus_test(counts["k"], counts["n"], groups, n_perm=max(d.n_boot, 500))


def _trend_rows(d: report.ReportData, keys: list[str]) -> list[tuple[float, float, int]]:
    h = stats.population(d.df).dropna(subset=["stag"])
    per = h.groupby([*keys, "trial_id", "round"], observed=True)["stag"].agg(["sum", "count"])
    wide = per.unstack("round")
    out = []
    for _, g in wide.groupby(level=keys, observed=True, sort=True):
        played = np.asarray(g["count"].notna().to_numpy().any(axis=0))
        k, n = g["sum"].to_numpy(float)[:, played], g["count"].to_numpy(float)[:, played]
        t = stats.round_trend(k, n)
        out.append((t.z, t.p, len(g)))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "keys",
    [
        ["disclosure", "adversary_arm"],
        ["model_label", "disclosure", "adversary_arm"],
        ["disclosure", "adversary_arm", "round"],
        ["cell"],
        [],
    ],
)
def test_counts_rates_equal_the_row_based_rates(seed: int, keys: list[str]) -> None:
    d = _data(_planted(seed))
    new = report._rates(d, keys)
    old = _rates_rows(d, keys)
    pd.testing.assert_frame_equal(new, old, check_exact=True)
    assert "stag_all_rate" in new.columns  # parse failures planted: the share is there
    if keys == ["disclosure", "adversary_arm"]:  # the planted 0 and 1 come out exactly
        rates = new.set_index(keys)["stag_rate"]
        assert rates[("explicit", "none")] == 1.0 and rates[("silent", "none")] == 0.0
        assert (new["stag_ci_lo"] <= new["stag_rate"]).all()


@pytest.mark.parametrize("seed", [0, 4])
def test_counts_omnibus_and_trend_equal_the_row_based_ones(seed: int) -> None:
    d = _data(_planted(seed))
    for keys in (["disclosure", "adversary_arm"], ["model_label", "disclosure"], ["cell"]):
        p = _omnibus_rows(d, keys)
        said = report._omnibus(d, keys)  # at a Monte Carlo floor "p <= ...": the same p
        assert said.endswith(f"p = {p:.3g}") or f"p <= {p:.3g} (" in said
        # the p-value itself, not only its text: the counts reach omnibus_test unchanged
        counts = report._per_trial_counts(d, keys)
        groups = counts.groupby(keys, observed=True, sort=False).ngroup().to_numpy()
        again = stats.omnibus_test(counts["k"], counts["n"], groups, n_perm=max(d.n_boot, 500))
        assert again == p
    keys = ["disclosure", "adversary_arm"]
    trend = report._trend(d, keys)
    old = _trend_rows(d, keys)
    assert list(trend["trials"]) == [t for _, _, t in old]
    np.testing.assert_array_equal(trend["z"].to_numpy(), np.array([z for z, _, _ in old]))
    np.testing.assert_array_equal(trend["p"].to_numpy(), np.array([p for _, p, _ in old]))


def test_counts_keep_honest_rows_without_a_model_label() -> None:
    """An honest agent-round whose model has no label (a missing model) is still counted
    in every rate not broken down by model, as the rows were."""
    df = _planted(6)
    labels = df["model_label"].astype(object)
    labels[(df["seat"] == 3) & (df["trial_id"].cat.codes % 3 == 0)] = None
    df["model_label"] = labels.astype("category")
    d = _data(df)
    for keys in (["disclosure", "adversary_arm"], ["model_label", "disclosure"], []):
        pd.testing.assert_frame_equal(
            report._rates(d, keys), _rates_rows(d, keys), check_exact=True
        )
    assert int(d.trial_counts["rows"].sum()) == int((df["role"] == "honest").sum())


def test_counts_for_comparisons_equal_trial_counts_of_the_rows() -> None:
    d = _data(_planted(5))
    new = report._per_trial_counts(d, ["cell"])
    old = stats.trial_counts(stats.population(d.df)[["cell", "trial_id", "stag"]], ["cell"], "stag")
    pd.testing.assert_frame_equal(
        new[["cell", "trial_id", "k", "n"]].astype({"n": "int64"}),
        old.astype({"n": "int64"}),
        check_exact=True,
    )
    # the honest agents only: the adversaries' hare actions are not counted
    assert int(new["n"].sum()) == int(stats.population(d.df)["stag"].notna().sum())
    assert int(d.trial_counts["rows"].sum()) == int((d.df["role"] == "honest").sum())


def test_round_plot_with_many_cells_draws_every_cell_once_in_panels() -> None:
    """90 cells: panels by some factors, at most MAX_SERIES series in each, every cell's
    line drawn once (with its points), one legend naming the series."""
    from stagbench.analysis.report import MAX_SERIES, round_plot

    levels = {"topology": 3, "disclosure": 2, "adversary": 5, "population": 3}
    grid = pd.MultiIndex.from_product(
        [[f"{f}{i}" for i in range(n)] for f, n in levels.items()] + [[1, 2, 3]],
        names=[*levels, "round"],
    ).to_frame(index=False)
    rng = np.random.default_rng(0)
    grid["stag_rate"] = rng.random(len(grid))
    grid["stag_ci_lo"] = grid["stag_rate"] * 0.9
    grid["stag_ci_hi"] = np.minimum(grid["stag_rate"] * 1.1, 1.0)
    fig = round_plot(grid, list(levels))
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.containers]
    assert 1 < len(panels) < 90
    drawn = []
    for ax in panels:
        assert len(ax.containers) <= MAX_SERIES
        for c in ax.containers:
            y = tuple(np.round(np.asarray(c.lines[0].get_ydata(), dtype=float), 12))
            drawn.append((ax.get_title(), c.get_label(), y))
    assert len(drawn) == 90 and len(set(drawn)) == 90  # every cell once
    # each line holds its cell's rates: find them back in the data
    rates = {
        tuple(np.round(g.sort_values("round")["stag_rate"], 12))
        for _, g in grid.groupby(list(levels))
    }
    assert {y for _, _, y in drawn} == rates
    assert len(fig.legends) == 1
    import matplotlib.pyplot as plt

    plt.close(fig)


INJECTED = """
name = "lazy"
seed = 4
repetitions = 2
[game]
n_players = 4
rounds = 3
[factors]
models = ["scripted/obedient"]
topologies = ["line"]
adversaries = ["injector(count=1,placement=[0])", "byzantine(count=1)"]
"""


def _frames(data: object) -> list[pd.DataFrame]:
    return [data.rows, data.messages, data.trials]  # type: ignore[attr-defined]


def test_injection_views_read_later_equal_the_scans_even_when_the_cache_went_away(
    tmp_path: Path,
) -> None:
    """The report reads the injection views from the scan's cached parts when their section
    runs (before the agent-rounds); they equal the views a scan gives, and when another
    command removed the cache in between, they are read again, never served short."""
    import shutil

    from stagbench.analysis import design
    from stagbench.analysis.scan import cache_dir, scan

    from analysis_helpers import run_spec

    run = run_spec(INJECTED, tmp_path / "run")
    lexicon = design.lexicon(run)
    whole = scan(run, lexicon=lexicon).injection
    assert len(whole.rows) and len(whole.messages)
    res = scan(run, lexicon=lexicon, views=False)
    assert res.rounds.empty  # the views are not gathered by the scan itself
    later = report._injection_views(res, run, lexicon, 1, None)
    for a, b in zip(_frames(whole), _frames(later), strict=True):
        pd.testing.assert_frame_equal(a, b)
    shutil.rmtree(cache_dir(run))  # as another command's eviction would
    again = report._injection_views(res, run, lexicon, 1, None)
    for a, b in zip(_frames(whole), _frames(again), strict=True):
        pd.testing.assert_frame_equal(a, b)
    some = {str(whole.trials["trial_id"].iloc[0])}
    kept = report._injection_views(scan(run, lexicon=lexicon, views=False), run, lexicon, 1, some)
    assert set(kept.rows["trial_id"].astype(str)) == some
    # and the report built with the early section says what a report of the views says
    html = report.build(run, tmp_path / "out", n_boot=50)
    md = (html.parent / "report.md").read_text()
    assert "## Injection and persuasion" in md and "No readable transcripts" not in md


def test_agent_rounds_written_a_row_group_at_a_time_equal_the_whole_table(tmp_path: Path) -> None:
    """``save_rounds`` (slices of a row group) writes what ``save_parquet`` (one
    ``pq.write_table``) writes: the same row groups, types, categories and values."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stagbench.analysis.tables import save_parquet, to_arrow

    # the slices are pyarrow's default row groups
    probe = tmp_path / "probe.parquet"
    pq.write_table(pa.table({"x": pa.array(np.zeros(report.ROW_GROUP + 1, dtype=np.int8))}), probe)
    meta = pq.ParquetFile(probe).metadata
    assert meta.num_row_groups == 2 and meta.row_group(0).num_rows == report.ROW_GROUP

    rows, n = 1000, 2_345  # three row groups, the last partial
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "trial_id": pd.Categorical.from_codes(
                rng.integers(0, 500, n), [f"t{i:05d}" for i in range(500)]
            ),
            # a category seen only in the last row group, one never seen
            "role": pd.Categorical(
                np.where(np.arange(n) > 2 * rows + 10, "adversary", "honest"),
                categories=["adversary", "honest", "unused"],
            ),
            "action": pd.array(np.where(rng.random(n) < 0.5, "stag", "hare"), dtype="str"),
            "stag": np.where(rng.random(n) < 0.05, np.nan, rng.integers(0, 2, n).astype(float)),
            "valid": rng.random(n) < 0.9,
            "round": rng.integers(1, 6, n),
        }
    )
    whole, sliced = tmp_path / "whole.parquet", tmp_path / "sliced.parquet"
    pq.write_table(to_arrow(df), whole, row_group_size=rows)
    report.save_rounds(df, sliced, rows=rows)
    a, b = pq.ParquetFile(whole), pq.ParquetFile(sliced)
    assert a.metadata.num_row_groups == b.metadata.num_row_groups == 3
    assert a.schema_arrow.equals(b.schema_arrow, check_metadata=True)
    assert pq.read_table(whole).equals(pq.read_table(sliced))
    back = pd.read_parquet(sliced)
    pd.testing.assert_frame_equal(pd.read_parquet(whole), back)
    assert list(back["role"].cat.categories) == ["adversary", "honest", "unused"]
    small = tmp_path / "small.parquet"  # one row group: written whole, as save_parquet does
    report.save_rounds(df, small)
    save_parquet(df, whole)
    assert pq.read_table(whole).equals(pq.read_table(small))


@pytest.mark.parametrize("keys", [["model_label", "disclosure", "adversary_arm"], ["disclosure"]])
def test_rates_without_coordination_are_the_rates_with_it_less_its_columns(
    keys: list[str],
) -> None:
    """Tables that drop the coordination columns skip computing them: what is left is the
    same, to the last bit and in type, as the full table with those columns dropped."""
    d = _data(_planted(5))
    full = report._display(report._rates(d, keys))
    assert any(str(c).startswith("coord_") for c in full.columns)
    full = full.drop(columns=[c for c in full if str(c).startswith("coord_")])
    lean = report._display(report._rates(d, keys, coord=False))
    pd.testing.assert_frame_equal(lean, full, check_exact=True)


def test_per_trial_counts_are_made_once_per_keys_and_read_unchanged() -> None:
    d = _data(_planted(6))
    first = report._per_trial_counts(d, ["disclosure"])
    report._rates(d, ["disclosure"])
    report._omnibus(d, ["disclosure"])
    assert report._per_trial_counts(d, ["disclosure"]) is first  # made once
    again = report._count_per_trial(d, ["disclosure"], "n")
    pd.testing.assert_frame_equal(first, again, check_exact=True)  # no section changed it
    rows = report._per_trial_counts(d, ["disclosure"], total="rows")
    assert rows is not first and (rows["n"] >= first["n"]).all()
