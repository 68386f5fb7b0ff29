"""``stagbench report RUN_DIR``: tables (Parquet), statistics, plots, and a self-contained
HTML report (images inlined) with a Markdown twin.

The report reads the folder's design first (``analysis.design``): missing, failed,
foreign and tampered transcripts are listed at the top and left out of every statistic.
Every rate is over honest agents unless its table says otherwise, and comes with n and a
trial-clustered 95% interval; every table names its test. Every table is also written as
``report/<name>.parquet``. Design factors are never pooled: the rows of each table are the
design cells (condition x topology x disclosure x adversary arm x population, the factors
that vary in the run).

A new section is one function taking ``ReportData`` plus one entry in ``SECTIONS``.
On Linux with a spare core, runs of up to ``FORK_MAX_TRIALS`` trials make the ``EARLY``
sections in a forked process while this one reads the agent-rounds, and then the other
sections in two lanes, this process (which also writes the tables) and a forked one,
each taking the next section not yet taken, heaviest first (``HEAVIEST``): every section
draws from its own seeded random streams, so the report is the same either way
(``STAGBENCH_REPORT_FORK=0`` makes everything in one process).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import html
import io
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import orjson  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from stagbench.analysis import (  # noqa: E402
    archetypes,
    design,
    injection,
    judge,
    metrics,
    scan_views,
    stats,
)
from stagbench.analysis.injection import InjectionData  # noqa: E402
from stagbench.analysis.labels import legend, population_label, short_names  # noqa: E402
from stagbench.analysis.lexical import DEFAULT, Detector, detector_for, evaluate  # noqa: E402
from stagbench.analysis.scan import Scan, scan  # noqa: E402
from stagbench.analysis.tables import (  # noqa: E402
    LoadReport,
    save_parquet,
    to_arrow,
    trial_factors,
)
from stagbench.errors import TranscriptError  # noqa: E402
from stagbench.records import Lexicon  # noqa: E402

#: the design factors a cell is made of, and how tables call them
FACTORS = {
    "condition": "condition",
    "topology": "topology",
    "disclosure": "disclosure",
    "adversary_arm": "adversary",
    "population_label": "population",
    "prompt_variant": "wording",
    "defence": "defence",
    "payload": "payload",
}
HONEST_NOTE = "honest agents only"
#: what ``coord_*`` counts: the game's success, which is "every player" only under unanimity
COORD_NOTE = (
    "trial-rounds in which the hunt succeeded: at least the game's stag threshold of "
    "players hunted stag, every player under unanimity (the default)"
)


@dataclass
class Table:
    df: pd.DataFrame
    caption: str
    name: str = ""


@dataclass
class Figure:
    png: bytes
    name: str
    caption: str


@dataclass
class Section:
    title: str
    blocks: list[str | Table | Figure] = field(default_factory=list)

    def text(self, s: str) -> None:
        self.blocks.append(s)

    def table(self, df: pd.DataFrame, caption: str = "", name: str | None = None) -> None:
        """A table shown in the report and written as ``<name>.parquet``."""
        auto = f"{self.title.lower().replace(' ', '_')}_{len(self.blocks)}"
        self.blocks.append(Table(df, caption, name or auto))

    def figure(self, fig: Any, name: str, caption: str) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.blocks.append(Figure(buf.getvalue(), name, caption))


def _fmt(v: object) -> str:
    if isinstance(v, float | np.floating):
        if math.isnan(v):
            return ""
        return f"{v:.4g}"
    if v is None or v is pd.NA:  # not a value: "n/a", never Python's "None" (the caption or
        return "n/a"  # the row's note says why)
    return str(v)


def _md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class ReportData:
    """What every section reads: the analysed agent-round table (every role; rates filter
    to honest agents) and what derives from it."""

    df: pd.DataFrame
    agent_trials: pd.DataFrame
    trials: pd.DataFrame
    load: LoadReport
    n_boot: int = 500
    design: design.DesignCheck | None = None
    #: the design factors that vary in this run (columns of df), in FACTORS order
    factors: list[str] = field(default_factory=list)
    #: full model name -> short label
    short: dict[str, str] = field(default_factory=dict)
    detector: Detector = DEFAULT
    title: str = ""
    #: what the injection section reads (read with the rest, or a function that reads it
    #: from the scan's cache when the section runs; ``None``: read it from the run)
    injection: InjectionData | Callable[[], InjectionData] | None = None
    #: ``_per_trial_counts`` made so far, by keys and total
    per_trial: dict[tuple[tuple[str, ...], str], pd.DataFrame] = field(
        default_factory=dict, repr=False
    )

    @functools.cached_property
    def honest(self) -> pd.DataFrame:
        """The honest agents' rows (a copy: the sections read ``round_counts``,
        ``trial_counts`` and ``trial_rounds`` instead)."""
        return stats.population(self.df)

    @functools.cached_property
    def round_counts(self) -> pd.DataFrame:
        """Per trial, round and model (label) of the honest agents: ``k`` stag actions of
        ``n`` valid actions in ``rows`` agent-rounds, with the trial's design factors and
        cell. Every honest stag rate of the report is made from these counts (sums of
        whole numbers: the same in any order of summation)."""
        return honest_counts(self.df, [*self.factors, "cell"])

    @functools.cached_property
    def trial_counts(self) -> pd.DataFrame:
        """``round_counts`` summed over rounds: per trial and model (label)."""
        return _summed(self.round_counts, ["trial_id", "model_label"])

    @functools.cached_property
    def unheard(self) -> tuple[int, int]:
        """How many trials no message reached anyone in (no talk phase, nobody spoke, or a
        graph without edges), of how many: two sections say it."""
        if "n_received" not in self.df.columns or not len(self.df):
            return 0, 0
        heard = self.df.groupby("trial_id", observed=True)["n_received"].sum()
        return int((heard == 0).sum()), len(heard)

    @functools.cached_property
    def trial_rounds(self) -> pd.DataFrame:
        """One row per trial-round (its first agent-round): whether the hunt succeeded,
        with the trial's design factors and cell."""
        cols = ["trial_id", "round", "hunt_succeeded", *self.factors, "cell"]
        cols = list(dict.fromkeys(c for c in cols if c in self.df.columns))
        return self.df.loc[~self.df.duplicated(["trial_id", "round"]).to_numpy(), cols]


SectionFn = Callable[[ReportData], Section]


# -- helpers ------------------------------------------------------------------------------
def _display(df: pd.DataFrame) -> pd.DataFrame:
    """Factor columns under their table names, as plain strings."""
    out = df.rename(columns=FACTORS)
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(str)
    return out


def _relabel(column: pd.Series, label: Callable[[str], str]) -> pd.Series:
    """A categorical column's labels, worked out once per category (two categories may
    share a label)."""
    cat = column.astype("category")
    names = pd.Index([label(str(c)) for c in cat.cat.categories])
    if not len(names):
        return pd.Series(pd.Categorical([None] * len(column)), index=column.index)
    codes, uniques = pd.factorize(names)
    old = cat.cat.codes.to_numpy()
    new = np.where(old >= 0, codes[np.maximum(old, 0)], -1)
    return pd.Series(pd.Categorical.from_codes(new, uniques), index=column.index)


def _cell_label(frame: pd.DataFrame, factors: list[str]) -> pd.Series:
    """Each row's design cell, its factor levels joined (made once per cell)."""
    if not factors:
        return pd.Series("all", index=frame.index)
    codes = frame.groupby(factors, observed=True, sort=False, dropna=False).ngroup().to_numpy()
    first = ~frame.duplicated(factors).to_numpy()
    names = np.empty(int(codes.max()) + 1, dtype=object)
    rows = frame.loc[first, factors].itertuples(index=False)
    names[codes[first]] = [" · ".join(str(v) for v in row) for row in rows]
    return pd.Series(names[codes], index=frame.index)


def _per_trial(df: pd.DataFrame, firsts: pd.DataFrame, values: pd.Series) -> pd.Series:
    """A per-trial column (``values``, one per row of ``firsts``: each trial's first row
    of ``df``) on every row of ``df``, as categories (sorted levels)."""
    per = pd.Categorical(values)
    trial = df["trial_id"]
    if not isinstance(trial.dtype, pd.CategoricalDtype):  # each row's trial by its id
        pos = pd.Index(firsts["trial_id"]).get_indexer(trial)
    else:  # by the trial's category code: no hashing of ids
        lookup = np.full(len(trial.cat.categories), -1, dtype=np.int64)
        lookup[firsts["trial_id"].cat.codes.to_numpy()] = np.arange(len(firsts))
        pos = lookup[trial.cat.codes.to_numpy()]
    return pd.Series(pd.Categorical.from_codes(per.codes[pos], per.categories), index=df.index)


def _distinct(column: pd.Series) -> int:
    """``column.nunique()`` (NaN not counted); for categories, by their codes."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        return int(np.count_nonzero(np.bincount(codes[codes >= 0], minlength=1)))
    return int(column.nunique())


def _texts(column: pd.Series) -> list[str]:
    """The distinct values of ``column.astype(str)`` (for categories, each category that
    occurs made text once, not every row)."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        return [str(v) for v in column.astype(str).unique()]
    codes = column.cat.codes.to_numpy()
    seen = np.bincount(codes[codes >= 0], minlength=len(column.cat.categories)) > 0
    out = [str(v) for v in column.cat.categories[seen].astype(str)]
    return out + ["nan"] if (codes < 0).any() else out


#: the columns of the honest counts (``honest_counts``)
COUNTS = ("k", "n", "rows")


def honest_counts(df: pd.DataFrame, per_trial: list[str]) -> pd.DataFrame:
    """Per trial, round and ``model_label`` of the honest agents' rows of ``df`` (every row
    when it has no ``role``): ``k`` (stag actions), ``n`` (valid actions), ``rows``
    (agent-rounds), and the ``per_trial`` columns (the same on every row of a trial) with
    their types. Sorted by trial, round and model label."""
    keys = ["trial_id", "round", "model_label"]
    mask = (df["role"] == stats.HONEST).to_numpy() if "role" in df.columns else None
    where = np.flatnonzero(mask) if mask is not None else np.arange(len(df))
    h = df.loc[mask if mask is not None else slice(None), [*keys, "stag"]]
    h = h.assign(_first=where)
    # dropna=False: a row without a model label still counts wherever models are not a key
    grouped = h.groupby(keys, observed=True, sort=True, dropna=False)
    out = grouped.agg(
        k=("stag", "sum"), n=("stag", "count"), rows=("stag", "size"), _first=("_first", "first")
    ).reset_index()
    first = out.pop("_first").to_numpy()
    for col in dict.fromkeys(per_trial):
        if col in df.columns and col not in out.columns:
            out[col] = df[col].take(first).reset_index(drop=True)
    return out


def _summed(counts: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``counts`` (``honest_counts``) summed per ``keys`` (observed combinations, sorted),
    with the other columns that are the same on every row of a group (the trial's)."""
    sums = counts.groupby(keys, observed=True, sort=True, dropna=False)[list(COUNTS)].sum()
    if "trial_id" not in keys:
        return sums.reset_index()
    out = sums.reset_index()
    # the trial's columns, by trial (a key may be missing, e.g. a model without a label)
    firsts = counts.drop_duplicates("trial_id")
    where = pd.Index(firsts["trial_id"]).get_indexer(out["trial_id"])
    for col in counts.columns:
        if col not in (*keys, *COUNTS, "round"):
            out[col] = firsts[col].take(where).reset_index(drop=True)
    return out


def _per_trial_counts(d: ReportData, keys: list[str], total: str = "n") -> pd.DataFrame:
    """Per ``keys`` and trial: ``k`` stag actions of ``n`` (``total="n"``: valid actions;
    ``"rows"``: every agent-round, a parse failure counted as not stag) by honest agents,
    only where ``n`` > 0; what ``stats.trial_counts`` gives on the honest rows. Made once
    per ``keys`` and ``total`` (the sections only read it)."""
    memo = (tuple(keys), total)
    if memo not in d.per_trial:
        d.per_trial[memo] = _count_per_trial(d, keys, total)
    return d.per_trial[memo]


def _count_per_trial(d: ReportData, keys: list[str], total: str) -> pd.DataFrame:
    source = d.round_counts if "round" in keys else d.trial_counts
    grouped = source.groupby([*keys, "trial_id"], observed=True, sort=True)
    per = grouped[["k", total]].sum().reset_index()
    per = per.rename(columns={total: "n"}) if total != "n" else per
    return per[per["n"] > 0].reset_index(drop=True)


def _rates(d: ReportData, keys: list[str], coord: bool = True) -> pd.DataFrame:
    """Honest stag rate and hunt success (``coord``) per ``keys``
    with clustered intervals. When some honest agent-rounds have no valid action, also the
    stag share of all honest agent-rounds (a failure counted as not stag, as some
    harnesses report it)."""
    rho = _rate_table(_per_trial_counts(d, keys), keys, "stag_")
    if (d.trial_counts["n"] < d.trial_counts["rows"]).any():
        every = _per_trial_counts(d, keys, total="rows")
        share = _rate_table(every, keys, "stag_all_")
        share = share[[*keys, "stag_all_rate", "stag_all_ci_lo", "stag_all_ci_hi", "stag_all_n"]]
        rho = rho.merge(share, on=keys, how="left") if keys else rho.join(share)
        rho = _with_unrated(rho, share, keys)
    if not coord:
        return rho
    tr = d.trial_rounds.assign(coord=lambda x: x["hunt_succeeded"].astype(float))
    keys_c = [k for k in keys if k not in ("model", "model_label")]
    phi = stats.rate_table(tr, keys_c, "coord", prefix="coord_")
    if keys and keys_c == keys:  # a cell of adversaries only keeps its hunt success
        return _with_seatless(rho, phi, keys)
    if keys_c:
        return rho.merge(phi, on=keys_c, how="left")
    return rho.assign(**{c: phi[c].iloc[0] for c in phi.columns})


#: the ``ci`` of an honest rate where a design cell has no honest seat (every seat an
#: adversary's): no rate, n = 0, and not for want of a valid action
NO_HONEST_SEATS = "no honest seats in this arm"


def _with_seatless(rho: pd.DataFrame, phi: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``rho`` (honest rates per ``keys``) beside ``phi`` (hunt success per the same keys),
    with a row for each group of ``phi`` that ``rho`` lacks: a cell whose seats are all
    adversaries', which has trials and hunts (an all-player measure) but no honest agent,
    so no honest rate (n = 0, ``NO_HONEST_SEATS``). Such a cell vanished from the table
    (redteam rt29 F7)."""
    out = rho.merge(phi, on=keys, how="outer", indicator=True)
    seatless = (out.pop("_merge") == "right_only").to_numpy()
    if not seatless.any():
        return out
    for col in out.columns:
        if col.endswith(("_n", "_trials")) and not col.startswith("coord_"):
            out[col] = out[col].fillna(0).astype("int64")
        elif col.endswith("_ci") and not col.startswith("coord_"):
            out.loc[seatless, col] = NO_HONEST_SEATS
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


#: the columns of ``stats.rate_table_counts`` after its keys and prefix
RATE_COLUMNS = ("rate", "ci_lo", "ci_hi", "n", "trials", "ci")


def _rate_table(counts: pd.DataFrame, keys: list[str], prefix: str) -> pd.DataFrame:
    """``stats.rate_table_counts`` with its columns even when no group has a count (no
    honest agent made a valid action anywhere: an empty table, not one without its keys);
    without keys, the one row of no count says ``no valid action`` with n = 0."""
    out = stats.rate_table_counts(counts, keys, prefix=prefix)
    if counts.empty:
        if keys:  # the keys' types of the counts, the rates' of a table with rows
            types = ("float64", "float64", "float64", "int64", "int64", "object")
            rates = {
                prefix + c: pd.Series(dtype=t) for c, t in zip(RATE_COLUMNS, types, strict=True)
            }
            return counts[keys].iloc[:0].reset_index(drop=True).assign(**rates)
        out[f"{prefix}ci"] = "no valid action"
    return out


def _with_unrated(rho: pd.DataFrame, share: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``rho`` with a row for each group of ``share`` that has no valid action at all (a
    model whose every reply failed to parse): no stag rate (n = 0), its ``stag_all_*``
    share of all agent-rounds kept, so no group silently drops out of a table."""
    if not keys or not len(share):
        return rho
    missing = share
    if len(rho):
        found = share[keys].merge(rho[keys].drop_duplicates(), on=keys, how="left", indicator=True)
        missing = share[(found["_merge"] == "left_only").to_numpy()]
    if missing.empty:
        return rho
    added = missing.assign(
        stag_rate=math.nan,
        stag_ci_lo=math.nan,
        stag_ci_hi=math.nan,
        stag_n=0,
        stag_trials=0,
        stag_ci="no valid action",
    )
    out = pd.concat([rho, added[rho.columns]], ignore_index=True)
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def _omnibus(d: ReportData, keys: list[str]) -> str:
    """The clustered test that the honest stag rate is the same in every row."""
    if not keys:
        return "one cell: no test"
    counts = _per_trial_counts(d, keys)
    if counts.empty:
        return "no valid action by an honest agent: no test"
    groups = counts.groupby(keys, observed=True, sort=False).ngroup().to_numpy()
    test = stats.group_permutation_test(
        counts["k"], counts["n"], groups, n_perm=max(d.n_boot, 500), rng=0
    )
    if math.isnan(test.p):
        return "one cell: no test"
    if test.method == "no variation":
        return "equal rates in every row: every trial has the same rate, p = 1"
    return (
        "equal rates in every row: trial-permutation Wald chi-square (each row's "
        f"trial-clustered variance; {test.describe()}), {test.text()}"
    )


def _honest_columns(d: ReportData, columns: list[str]) -> pd.DataFrame:
    """The honest agents' rows of ``columns`` (those ``d.df`` has; all of its rows when it
    has no ``role``): a copy of what a section reads, not of every column."""
    cols = [c for c in dict.fromkeys(columns) if c in d.df.columns]
    if "role" not in d.df.columns:
        return d.df[cols]
    return d.df.loc[(d.df["role"] == stats.HONEST).to_numpy(), cols]


def _series_styles(n: int) -> list[dict[str, Any]]:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    colours = [cmap(i % cmap.N) for i in range(cmap.N)]
    markers = cycle(["o", "s", "^", "D", "v", "P", "X", "*"])
    styles = cycle(["-", "--", "-.", ":"])
    return [
        {"color": colours[i % len(colours)], "marker": next(markers), "linestyle": next(styles)}
        for i in range(n)
    ]


# -- sections -----------------------------------------------------------------------------
def overview(d: ReportData) -> Section:
    df = d.df
    s = Section("Overview")
    dc = d.design
    if dc is not None:
        if dc.problems:
            s.text(
                f"LEFT OUT: {dc.problems} trial(s) or file(s) are not analysed (missing, "
                "failed, foreign, or corrupt or tampered: their payoffs do not re-derive "
                "from their actions with the game engine). Every statistic below is "
                "computed without them."
            )
            s.table(dc.table(), "What the design check found", "design_check")
        for note in dc.notes:
            s.text(f"Note: {note}.")
        if dc.imported:
            imp = dc.imported
            s.text(
                f"Imported from {', '.join(map(str, imp.get('sources', [])))} "
                f"({imp.get('harness', 'another harness')}). {imp.get('note', '')}".strip()
            )
    expected = dc.expected if dc is not None and dc.expected is not None else None
    of = f" of {expected} in the design" if expected is not None else ""
    hc = d.trial_counts
    line = f"{_distinct(df['trial_id'])} trials analysed{of}, {len(df)} agent-rounds "
    line += f"({int(hc['rows'].sum())} by honest agents)."
    if not d.factors:  # one design cell: its rates are the run's (never pooled over cells)
        # sums of whole numbers: the mean of the honest agents' valid actions, exactly
        k, n = float(hc["k"].sum()), int(hc["n"].sum())
        coord = d.trial_rounds["hunt_succeeded"]
        rate = (
            f"Honest stag rate {k / n:.3f} (stag actions over honest agents' valid actions)"
            if n
            else "No honest stag rate (no honest agent made a valid action, n = 0)"
        )
        line += (
            f" {rate}; hunt success "
            f"{float(coord.mean()) if len(coord) else math.nan:.3f} "
            f"({COORD_NOTE})."
        )
    else:
        line += " Rates are per design cell in the tables below, never pooled over cells."
    s.text(line)
    if len(hc) and not hc["n"].any():
        s.text(
            "Note: no honest agent made a valid action in this run (every reply failed to "
            "parse or came without an action): no stag rate is computed (n = 0); the "
            "parse-failure table below says how its models failed."
        )
    if d.factors:
        s.text(
            f"Design factors that vary (never pooled): {', '.join(FACTORS[f] for f in d.factors)}."
        )
        single = [f for f in d.factors if _distinct(df[f]) < 2]
        if single:
            levels = "; ".join(f"{FACTORS[f]} {_texts(df[f])[0]}" for f in single)
            s.text(
                f"Note: of the design's levels, the analysed trials hold one each for {levels}: "
                "the others' trials failed or are missing (listed above), so no table "
                "compares them and every rate below is of the level named in its row."
            )
    cells = (
        df.drop_duplicates("trial_id")
        .groupby(d.factors or ["spec"], observed=True)
        .size()
        .rename("trials")
        .reset_index()
    )
    s.table(_display(cells), "Design cells and their trials", "cells")
    leg = legend(d.short)
    if not leg.empty:
        s.table(leg, "Model labels used in tables and plots", "models")
    s.text(software())
    return s


#: the libraries the report's numbers are computed with (its overview names their versions)
SOFTWARE = ("pandas", "numpy", "scipy", "statsmodels", "pyarrow")


def software() -> str:
    """The versions of stagbench, Python and ``SOFTWARE`` this report is made with: a
    library's release can change a number (pandas 2 and 3 grouped the echo tables apart)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import stagbench

    made = [f"stagbench {stagbench.__version__}", f"Python {platform.python_version()}"]
    for name in SOFTWARE:
        with contextlib.suppress(PackageNotFoundError):
            made.append(f"{name} {version(name)}")
    return f"Software: {', '.join(made)}."


def cooperation(d: ReportData) -> Section:
    s = Section("Cooperation")
    keys = d.factors
    table = _display(_rates(d, keys))
    s.table(
        table,
        f"Honest stag rate (stag_*: {HONEST_NOTE}, over valid actions; n = agent-rounds; "
        "stag_all_*, where shown: over all honest agent-rounds, a parse failure counted as "
        f"not stag) and hunt success (coord_*: {COORD_NOTE}; n = "
        "trial-rounds) per design cell, trial-clustered 95% CIs. Test: "
        f"{_omnibus(d, keys)}",
        "cooperation_by_cell",
    )
    if _distinct(d.df["model"]) > 1:
        by_model = _display(_rates(d, ["model_label", *keys], coord=False))
        by_model = by_model.drop(columns=[c for c in by_model if str(c).startswith("coord_")])
        s.table(
            by_model.rename(columns={"model_label": "model"}),
            f"Honest stag rate per model and design cell ({HONEST_NOTE}), trial-clustered "
            f"95% CIs. Test across rows: {_omnibus(d, ['model_label', *keys])}",
            "cooperation_by_model",
        )
    per_round = _display(_rates(d, [*keys, "round"]))
    trend = _trend(d, keys)
    s.table(
        per_round,
        f"Per round: honest stag rate ({HONEST_NOTE}) and hunt success (coord_*), "
        "trial-clustered 95% CIs",
        "cooperation_by_round",
    )
    s.table(
        trend,
        "Does the honest stag rate change over rounds? Per trial, the least-squares slope "
        f"of its honest stag rate ({HONEST_NOTE}) on round; slope: their mean (change per "
        "round), with a t interval over trials. Test: the slopes' signs flipped at random "
        f"(exact over every pattern with up to {stats.TREND_EXACT} trials whose slope is "
        "not 0, p_min the smallest p it can give; else the normal approximation), trials "
        "as independent units whatever goes on between a trial's rounds (an agent that "
        "repeats itself makes no trend), over the trials_tested that have a valid action in "
        "every round; a blank z says why in note",
        "round_trend",
    )
    _round_figure(s, d, per_round)
    return s


TREND_TEST = "trial sign-flip"


def _trend(d: ReportData, keys: list[str]) -> pd.DataFrame:
    rows = []
    # per cell, trial and round, the stag count and the valid actions
    per = _per_trial_counts(d, [*keys, "round"])
    per = per.set_index([*keys, "trial_id", "round"]).rename(columns={"k": "sum", "n": "count"})
    wide = per[["sum", "count"]].unstack("round")
    groups: Any = wide.groupby(level=keys, observed=True, sort=True) if keys else [((), wide)]
    for key, g in groups if len(wide) else []:
        played = np.asarray(g["count"].notna().to_numpy().any(axis=0))  # rounds it played
        k, n = g["sum"].to_numpy(float)[:, played], g["count"].to_numpy(float)[:, played]
        t = stats.round_trend(k, n)
        key = key if isinstance(key, tuple) else (key,)
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "trials": len(g),
                "trials_tested": t.used,  # the test's: those with every round played
                "slope": t.slope,
                "slope_lo": t.slope_lo,
                "slope_hi": t.slope_hi,
                "z": t.z,
                "p": t.p,
                "p_min": t.p_min,
                "test": f"trial sign-flip ({t.method})" if t.method else TREND_TEST,
                "note": t.note,
            }
        )
    tested = {tuple(str(r[k]) for k in keys) for r in rows}
    # a cell whose honest agents never made a valid action keeps its row: nothing to test
    cells = (
        d.trial_counts.groupby(keys, observed=True, sort=True) if keys else [((), d.trial_counts)]
    )
    added = []
    for key, g in cells:
        key = key if isinstance(key, tuple) else (key,)
        if tuple(str(v) for v in key) in tested:
            continue
        added.append(
            {
                **dict(zip(keys, key, strict=True)),
                "trials": _distinct(g["trial_id"]),
                "trials_tested": 0,
                **dict.fromkeys(("slope", "slope_lo", "slope_hi", "z", "p", "p_min"), math.nan),
                "test": TREND_TEST,
                "note": "no valid action by an honest agent: nothing to test",
            }
        )
    out = pd.DataFrame(rows + added)
    if added and keys:
        out = out.sort_values(keys, kind="stable").reset_index(drop=True)
    return _display(out)


#: at most this many series (design cells) in one panel of the round figure: more go to
#: panels (facets) by the factors that are left, with one legend for the series
MAX_SERIES = 12


def _facets(data: pd.DataFrame, cell_columns: list[str]) -> tuple[list[str], list[str]]:
    """Which cell columns tell the series of a panel apart and which the panels: the most
    series (at most ``MAX_SERIES``) in the fewest panels; every column a series one when
    the cells fit in one panel."""
    cols = [c for c in cell_columns if c in data.columns]
    if len(cols) < 2 or len(data.drop_duplicates(cols)) <= MAX_SERIES:
        return cols, []
    best: tuple[int, int] | None = None
    chosen: list[str] = cols[-1:]
    for mask in range(1, 2 ** len(cols) - 1):  # every proper subset as the series columns
        series = [c for i, c in enumerate(cols) if mask >> i & 1]
        n = len(data.drop_duplicates(series))
        if n > MAX_SERIES:
            continue
        panels = len(data.drop_duplicates([c for c in cols if c not in series]))
        if best is None or (panels, -n) < best:
            best, chosen = (panels, -n), series
    return chosen, [c for c in cols if c not in chosen]


def round_plot(per_round: pd.DataFrame, cell_columns: list[str]) -> Any:
    """Honest stag rate by round, one line per design cell: whole-number round ticks,
    clustered error bars, and each series with its own colour, marker and dash, moved a
    little sideways so that none hides another. More than ``MAX_SERIES`` cells are drawn
    in panels (one per level of the factors that hold them apart), the same series (the
    other factors' levels) in the same style in every panel, under one legend."""
    data = per_round.copy()
    series_cols, panel_cols = _facets(data, cell_columns)
    data["cell"] = _cell_label(data, series_cols) if panel_cols else _cell_label(data, cell_columns)
    data["panel"] = _cell_label(data, panel_cols) if panel_cols else "all"
    cells = list(dict.fromkeys(data["cell"]))
    panels = list(dict.fromkeys(data["panel"]))
    cols = math.ceil(math.sqrt(len(panels)))
    rows = math.ceil(len(panels) / cols)
    size = (8, 4.5) if len(panels) == 1 else (3.6 * cols + 2, 2.8 * rows + 0.6)
    fig, axes = plt.subplots(rows, cols, figsize=size, sharex=True, sharey=True, squeeze=False)
    width = 0.3
    styles = dict(zip(cells, _series_styles(len(cells)), strict=True))
    lines = {  # each panel's series, split once (not filtered per panel and series)
        (str(p), str(c)): g for (p, c), g in data.groupby(["panel", "cell"], sort=False)
    }
    for ax, panel in zip(axes.flat, panels, strict=False):
        for i, cell in enumerate(cells):
            g = lines.get((str(panel), str(cell)))
            if g is None or g.empty:
                continue
            g = g.sort_values("round")
            offset = (i - (len(cells) - 1) / 2) * (width / max(len(cells) - 1, 1))
            ax.errorbar(
                g["round"].astype(float) + offset,
                g["stag_rate"],
                yerr=stats.error_bars(g["stag_rate"], g["stag_ci_lo"], g["stag_ci_hi"]),
                capsize=2,
                label=str(cell),
                markersize=5,
                **styles[cell],
            )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(ylim=(-0.03, 1.03))
        if panel_cols:
            ax.set_title(str(panel), fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    title = "Honest stag rate by round"
    if len(panels) == 1:
        ax = axes[0, 0]
        ax.set(xlabel="round", ylabel="honest stag rate", title=title)
        if len(cells) > 1:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="cell")
        return fig
    for ax in axes[:, 0]:
        ax.set_ylabel("honest stag rate")
    for ax in axes[-1, :]:
        ax.set_xlabel("round")
    fig.suptitle(f"{title}: one panel per {' · '.join(panel_cols)}")
    handles, labels = [], []
    for ax in axes.flat:  # one legend entry per series, whichever panel drew it
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    order = sorted(range(len(labels)), key=lambda j: cells.index(labels[j]))
    fig.legend(
        [handles[j] for j in order],
        [labels[j] for j in order],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.0, 0.95),
        title=" · ".join(series_cols),
    )
    fig.tight_layout()
    return fig


def _round_figure(s: Section, d: ReportData, per_round: pd.DataFrame) -> None:
    if per_round.empty or not per_round["stag_rate"].notna().any():
        s.text(
            "No figure of the honest stag rate by round: no honest agent made a valid action "
            "in any round (every seat an adversary, or every reply failed to parse)."
        )
        return
    s.figure(
        round_plot(per_round, [FACTORS[f] for f in d.factors]),
        "cooperation_by_round",
        "Honest stag rate by round per design cell, "
        "trial-clustered 95% CIs (points spread sideways so that none hides another)",
    )


def _cells(d: ReportData) -> pd.DataFrame:
    """One row per design cell: its factor levels (as text) and its label."""
    return _cell_rows(d.df, d.factors)


def _cell_rows(frame: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """``_cells`` of the rows ``frame`` (with their ``cell``) whose factors are ``factors``;
    with the population's full name (``population``, models' full names) beside its label
    where the population varies."""
    full = ["population"] if "population_label" in factors and "population" in frame else []
    cells = frame.drop_duplicates("cell")[[*factors, *full, "cell"]].astype(str)
    return cells.sort_values("cell").reset_index(drop=True)


def _reference_level(cells: pd.DataFrame, f: str) -> str:
    """The level of ``f`` the others are compared with: ``none`` (adversary), ``explicit``
    (disclosure), else the first; for the population, the first by its models' full
    names, not by their short labels (a label's cut or mark, ``#2``, sorted before the
    name it stood for and made its population the reference: redteam rt29 F10)."""
    levels = sorted(set(cells[f]))
    ref = next((r for r in ("none", "explicit") if r in levels), None)
    if ref is not None:
        return ref
    if f == "population_label" and "population" in cells:
        return str(cells.sort_values(["population", f]).iloc[0][f])
    return str(levels[0])


#: factors that only name a cell (an imported study's condition: a folder name), which
#: may differ beside the factor a comparison is of when they determine it
NAMES = ("condition",)


def _determines(cells: pd.DataFrame, g: str, f: str) -> bool:
    """Every level of ``g`` comes with one level of ``f`` (an imported study's condition
    determines its disclosure): cells that differ in f cannot agree on g."""
    return bool(cells.groupby(g)[f].nunique().max() == 1)


def _context(d: ReportData, f: str, cells: pd.DataFrame | None = None) -> list[str]:
    """The factors held fixed when ``f`` is compared: all others but a name (``NAMES``)
    that determines ``f`` (it differs whenever f does). A factor of the design is always
    held fixed, even where its levels happen to come with one level of f each (an
    adversary arm run on one topology only): cells that differ in it are no comparison
    of f."""
    return _fixed(_cells(d) if cells is None else cells, d.factors, f)


def _fixed(cells: pd.DataFrame, factors: list[str], f: str) -> list[str]:
    """``_context`` of design cells ``cells`` whose factors are ``factors``."""
    return [g for g in factors if g != f and not (g in NAMES and _determines(cells, g, f))]


def _pairs(d: ReportData) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """Pairs of design cells that differ in one factor f (and in a name that determines
    f, an imported study's condition: ``_context``): the reference level of f (``none``,
    ``explicit``, else the first) against each other level, and adversary arms of the
    same kind and count that differ only in placement (hub vs leaf) against each other."""
    return _cell_pairs(_cells(d), d.factors)


def _cell_pairs(
    cells: pd.DataFrame, factors: list[str]
) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """``_pairs`` of the design cells ``cells`` (``_cells``) whose factors are ``factors``."""
    rows = [{str(k): str(v) for k, v in r.items()} for r in cells.to_dict("records")]
    out = []
    for f in factors:
        fixed = _fixed(cells, factors, f)
        ref = _reference_level(cells, f)
        for i, row in enumerate(rows):
            for other in rows[i + 1 :]:
                if row[f] == other[f]:
                    continue
                placed = f == "adversary_arm" and _placements(row[f], other[f])
                if any(
                    row[g] != other[g]
                    and not (placed and g == "topology" and _shape(row[g]) == _shape(other[g]))
                    for g in fixed
                ):
                    continue
                # the reference level first (new names: the loop's own row stays itself)
                a, b = (other, row) if other[f] == ref else (row, other)
                if a[f] == ref or placed:
                    out.append((f, a, b))
    return out


def _placements(a: str, b: str) -> bool:
    """Adversary arms of one kind and count that differ only in where they sit."""
    return "@" in a and "@" in b and a.split("@")[0] == b.split("@")[0]


_CALL = re.compile(r"([\w.-]+)\((.*)\)")


def _shape(topology: str) -> str:
    """A topology's name without its hub (``star(hub=3)``, ``star(hub=varied)`` and
    ``star`` are one shape): arms that differ in placement (an adversary at the hub or at
    a leaf) are compared on one shape, whichever seat the hub is; any other parameter
    (a direction, a probability, a graph) still tells topologies apart."""
    call = _CALL.fullmatch(topology)
    if call is None or "hub=" not in topology:
        return topology
    args = [a.strip() for a in call.group(2).split(",")]
    rest = [a for a in args if not a.startswith("hub=")]
    return f"{call.group(1)}({', '.join(rest)})" if rest else call.group(1)


def comparison_count(df: pd.DataFrame) -> int:
    """How many comparisons the report's Comparisons section makes (and Holm-adjusts
    together) for a run whose agent-round table is ``df`` (``tables``' or the scan's;
    populations as the record names them, which the report only relabels)."""
    if df.empty:
        return 0
    firsts = df.drop_duplicates("trial_id")
    firsts = firsts.assign(population_label=firsts["population"].astype(str))
    factors = [f for f in FACTORS if _distinct(firsts[f]) > 1]
    firsts = firsts.assign(cell=_cell_label(firsts, factors).to_numpy())
    return len(_cell_pairs(_cell_rows(firsts, factors), factors))


def comparisons(d: ReportData) -> Section:
    s = Section("Comparisons")
    rows = []
    counts = _per_trial_counts(d, ["cell"])
    per_cell = {  # each cell's trials in trial id order (the cell's label is its key)
        str(c): (g["k"].to_numpy(float), g["n"].to_numpy(float))
        for c, g in counts.groupby("cell", sort=False, observed=True)
    }
    empty = (np.zeros(0), np.zeros(0))
    pairs = _pairs(d)
    skipped: list[str] = []
    seatless: list[str] = []  # pairs with an arm of adversaries only
    honest_cells = set(_texts(d.round_counts["cell"])) if len(d.round_counts) else set()
    for i, (factor, a, b) in enumerate(pairs):
        (ka, na), (kb, nb) = per_cell.get(a["cell"], empty), per_cell.get(b["cell"], empty)
        n_perm = max(
            d.n_boot, stats.COMPARISON_PERMUTATIONS
        )  # more where p nears its floor and Holm needs them
        try:
            c = stats.compare_counts(
                ka, na, kb, nb, "cell", a["cell"], b["cell"], n_perm, i, family=len(pairs)
            )
        except ValueError:  # an arm without a valid honest action: said below, not dropped
            no_seat = [x[factor] for x in (a, b) if x["cell"] not in honest_cells]
            (seatless if no_seat else skipped).append(
                f"{FACTORS.get(factor, factor)} {a[factor]} vs {b[factor]} ("
                + ("; ".join(f"{FACTORS[g]}={a[g]}" for g in d.factors if g != factor) or "all")
                + ")"
                + (f": no honest seats in {' and '.join(no_seat)}" if no_seat else "")
            )
            continue
        row = c.as_dict()
        also = [g for g in d.factors if g != factor and a[g] != b[g]]
        row.update(
            factor=FACTORS.get(factor, factor),
            a=a[factor],
            b=b[factor],
            context="; ".join(
                f"{FACTORS[g]}={a[g]}" for g in d.factors if g != factor and a[g] == b[g]
            )
            or "all",
            also_differs="; ".join(f"{FACTORS[g]}: {a[g]} vs {b[g]}" for g in also),
        )
        rows.append(row)
    if seatless:
        s.text(
            "Not compared, no honest seats in an arm (every seat an adversary's: no honest "
            "rate to compare; its hunt success and efficiency are in the cooperation and "
            f"payoff tables): {', '.join(seatless)}."
        )
    if skipped:
        s.text(
            "Not compared, no honest agent made a valid action in one arm or both (no rate "
            f"to compare; see the parse-failure table): {', '.join(skipped)}."
        )
    if not rows:
        if not pairs:
            s.text("No two design cells differ in a single factor: nothing to compare.")
        return s
    fam = pd.DataFrame(rows)
    fam["test"] = [
        "trial rates among places, and agent-rounds (an arm with no spread)"
        if how.startswith(stats.NO_SPREAD_TEST)
        else "studentized trial permutation"
        for how in fam["permutation_method"]
    ]
    fam["p"] = fam["permutation_p"]
    fam["p_method"] = fam["permutation_method"]
    fam["p_min"] = fam["permutation_min_p"]
    fam["p_holm"] = stats.holm(fam["p"].tolist())
    fam["note"] = [
        _diff_ci_note(lo, hi, p, stats.p_text(p, p_min, how))
        for lo, hi, p, p_min, how in zip(
            fam["diff_lo"], fam["diff_hi"], fam["p"], fam["p_min"], fam["p_method"], strict=True
        )
    ]
    disagree = int((fam["note"] != "").sum())
    cols = [
        "factor",
        "a",
        "b",
        "context",
        "also_differs",
        "rate_a",
        "rate_b",
        "n_a",
        "n_b",
        "trials_a",
        "trials_b",
        "diff",
        "diff_lo",
        "diff_hi",
        "diff_ci_method",
        "test",
        "p",
        "p_method",
        "p_min",
        "p_holm",
        "fisher_p",
        "population",
        "note",
    ]
    s.table(
        fam[cols],
        f"Honest stag rate ({HONEST_NOTE}) in arm a vs arm b, cells equal in every other "
        "factor (context) except factors that name the arm (also_differs: an imported "
        "study's condition; for arms that differ only in placement, which seat is a "
        "star's hub). n = agent-rounds with a valid action; diff CI: the arms' "
        "trial-clustered intervals combined by Newcombe's square-and-add (diff_ci_method "
        "names each arm's interval); it is not the test inverted"
        + (
            f", and in {disagree} row(s) it and p disagree (see note)"
            if disagree
            else ", and here it agrees with p in every row"
        )
        + ". "
        "Test: whole trials swapped between arms, statistic the difference of pooled rates "
        "over its trial-clustered standard error (valid when arms' trials differ in size; "
        "where one arm's trials have no spread and the other's some, the larger p of trial "
        "rates permuted among the trials' places and agent-rounds as independent); "
        "p_method: exact (every distinct split) or Monte Carlo with that many permutations "
        "(more where p neared its floor and the table's size needed them), p_min: the "
        "smallest p it could give. Holm over the whole table; Fisher on pooled agent-rounds "
        "for contrast (it over-rejects when rounds of a trial are correlated)",
        "comparisons",
    )
    if "disclosure" in d.factors and {"explicit", "silent"} <= {
        str(v) for v in d.df["disclosure"].unique()
    }:
        _disclosure_figure(s, d)
    ev = metrics.betrayal_events(d.df)
    s.text(
        f"{len(ev)} betrayal events (signalled stag, hunted hare); "
        f"{int((ev['role'] == 'honest').sum())} by honest agents.{_unheard_note(d)}"
    )
    return s


def _unheard_note(d: ReportData) -> str:
    """A sentence on the trials in which no message reached anyone (no talk phase, nobody
    spoke, or a graph without edges), where a betrayal count of 0 measures nothing: no
    agent could signal stag to another or see a promise broken (rt40 F2); "" when none."""
    quiet, trials = d.unheard
    if not quiet:
        return ""
    return (
        f" In {quiet} of {trials} trials no message reached anyone (no talk phase, "
        "nobody spoke, or a graph without edges): no agent there could signal stag to "
        "another or see a promise broken, so their betrayal counts of 0 measure nothing."
    )


def _diff_ci_note(
    lo: float, hi: float, p: float, said: str | None = None, alpha: float = 0.05
) -> str:
    """A comparison's note where its difference interval (the arms' intervals combined, not
    the permutation test inverted) and the test's p disagree: the interval holds 0 and
    p <= ``alpha``, or the reverse. ``said``: how p reads (``stats.p_text``)."""
    if not all(map(math.isfinite, (lo, hi, p))):
        return ""
    holds = lo <= 0.0 <= hi
    if holds == (p > alpha):
        return ""
    said = said or f"p = {p:.3g}"
    what = f"contains 0 while {said} <= {alpha}" if holds else f"excludes 0 while {said} > {alpha}"
    if said.startswith("p <="):  # at its floor: "p <= 0.001 (...), below 0.05"
        what = f"contains 0 while {said}, below {alpha}"
    return (
        "the diff CI (the arms' intervals combined) is not the test inverted and disagrees "
        f"with it here: it {what}"
    )


def _disclosure_figure(s: Section, d: ReportData) -> None:
    others = _context(d, "disclosure")
    table = _display(_rates(d, [*others, "disclosure"], coord=False))
    table = table.drop(columns=[c for c in table if str(c).startswith("coord_")])
    cols = [FACTORS[f] for f in others]
    table["context"] = _cell_label(table, cols)
    both = table.groupby("context")["disclosure"].nunique()
    table = table[table["context"].map(both) >= 2].reset_index(drop=True)  # pairs only
    if table.empty:
        return
    contexts = list(dict.fromkeys(table["context"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(contexts) + 2), 4.2))
    for i, disc in enumerate(("explicit", "silent")):
        t = table[table["disclosure"] == disc].set_index("context").reindex(contexts)
        xs = np.arange(len(contexts)) + (i - 0.5) * 0.38
        ax.bar(
            xs,
            t["stag_rate"],
            width=0.36,
            label=disc,
            yerr=stats.error_bars(t["stag_rate"], t["stag_ci_lo"], t["stag_ci_hi"]),
            capsize=3,
        )
    ax.set_xticks(range(len(contexts)), contexts, rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="honest stag rate", ylim=(0, 1.05), title="Explicit vs silent")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    s.figure(
        fig,
        "explicit_vs_silent",
        "Honest stag rate, explicit vs silent, trial-clustered "
        "95% CIs: the bars are the table below",
    )
    s.table(table.drop(columns=["context"]), "The data of the figure above", "explicit_vs_silent")


def _group_means(
    frame: pd.DataFrame,
    keys: list[str],
    values: pd.Series,
    bounds: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
) -> dict[tuple[str, ...], tuple[float, float, float, int]]:
    """Per group of ``keys``: mean of ``values`` with a trial-clustered interval, and n
    (``stats.mean_ci`` on each group's rows, the groups in the order of their levels' text).
    ``bounds``: each row's least and most value; a group's interval is then kept within
    the least and the most of its rows (a t interval around a mean of few trials can reach
    past them, e.g. below the least payoff of the game)."""
    trial = frame["trial_id"]
    clusters = (
        trial.cat.codes.to_numpy()
        if isinstance(trial.dtype, pd.CategoricalDtype)
        else pd.factorize(trial)[0]
    )
    if keys:
        grouped = frame[keys].groupby(keys, observed=True, sort=False)
        codes = grouped.ngroup().to_numpy()
        codes = np.where(np.isnan(codes.astype(float)), -1, codes).astype(np.int64)
        names = grouped.size().index
        found: dict[tuple[str, ...], int] = {}
        for code, key in enumerate(names):  # the groups as iterating over them gives them
            parts = tuple(str(k) for k in key) if isinstance(key, tuple) else (str(key),)
            found[parts] = code
    else:
        codes = np.zeros(len(frame), dtype=np.int64)
        found = {(): 0}
    order = sorted(found)  # in the order of the levels' text, as the tables show
    means = stats.group_mean_cis(
        values.to_numpy(dtype=float, na_value=np.nan),
        codes,
        clusters,
        [found[parts] for parts in order],
    )
    if bounds is not None and len(frame):
        lo, hi = (np.asarray(b, dtype=float) for b in bounds)
        held = codes >= 0
        least = np.full(len(found), np.inf)
        most = np.full(len(found), -np.inf)
        np.fmin.at(least, codes[held], lo[held])  # fmin/fmax: a row without bounds
        np.fmax.at(most, codes[held], hi[held])  # (NaN) bounds nothing
        least[np.isposinf(least)], most[np.isneginf(most)] = -np.inf, np.inf  # none: unbounded
        means = [
            (m, max(m_lo, least[c]), min(m_hi, most[c]), n) if m_lo == m_lo else (m, m_lo, m_hi, n)
            for (m, m_lo, m_hi, n), c in zip(means, (found[parts] for parts in order), strict=True)
        ]
    return dict(zip(order, means, strict=True))


#: the game's payoffs (a trial's constants): what a player can earn in a round
PAYOFF_COLUMNS = ["stag_payoff", "hare_payoff", "failed_stag_payoff", "invalid_payoff"]


def _payoff_range(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the least and the most a player can earn in a round of its trial's game
    (``PAYOFF_COLUMNS``; rows without them: unbounded)."""
    if not set(PAYOFF_COLUMNS) <= set(frame.columns):
        return np.full(len(frame), -np.inf), np.full(len(frame), np.inf)
    pays = frame[PAYOFF_COLUMNS].to_numpy(dtype=float)
    return pays.min(axis=1), pays.max(axis=1)


def _efficiency(
    frame: pd.DataFrame,
) -> tuple[pd.Series, tuple[np.ndarray, np.ndarray]]:
    """Per agent-round, where its payoff lies between the worst payoff a valid action can
    earn in its trial's game (hare or a failed stag, the lower: 0) and the all-stag payoff
    (1), and the bounds that puts on it. A ratio to the stag payoff alone (the default
    game's worst is 0, where the two agree) turned upside down under negative payoffs
    (every hunt failing read 8.25 against 1 for every hunt succeeding) and was blank with
    a stag payoff of 0 (rt40 F1). NaN where the stag payoff is not above that worst (a
    game that is no Stag Hunt) or the payoffs are not known."""
    if not set(PAYOFF_COLUMNS) <= set(frame.columns):
        none = np.full(len(frame), np.nan)
        return pd.Series(none, index=frame.index), (none, none)
    stag = frame["stag_payoff"].to_numpy(dtype=float)
    worst = np.minimum(
        frame["hare_payoff"].to_numpy(dtype=float),
        frame["failed_stag_payoff"].to_numpy(dtype=float),
    )
    span = np.where(stag > worst, stag - worst, np.nan)
    least, most = _payoff_range(frame)
    value = (frame["payoff"].to_numpy(dtype=float) - worst) / span
    return pd.Series(value, index=frame.index), ((least - worst) / span, (most - worst) / span)


def payoffs(d: ReportData) -> Section:
    s = Section("Payoffs and welfare")
    keys = d.factors
    df, at = d.df, d.agent_trials
    honest = _honest_columns(d, [*keys, "trial_id", "payoff", *PAYOFF_COLUMNS])
    pay = _group_means(honest, keys, honest["payoff"], _payoff_range(honest))
    del honest
    eff = _group_means(df, keys, *_efficiency(df))
    # the cost is over valid actions after the trigger: an agent-trial with none (a last-
    # round trigger, a one-round game, a model that never answers) lost nothing to measure
    trig = at[at["trigger_round"].notna() & (at["rounds_after"] > 0)] if len(at) else at
    cost: dict[tuple[str, ...], tuple[float, float, float, int]] = {}
    if len(trig):
        limits = None
        if set(PAYOFF_COLUMNS) <= set(df.columns):
            # each round after the trigger costs hare - what stag earned (a success: a
            # gain), or nothing (hare): within rounds_after x [hare - stag, hare - failed stag]
            game = df.groupby("trial_id", observed=True)[PAYOFF_COLUMNS].first()
            game.index = game.index.astype(str)
            per = game.reindex(trig["trial_id"].astype(str)).to_numpy(dtype=float)
            after = trig["rounds_after"].to_numpy(dtype=float)
            gain = np.minimum(per[:, 1] - per[:, 0], 0.0)
            loss = np.maximum(per[:, 1] - per[:, 2], 0.0)
            limits = (after * gain, after * loss)
        cost = _group_means(trig, keys, trig["persistence_cost"], limits)
    trials: dict[tuple[str, ...], int] = {(): _distinct(df["trial_id"])}
    if keys:  # every trial's factors are on its trial-rounds (a few rows, not every one)
        tr = d.trial_rounds
        counts = tr.groupby(keys, observed=True)["trial_id"].nunique()
        trials = {
            tuple(str(x) for x in (k if isinstance(k, tuple) else (k,))): int(v)
            for k, v in counts.items()
        }
    nan4 = (math.nan, math.nan, math.nan, 0)
    rows = []
    # every cell with players: one of adversaries only has no honest payoff (n_honest 0)
    # but its efficiency, an all-player measure
    for key in sorted({*pay, *eff}):
        p, p_lo, p_hi, p_n = pay.get(key, nan4)
        e, e_lo, e_hi, e_n = eff.get(key, nan4)
        c, c_lo, c_hi, c_n = cost.get(key, nan4)
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "honest_payoff": p, "honest_payoff_lo": p_lo, "honest_payoff_hi": p_hi,
                "n_honest": p_n, "efficiency": e, "efficiency_lo": e_lo, "efficiency_hi": e_hi,
                "n_all": e_n, "persistence_cost": c, "persistence_cost_lo": c_lo,
                "persistence_cost_hi": c_hi, "n_triggered": c_n,
                "trials": trials.get(key, 0),
            }
        )  # fmt: skip
    s.table(
        _display(pd.DataFrame(rows)),
        f"Honest payoff per agent-round ({HONEST_NOTE}); efficiency: per agent-round of "
        "every player, where its payoff lies between the worst payoff of a valid action in "
        "the game (hare or a failed stag, the lower: 0) and the all-stag payoff (1: every "
        "player earned it; under a stag threshold below the players a hare hunter beside a "
        "successful hunt earns less; below 0: an answer that could not be read, paid an "
        "invalid payoff lower still); price of persistence: payoff an honest agent lost by "
        "hunting stag after its trigger instead of hare (negative: stag paid more, as when "
        "the hunt succeeded without the defector), per agent-trial with a trigger and a "
        "valid action after it (n_triggered). Means with trial-clustered 95% CIs (t with "
        "trials - 1 df, cluster-robust standard error, kept within what the mean can be "
        "under the game's payoffs; blank: fewer than two trials, or no spread between "
        "trials, or for efficiency a game whose all-stag payoff is not above that worst "
        "payoff; above 1: a game that pays more than the all-stag payoff for hare or for an "
        "answer that could not be read, which validate warns of; n_honest 0: no honest "
        "seat in the cell)",
        "payoffs",
    )
    return s


#: the report's columns the regression reads under the formula's names (``population``: its
#: short label, as every table gives it)
REGRESSION_COLUMNS = {"model_label": "model", "population_label": "population"}


#: the regression table's scales: which interval belongs to which estimate
SCALES = (
    "coef (log-odds) has the 95% interval coef_lo-coef_hi on the same scale; odds_ratio = "
    "exp(coef) (the Intercept's: the odds of stag) has its own, or_lo-or_hi = "
    "exp(coef_lo)-exp(coef_hi)"
)


def regression(d: ReportData) -> Section:
    s = Section("Regression")
    # only what the model reads (the design factors it may use, round, outcome, trial)
    columns = {v: k for k, v in REGRESSION_COLUMNS.items()}
    used = ["trial_id", "stag", "round", *(columns.get(f, f) for f in stats.FORMULA_FACTORS)]
    honest_df = _honest_columns(d, [*used, "model_label"]).rename(columns=REGRESSION_COLUMNS)
    formula, left_out = stats.formula_terms(honest_df)
    # round centred at the middle of the rounds played: the factor rows are effects at a
    # round that was played, not at round 0 (an effect that grows over the rounds read as
    # none there); the levels that did not play it are named (``stats.round_centre``)
    at = stats.round_centre(honest_df, formula)
    centre = at.centre
    honest_df = honest_df.assign(round=honest_df["round"] - centre)
    for f in d.factors:  # the design factors that vary and are not in the formula, and why
        name = REGRESSION_COLUMNS.get(f, f)
        if name in left_out:
            what = FACTORS[f] if FACTORS[f] == name else f"{FACTORS[f]} ({name})"
            s.text(f"Note: {what} varies but is not in the formula: {left_out[name]}.")
    sample = stats.gee_sample(honest_df)
    n_all, n_fit = _distinct(honest_df["trial_id"]), _distinct(sample["trial_id"])
    fitted_on = "" if n_fit == n_all else f" (fitted on a random {n_fit} of {n_all} trials)"
    fit = stats.logit_model(sample, formula, n_boot=min(max(d.n_boot, 100), 400))
    for note in fit.notes:
        s.text(f"Note: {note}.")
    if fit.table is None:
        s.text(f"`{formula}` is not estimable on this data: no coefficients are reported.")
        return s
    s.text(f"Method: {fit.method}.")
    table = fit.table.reset_index(names="term")
    if at.outside:
        s.text(
            f"Note: round {centre:g}, at which the Intercept and the factor rows are given, "
            f"was not played by {'; '.join(at.outside)}. Their rows (the Intercept's for a "
            "reference level) are no observation at that round but an extrapolation to it "
            "along a fitted round slope: the level's own :round row where it has one; with "
            "one round played that row is aliased, and the row is the level's difference at "
            "the round it played from the other levels' fitted line there, assumed to hold "
            "at every round (the line's misfit at that round can set its sign). The table's "
            "note column marks them; the per-round cooperation table gives those levels' "
            "observed rates round by round."
        )
        table["note"] = [
            f"extrapolated to round {centre:g}: {at.extrapolated[t]} did not play it"
            if t in at.extrapolated
            else ""
            for t in table["term"]
        ]
    s.table(
        table,
        f"Logistic model of honest stag choices, {fit.method}. round is centred at round "
        f"{centre:g}, the middle of the rounds played ({at.first}-{at.last}): the Intercept "
        "and the "
        f"factor rows are log-odds (ratios) at round {centre:g}"
        + (" (those the note column marks: extrapolated to it, see the note)" if at.outside else "")
        + f", each :round row a change per round{fitted_on}. {SCALES}"
        + (
            f". Reference cell (the Intercept's; each factor row compares its level with "
            f"it) {fit.reference}"
            if fit.reference and not fit.uneven
            else f". Reference cell (the Intercept's only: the rows of "
            f"{', '.join(fit.uneven)} compare levels within the groups where they occur, "
            f"see the note) {fit.reference}"
            if fit.reference
            else ""
        )
        + f": {formula}",
        "regression",
    )
    return s


def archetype_section(d: ReportData) -> Section:
    at = d.agent_trials
    s = Section("Archetypes")
    if at.empty:
        s.text("No honest agent-trials.")
        return s
    if not at["n_valid"].any():
        s.text(
            "No honest agent made a valid action in this run: no pattern to label (see the "
            "parse-failure table)."
        )
        return s
    by = ["model_label", "cell"]
    feats = archetypes.trial_features(at, by)  # read by the labels and their stability
    # a model and cell whose honest agents never acted has no pattern: its label is "no
    # valid action", with no confidence (``archetypes.NO_VALID``)
    labels = archetypes.group_labels(at, by, n_boot=d.n_boot, features=feats)
    labels = labels.join(_forgiveness(at, by), on=by)
    labels = labels.rename(columns={"model_label": "model", "cell": "condition"})
    untestable = int((labels["note"] != "").sum())
    few = int((labels["label_note"] != "").sum())
    labels["note"] = [
        "; ".join(x for x in pair if x)
        for pair in zip(labels.pop("label_note"), labels["note"], strict=True)
    ]
    if few:
        s.text(
            f"Note: {few} of {len(labels)} groups are Unclassified/Inconsistent for want of "
            "trials: every one of their trials shows their modal pattern's rate alike (no spread "
            "to read noise from), yet so few trials cannot reach the rule's bound (the note says "
            "how many it needs). Their confidence is that of being unclassified at this count."
        )
    if untestable:
        s.text(
            f"Note: in {untestable} of {len(labels)} groups (model and design cell) no "
            "agent-trial that switched to hare after its trigger had a later round in which "
            "every other player hunted stag, the chance to forgive that Defection-Prone needs "
            "(an adversary that hunts hare every round, such as byzantine, injector or "
            "deceiver, or other agents that never forgive, leave none): there Defection-Prone "
            "cannot be told apart from a forgiving strategy, and an agent that never returned "
            "to stag is Unclassified, not Defection-Prone. The note column names them."
        )
    front = ["model", "condition", "label", "confidence"]
    s.table(
        labels[front + [c for c in labels.columns if c not in front]],
        "Calibrated label per model and design cell (condition). A label needs its modal "
        "pattern borne out against noise: a reaction (reaction_z, one-sided: first hares "
        "after the trigger beyond the hare rate of the model's untriggered agent-rounds of "
        "the same round and design cell, both while the agent has hunted no hare and has "
        "not, before its trigger, just talked of the game without promising stag; this "
        "takes out an end-game schedule, a rate that differs by trial or by cell, and a "
        "hare announced ahead, not every common cause; reaction_pooled: rounds whose "
        "baseline holds rounds of the cell's other arms, no-adversary or default stag-signal "
        "ones (never for injector, deceiver or own-words signal arms, compared within "
        "themselves); reaction_untested: rounds with none "
        "to compare, left "
        "out; reaction_after_own: rounds after its own hare or announcement, left out; "
        "same_round_z: its hares in the round another player first hunted hare, unseen "
        "then, beyond the same baseline: past the level, a cause shared with the others' "
        "hare, such as a mood common to the trial's seats, and no reaction label), "
        "or a steady rate whose lower bound reaches the rule's "
        "threshold; else Unclassified/Inconsistent. Cooperation-Persistent and Pre-emptive "
        "defector describe a rate (stag after the trigger, hare before any other player's "
        "hare: pre_trigger_hare), not a reaction: "
        "an agent that hunts stag 85% of the time whatever happens is Cooperation-Persistent "
        "(reaction_z says whether it reacted). Confidence: share of "
        f"{d.n_boot:,} trial bootstrap resamples giving the same label. n_no valid action: "
        "agent-trials without any valid action, which have no pattern (not Unclassified); "
        "a group of only such is labelled no valid action. switched: agent-trials that "
        "hunted hare right after their trigger; forgive_chance: those of them with a later "
        "round in which every other player hunted stag (none: Defection-Prone cannot be "
        "told apart, see note)",
        "archetypes",
    )
    shares, counts = _pattern_shares(at)
    left_out = int(counts["without_valid_action"].sum())
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(shares) + 3), 4.4))
    bottom = np.zeros(len(shares))
    ticks = [
        _pattern_tick(m, int(n), int(k))
        for m, n, k in zip(
            shares.index.astype(str), counts["agent_trials"], counts["without_valid_action"],
            strict=True,
        )
    ]  # fmt: skip
    for lab in [c for c in archetypes.LABELS if c in shares.columns]:
        heights = shares[lab].fillna(0.0).to_numpy()  # a model that never acted: no bar
        ax.bar(ticks, heights, bottom=bottom, label=lab)
        bottom += heights
    ax.set(ylabel="share of agent-trials with a valid action", ylim=(0, 1),
           title="Patterns per model")  # fmt: skip
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    s.figure(
        fig,
        "archetype_patterns",
        "Per agent-trial patterns (descriptive, pooled over cells; noise shows every "
        "pattern), each model's shares over its agent-trials with a valid action (n under "
        "each bar): the calibrated labels are in the table above"
        + (
            f". {left_out} of {int(counts['agent_trials'].sum())} agent-trials had no valid "
            "action at all: no pattern, left out of the shares, counted under the bars"
            if left_out
            else ""
        ),
    )
    s.table(
        pd.concat([counts, shares], axis=1)
        .assign(note=[_no_pattern_note(int(n)) for n in counts["with_valid_action"]])
        .reset_index()
        .rename(columns={"model_label": "model"}),
        "The data of the figure above: each pattern's share is over the agent-trials with a "
        "valid action (with_valid_action); those without any (without_valid_action, of the "
        "model's agent_trials) have no pattern and are left out",
        "archetype_patterns",
    )
    stab = archetypes.stability(at, by, features=feats)
    s.table(
        stab.rename(columns={"model_label": "model", "cell": "condition"}),
        "Stability of the labels across split halves of trials and seed cohorts "
        "(halves_agree n/a or seed_agreement blank, with a note saying why, where the "
        "halves or cohorts are too small to carry the label even without noise, or where "
        "the agents made no valid action)",
        "archetype_stability",
    )
    return s


def _forgiveness(at: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group (``by``, as text): the agent-trials that switched to hare right after
    their trigger (``switched``), those of them with a chance to forgive (a later clean
    round, ``metrics.agent_row``'s ``forgive_chance``), and a note on a group where some
    switched and none had that chance: Defection-Prone needs it, so the rule cannot tell
    Defection-Prone apart there (the agent-trials that never returned are Unclassified)."""
    switched = at["switched"].astype(bool)
    frame = pd.DataFrame(
        {
            **{c: at[c].astype(str) for c in by},
            "switched": switched.astype("int64"),
            "forgive_chance": (switched & at["forgive_chance"].astype(bool)).astype("int64"),
            "never_returned": (switched & ~at["returned"].astype(bool)).astype("int64"),
        }
    )
    out = frame.groupby(by, sort=True)[["switched", "forgive_chance", "never_returned"]].sum()
    out["note"] = [
        f"none of its {n} agent-trials that switched to hare had a later round in which "
        "every other player hunted stag (a chance to forgive): Defection-Prone cannot be "
        f"told apart here ({k} never returned to stag: Unclassified, not Defection-Prone)"
        if n and not c
        else ""
        for n, c, k in zip(
            out["switched"], out["forgive_chance"], out["never_returned"], strict=True
        )
    ]
    return out.drop(columns=["never_returned"])


def _pattern_shares(at: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per model (``model_label``): each pattern's share of its agent-trials with a valid
    action (none for a model with none), and its agent-trials: all, without a valid action
    (no pattern: ``archetypes.NO_VALID``) and with one (the shares' denominator)."""
    idle = at["archetype"] == archetypes.NO_VALID
    model = at["model_label"].astype(str)
    total = model.value_counts().sort_index()
    without = model[idle].value_counts().reindex(total.index, fill_value=0)
    counts = pd.DataFrame(
        {"agent_trials": total, "without_valid_action": without,
         "with_valid_action": total - without}
    )  # fmt: skip
    counts.index.name = "model_label"
    acted = at[~idle]
    dist = (
        pd.crosstab(model[~idle], acted["archetype"].astype(str))
        .reindex(index=total.index)
        .astype(float)
    )
    patterns = [c for c in archetypes.LABELS if c in dist.columns]
    shares = dist[patterns].div(counts["with_valid_action"].where(lambda n: n > 0), axis=0)
    shares.index.name = "model_label"
    return shares, counts


def _pattern_tick(model: str, agent_trials: int, without: int) -> str:
    """A bar's name in the pattern figure: the model and the agent-trials its shares are
    over (and those without a valid action, left out)."""
    if without == agent_trials:
        return f"{model}\nno valid action\nin its {agent_trials}\nagent-trials"
    if without:
        return (
            f"{model}\nn = {agent_trials - without} of {agent_trials}\n({without} without\n"
            "a valid action)"
        )
    return f"{model}\nn = {agent_trials}"


def _no_pattern_note(with_valid_action: int) -> str:
    """The pattern table's note for a model with ``with_valid_action`` agent-trials."""
    return "" if with_valid_action else "no valid action in any of its agent-trials: no pattern"


def _agent_trial_rates(rows: pd.DataFrame, keys: list[str], hit: Any, prefix: str) -> pd.DataFrame:
    """Per ``keys``: the share of the agent-trials ``rows`` whose ``hit`` (one bool each) is
    true, with its trial-clustered interval (``_rate_table``: agent-trials clustered by
    trial; no rows, an empty table with its columns)."""
    per = (
        rows.assign(k=np.asarray(hit, dtype=float), n=1.0)
        .groupby([*keys, "trial_id"], observed=True, sort=True)[["k", "n"]]
        .sum()
        .reset_index()
    )
    return _rate_table(per, keys, prefix)


def _detection_table(d: ReportData, at: pd.DataFrame) -> pd.DataFrame:
    """Per model and design cell (the rows of ``cooperation_by_model``: ``model_label``
    and the factors that vary): the honest agent-trials, those that observed a betrayal
    (``detection_n``, in ``detection_trials`` trials), those the lexical detector found
    naming the betrayer or voicing distrust after it (``detected``), the detection rate
    over the observers with a trial-clustered interval (``_rate_table``, agent-trials
    clustered by trial), and the detection latency's median and mean over the detected
    (``latency_n``). A row without an observed betrayal has no rate, and says why."""
    keys = ["model_label", *d.factors]
    at = at.assign(**{k: at[k].astype(str) for k in keys})
    seen = at[at["betrayal_round"].notna()]
    rates = _agent_trial_rates(seen, keys, seen["detected"], "detection_")
    base = (
        at.groupby(keys, observed=True, sort=True)
        .agg(agent_trials=("trial_id", "size"), trials=("trial_id", "nunique"))
        .reset_index()
    )
    detected = seen.groupby(keys, observed=True)["detected"].sum().rename("detected")
    lat = seen.groupby(keys, observed=True)["detection_latency"]
    latency = pd.DataFrame(
        {"latency_median": lat.median(), "latency_mean": lat.mean(), "latency_n": lat.count()}
    )
    out = base.merge(rates, on=keys, how="left")
    out = out.join(detected, on=keys).join(latency, on=keys)
    for col in ("detection_n", "detection_trials", "detected", "latency_n"):
        out[col] = out[col].fillna(0).astype("int64")
    out["note"] = [
        "its honest agent-trials observed no betrayal (no stag signal they received was "
        "followed by hare): no detection rate"
        if n == 0
        else ("none detected: no latency" if k == 0 else "")
        for n, k in zip(out["detection_n"], out["detected"], strict=True)
    ]
    cols = [
        *keys, "agent_trials", "trials", "detection_n", "detection_trials", "detected",
        "detection_rate", "detection_ci_lo", "detection_ci_hi", "detection_ci",
        "latency_median", "latency_mean", "latency_n", "note",
    ]  # fmt: skip
    return _display(out[cols]).rename(columns={"model_label": "model"})


#: more series than this and the latency figure is not drawn (its table has the counts)
LATENCY_SERIES = 12


def _latency_figure(s: Section, d: ReportData, seen: pd.DataFrame) -> None:
    """Detection latency per model and design cell (the rows of the detection table with a
    detection): agent-trials at each number of rounds, one series per row, and its data."""
    keys = ["model_label", *d.factors]
    lat = seen[seen["detection_latency"].notna()]
    if lat.empty:
        return
    lat = lat.assign(**{k: lat[k].astype(str) for k in keys})
    lat = lat.assign(latency=lat["detection_latency"].astype("int64"))
    counts = (
        lat.groupby([*keys, "latency"], observed=True, sort=True)
        .size()
        .rename("agent_trials")
        .reset_index()
    )
    table = _display(counts).rename(columns={"model_label": "model"})
    shown = ["model", *(FACTORS[f] for f in d.factors)]
    table["row"] = _cell_label(table, shown)
    series = list(dict.fromkeys(table["row"]))
    if len(series) > LATENCY_SERIES:
        s.text(
            f"Detection latency: {len(series)} rows (model and design cell) detect; too "
            "many to draw, the counts per row are in the table below."
        )
    else:
        xs = np.arange(1, int(table["latency"].max()) + 1)
        width = 0.8 / len(series)
        fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(xs) * len(series) + 3), 3.8))
        for i, name in enumerate(series):
            t = table[table["row"] == name].set_index("latency")["agent_trials"]
            ax.bar(xs + (i - (len(series) - 1) / 2) * width, t.reindex(xs, fill_value=0),
                   width=width, label=name)  # fmt: skip
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="rounds to detection", ylabel="agent-trials", title="Detection latency")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        s.figure(
            fig,
            "detection_latency",
            "Rounds from observed betrayal to detection, per model and design cell (never "
            "pooled): the agent-trials detected at each latency; the data are the table below",
        )
    s.table(
        table.drop(columns=["row"]),
        "Detected agent-trials at each detection latency (rounds), per model and design cell",
        "detection_latency",
    )


def betrayal_detection(d: ReportData) -> Section:
    at = d.agent_trials
    s = Section("Betrayal detection")
    seen = at[at["betrayal_round"].notna()] if len(at) else at
    if len(seen):
        s.text(
            f"{len(seen)} honest agent-trials (in {_distinct(seen['trial_id'])} trials) "
            "observed a betrayal (a stag signal they received, followed by hare). The "
            "lexical detection rate (a later message or reasoning of theirs names the "
            "betrayer or voices distrust) is per model and design cell in the table below, "
            "never pooled over them."
        )
        s.table(
            _detection_table(d, at),
            "Lexical betrayal detection per model and design cell (honest agents only): "
            "agent_trials, honest agent-trials in the row (in trials); detection_n, those "
            "that observed a betrayal (in detection_trials trials), the rate's n; detected, "
            "those whose later talk or reasoning names the betrayer or voices distrust; "
            "detection_rate = detected / detection_n with a trial-clustered 95% CI "
            "(agent-trials clustered by trial; detection_ci: how it was made); latency: "
            "rounds from the observed betrayal to detection, median and mean over the "
            "latency_n detected agent-trials. A blank rate or latency says why in note",
            "betrayal_detection",
        )
        _latency_figure(s, d, seen)
    else:
        s.text(f"No honest agent observed a betrayal: no detection rate.{_unheard_note(d)}")
    s.table(
        evaluate(d.detector),
        "The lexical detectors of this report (the run's vocabularies) on the bundled "
        "labelled sample (stagbench.analysis.lexicon_sample, written with the default "
        "vocabularies: in-sample) and on held-out talk (213 messages written apart from them "
        "and never used to tune them): recall and precision; no-stag talk is the reading "
        "behind the archetypes' talk rule, against the speaker's announced hare or refusal",
        "lexicon_recall",
    )
    return s


def judge_table(d: ReportData, judged: pd.DataFrame) -> pd.DataFrame:
    """The LLM judge per model and design cell (the rows of the detection table), over the
    honest agent-trials that observed a betrayal (``observers``, in ``trials`` trials):
    ``not_asked`` (they wrote nothing after it), ``asked``, ``answered``, ``failed`` and
    the failures by kind; of the answered, ``lexical_detected`` and ``judge_detected``, the
    agreement rate (``agreed`` / ``agreement_n``) with a trial-clustered interval
    (``_rate_table``, agent-trials clustered by trial) and Cohen's kappa with its
    trial-clustered interval (``judge.kappa_ci``). A blank rate or kappa says why in
    ``note``, a blank kappa interval in ``kappa_ci``."""
    keys = ["model_label", *d.factors]
    j = judged.assign(**{k: judged[k].astype(str) for k in keys})
    rows = []
    for key, g in j.groupby(keys, observed=True, sort=True):
        a = judge.agreement(g)
        if a["answered"]:
            note = a["kappa_note"]
        elif a["asked"]:
            note = f"no judgement: all {a['asked']} asked failed (see failures)"
        else:
            note = f"no judgement: none asked ({judge.NOT_ASKED_WHY} for every one)"
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "observers": a["observers"],
                "trials": int(g["trial_id"].nunique()),
                **{c: a[c] for c in ("not_asked", "asked", "answered", "failed")},
                "failures": judge.failures_text(a["failures"]),
                **{c: a[c] for c in ("lexical_detected", "judge_detected", "agreed")},
                **{c: a[c] for c in ("kappa", "kappa_ci_lo", "kappa_ci_hi", "kappa_ci")},
                "note": note,
            }
        )
    base = pd.DataFrame(rows)
    ok = j[j["judge_status"] == judge.ANSWERED]
    same = ok["detected"].astype(bool).to_numpy() == ok["judge_detected"].astype(bool).to_numpy()
    rates = _agent_trial_rates(ok, keys, same, "agreement_")
    out = base.merge(rates, on=keys, how="left") if len(base) else base
    for col in ("agreement_n", "agreement_trials"):
        out[col] = out[col].fillna(0).astype("int64") if col in out else pd.Series(dtype="int64")
    cols = [
        *keys, "observers", "trials", "not_asked", "asked", "answered", "failed", "failures",
        "lexical_detected", "judge_detected", "agreed", "agreement_rate", "agreement_ci_lo",
        "agreement_ci_hi", "agreement_n", "agreement_trials", "agreement_ci", "kappa",
        "kappa_ci_lo", "kappa_ci_hi", "kappa_ci", "note",
    ]  # fmt: skip
    return _display(out.reindex(columns=cols)).rename(columns={"model_label": "model"})


def judge_section(
    d: ReportData, judged: pd.DataFrame, model: str, error: str | None = None
) -> tuple[Section, pd.DataFrame]:
    """The LLM judge ``model``'s section (its rows ``judged`` of ``judge_detection``, or
    the ``error`` that kept it from being asked at all) and its table (``judge_table``)."""
    s = Section("LLM judge")
    if error is not None:
        s.text(f"Note: no judgement made: the judge {model} could not be asked: {error}")
        return s, pd.DataFrame()
    if not len(judged):
        s.text(f"No honest agent observed a betrayal: the judge {model} was asked nothing.")
        return s, pd.DataFrame()
    a = judge.agreement(judged)
    failures = judge.failures_text(a["failures"])
    s.text(
        f"The judge {model} on the {a['observers']} honest agent-trials (in "
        f"{_distinct(judged['trial_id'])} trials) that observed a betrayal: {a['asked']} "
        f"asked, {a['answered']} answered, {a['failed']} failed"
        + (f" ({failures})" if failures else "")
        + f", {a['not_asked']} not asked ({judge.NOT_ASKED_WHY}). A failed judgement (no "
        "reply, no JSON, or a reply that breaks the rules: 'detected' not a JSON boolean, "
        "'round' not null or a round of the trial after the betrayal) is counted, never "
        "read as an answer. Agreement with the lexical detector and Cohen's kappa are over "
        "the answered only, per model and design cell in the table below, never pooled."
    )
    if not a["answered"]:
        s.text(
            "Note: no judgement made: "
            + (f"all {a['asked']} asked failed ({failures})." if a["asked"] else "none asked.")
        )
    table = judge_table(d, judged)
    s.table(
        table,
        f"LLM judge ({model}) per model and design cell (honest agents that observed a "
        "betrayal: observers, in trials): not_asked (wrote nothing after the betrayal), "
        "asked, answered, failed (failures: by kind); of the answered, lexical_detected and "
        "judge_detected; agreement_rate = agreed / agreement_n (the answered) with a "
        "trial-clustered 95% CI (agent-trials clustered by trial; agreement_ci: how it was "
        "made); kappa: Cohen's kappa of the two raters on the answered, undefined where "
        "either rater gives one category only, with a 95% CI from its linearised "
        "trial-clustered standard error and t(trials - 1) (kappa_ci: how it was made, or "
        "why there is none). A blank rate or kappa says why in note",
        "judge_agreement",
    )
    return s, table


def parse_failures(d: ReportData) -> Section:
    """Per model, role and design cell: agent-rounds with no valid action, talk and act
    parse failures, and truncated calls. Honest seats and adversary seats are apart (an
    adversary wrapper may enforce its action whatever its model replied, which then counts
    as valid), and so are the cells (a prompt wording, a disclosure or a defence can change
    how a model answers; the report never pools design factors)."""
    df = d.df
    s = Section("Parse failures and truncations")
    llm = df[df["calls"] > 0]
    if llm.empty:
        s.text("No model calls were recorded (scripted agents only).")
        return s
    keys = ["model_label", *(["role"] if "role" in llm.columns else []), *d.factors]
    rows = []
    for key, g in llm.groupby(keys, observed=True, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        per = g.groupby("trial_id", observed=True).agg(
            n=("valid", "size"),
            bad=("valid", lambda v: int((~v).sum())),
            calls=("calls", "sum"),
            cut=("truncated", "sum"),
        )
        lo, hi, _ = stats.cluster_rate_ci(per["bad"], per["n"])
        tlo, thi, _ = stats.cluster_rate_ci(per["cut"], per["calls"])
        rows.append(
            {
                **dict(zip(["model", *keys[1:]], (str(v) for v in key), strict=True)),
                "agent_rounds": int(per["n"].sum()),
                "no_valid_action": int(per["bad"].sum()),
                "rate": per["bad"].sum() / per["n"].sum(),
                "ci_lo": lo,
                "ci_hi": hi,
                "talk_and_act_failures": int(g["parse_failures"].sum()),
                "calls": int(per["calls"].sum()),
                "truncated_calls": int(per["cut"].sum()),
                "truncation_rate": per["cut"].sum() / per["calls"].sum(),
                "trunc_ci_lo": tlo,
                "trunc_ci_hi": thi,
                "trials": len(per),
            }
        )
    # per model, its honest seats first, then its adversary seats
    rows.sort(key=lambda r: (r["model"], r.get("role", stats.HONEST) != stats.HONEST))
    table = _display(pd.DataFrame(rows))
    honest = table[table["role"] == stats.HONEST] if "role" in table.columns else table
    if len(honest):
        names = [c for c in table.columns if c in (*FACTORS.values(), "model")]
        bars = _cell_label(honest, names).to_numpy() if len(names) > 1 else honest["model"]
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(honest) + 2), 3.8))
        ax.bar(
            [str(b) for b in bars],
            honest["rate"],
            capsize=3,
            yerr=stats.error_bars(honest["rate"], honest["ci_lo"], honest["ci_hi"]),
        )
        ax.set(
            ylabel="agent-rounds with no valid action",
            title="Parse failures of honest agents",
            ylim=(0, max(0.05, float(honest["ci_hi"].max()) * 1.15)),
        )
        ax.tick_params(axis="x", rotation=20)
        s.figure(
            fig,
            "parse_failures",
            "Share of honest agents' agent-rounds with no valid action per model"
            + (" and design cell" if d.factors else "")
            + ", trial-clustered 95% CIs: the bars are the honest rows of the table below",
        )
    s.table(
        table,
        "Per model, role and design cell"
        + ("" if d.factors else " (one cell)")
        + ", over the agent-rounds of that model's seats in that role only: honest rows "
        "over honest agents; adversary rows over seats an adversary played with the model "
        "(a wrapper such as the deceiver may enforce its action, which then counts as "
        "valid whatever the model replied: read its talk_and_act_failures and calls). "
        "Agent-rounds with no valid action (never counted as hare; rate over agent_rounds), "
        "talk and act parse failures, and calls the provider cut at its token limit "
        "(finish_reason length or max_tokens; truncation_rate over calls). "
        "Trial-clustered 95% CIs",
        "parse_failures",
    )
    return s


def injection_section(d: ReportData) -> Section:
    """Injection and persuasion, echo and contagion, defences, and the variance that
    prompt wording explains beside the other factors (``analysis.injection``)."""
    s = Section("Injection and persuasion")
    if d.design is None:
        s.text("Needs the run folder: build the report with `stagbench report DIR`.")
        return s
    if d.injection is not None:  # read with the rest, and already kept to the design's
        data = d.injection() if callable(d.injection) else d.injection
        blocks = injection.report_blocks(data)
        del data
    else:
        analysed = {str(t) for t in d.df["trial_id"].unique()}  # the design's trials
        blocks = injection.report_blocks(d.design.run, trial_ids=analysed)
    for block in blocks:
        if block.fig is not None:
            s.figure(block.fig, block.name, block.text)
        elif block.df is not None:
            s.table(block.df, block.text)
        else:
            s.text(block.text)
    return s


#: the report, in order: a new section is one function above plus one entry here
SECTIONS: list[SectionFn] = [
    overview,
    cooperation,
    comparisons,
    payoffs,
    regression,
    archetype_section,
    betrayal_detection,
    parse_failures,
    injection_section,
]


#: sections that read no agent-rounds (``ReportData.df`` empty): ``build`` makes them
#: before the agent-rounds are read, so that their data and the agent-rounds are never
#: held at once (in a forked process, while this one reads the agent-rounds, where
#: ``_forking`` allows)
EARLY: tuple[SectionFn, ...] = (injection_section,)

#: the order the two lanes of ``_lanes`` take sections in: heaviest first (their time at
#: 100,000 scripted trials: about 10, 7, 6, 3 and 3 s), then the others in report order.
#: Every section draws from its own seeded random streams, so where it runs changes
#: nothing; the order only decides how evenly the lanes end.
HEAVIEST: tuple[SectionFn, ...] = (comparisons, cooperation, regression, archetype_section, payoffs)

#: what a forked process makes its sections of (set just before forking)
_FORKED: dict[str, Any] = {}

#: runs of more trials fork nothing: what a forked process holds (the injection views, a
#: section's frames) would be held beside the agent-rounds, GBs each at a million trials,
#: where one after the other keeps the peak to the larger of them
FORK_MAX_TRIALS = 250_000


def _forking(workers: int | None = None, trials: int = 0) -> bool:
    """Whether sections may run in a forked process: on Linux (fork is cheap and its
    pages are shared until written), with more than one core, for at most
    ``FORK_MAX_TRIALS`` trials, unless ``workers`` is 1 or ``STAGBENCH_REPORT_FORK=0``."""
    import os
    import sys

    if workers == 1 or os.environ.get("STAGBENCH_REPORT_FORK", "1") == "0":
        return False
    if trials > FORK_MAX_TRIALS:
        return False
    return sys.platform.startswith("linux") and (os.cpu_count() or 1) > 1


def _forked_sections(fns: list[SectionFn]) -> list[Section]:
    """In a forked process: ``fns`` made from the data its parent set in ``_FORKED``."""
    data: ReportData = _FORKED["data"]
    with _half_the_cores():
        return [fn(data) for fn in fns]


def _lane() -> dict[int, Section]:
    """One lane of ``_lanes`` (in either process): takes the next section of
    ``_FORKED["order"]`` no lane has taken and makes it, until none is left; returns them
    by their place in that order."""
    data: ReportData = _FORKED["data"]
    order: list[SectionFn] = _FORKED["order"]
    taken = _FORKED["taken"]
    made: dict[int, Section] = {}
    with _half_the_cores():
        while True:
            with taken.get_lock():
                i = taken.value
                taken.value = i + 1
            if i >= len(order):
                return made
            made[i] = order[i](data)


def _half_the_cores() -> Any:
    """BLAS kept to half the cores in this process while two processes make sections at
    once: each lane's matrix work otherwise starts a thread per core, and on two cores
    the threads of one lane take the other's core (an eighth more CPU for the same
    report, measured at 100,000 trials)."""
    import os

    from threadpoolctl import threadpool_limits

    return threadpool_limits(max(1, (os.cpu_count() or 2) // 2), user_api="blas")


def _lanes(
    fns: list[SectionFn], data: ReportData, fork: bool, start: Callable[[], object]
) -> dict[SectionFn, Section]:
    """``fns`` made of ``data``, after ``start()`` (called once the lanes have parted:
    it may start threads). With ``fork``, in two lanes, this process and a forked one,
    each taking the next section not yet taken (``HEAVIEST`` first), so that the lanes
    end together whatever the run's data make each section cost; otherwise here, in
    order. A forked lane that dies (killed for memory, say) leaves the sections it had
    taken to be made here; a section that raises in it raises here."""
    if not fork or len(fns) < 2:
        start()
        return {fn: fn(data) for fn in fns}
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    heavy = {fn: i for i, fn in enumerate(HEAVIEST)}
    order = sorted(fns, key=lambda fn: heavy.get(fn, len(heavy)))  # stable: report order
    taken = multiprocessing.get_context("fork").Value("i", 0)
    with _in_a_fork(_lane, data=data, order=order, taken=taken) as future:
        start()
        made = _lane()
        with contextlib.suppress(BrokenProcessPool):  # what it had taken: made below
            made.update(future.result())
    return {fn: made[i] if i in made else fn(data) for i, fn in enumerate(order)}


@contextlib.contextmanager
def _in_a_fork(task: Callable[[], Any], **state: Any) -> Iterator[Future[Any]]:
    """``task`` run in a forked process, which reads ``state`` from ``_FORKED``; yields
    its future, and waits for the process when the block ends. The process is forked at
    once, before any thread of this one starts (a fork copies only its caller)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    _FORKED.update(state)
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    try:
        yield pool.submit(task)
    finally:
        _FORKED.clear()
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _beside(fns: list[SectionFn], data: ReportData, fork: bool) -> Any:
    """Makes ``fns`` of ``data`` in a forked process (``fork``) while the block runs, else
    after it; yields a function that returns them, in order."""
    if not fns or not fork:
        yield lambda: [fn(data) for fn in fns]
        return
    with _in_a_fork(functools.partial(_forked_sections, fns), data=data) as future:
        yield future.result


def _give_back_memory() -> None:
    """Return the memory of freed frames to the system (Arrow's pool keeps freed buffers,
    and glibc's malloc the top of its heap), so that the next views do not stack on it."""
    import ctypes
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def prepare(
    run_dir: str | Path,
    n_boot: int = 500,
    workers: int | None = None,
    early: dict[SectionFn, Section] | None = None,
) -> ReportData:
    """Read and check a results folder (one pass over its transcripts, cached: see
    ``analysis.scan``): the data every section reads. The sections named as keys of
    ``early`` (of ``EARLY``) are made first, before the agent-rounds are read, and put
    there."""
    run = Path(run_dir)
    lexicon = design.lexicon(run)
    detector = detector_for(lexicon)
    # the load report first; then the views from the scan's parts, one at a time: the
    # injection views only in their section (never beside the agent-rounds)
    res = scan(run, lexicon=lexicon, workers=workers, views=False)
    load = res.load
    dc = design.check(run, load)
    keep = set(dc.analysed) if dc.foreign else None
    inj = functools.partial(_injection_views, res, run, lexicon, workers, keep)
    empty = pd.DataFrame()
    first = ReportData(empty, empty, empty, load, n_boot, dc, detector=detector, injection=inj)
    fork = bool(early) and _forking(workers, len(dc.analysed) or load.files)
    with _beside(list(early or ()), first, fork) as made:
        if early and not fork:
            for fn, section in zip(early, made(), strict=True):
                early[fn] = section
            _give_back_memory()  # what the early sections held, before the agent-rounds come
        del first
        try:
            df = scan_views.rounds(res)
            at = scan_views.agent_trials(res)
        except scan_views.Changed:  # the cache changed since: read with the views
            res = scan(run, lexicon=lexicon, workers=workers)
            df, at = res.rounds, res.agent_trials
        data = _prepared(run, df, at, load, n_boot, dc, detector, inj)
        if early and fork:
            for fn, section in zip(early, made(), strict=True):
                early[fn] = section
    return data


def _prepared(
    run: Path,
    df: pd.DataFrame,
    at: pd.DataFrame,
    load: LoadReport,
    n_boot: int,
    dc: design.DesignCheck,
    detector: Detector,
    inj: Callable[[], InjectionData],
) -> ReportData:
    """The agent-rounds ``df`` and agent-trials ``at`` of the design ``dc``, labelled and
    kept to its trials: what every section reads."""
    if not df.empty and dc.foreign:
        df = df[df["trial_id"].astype(str).isin(dc.analysed)].reset_index(drop=True)
        for col in df.select_dtypes("category").columns:
            df[col] = df[col].cat.remove_unused_categories()
        if not at.empty:
            at = at[at["trial_id"].astype(str).isin(dc.analysed)]
    if df.empty:
        raise TranscriptError(
            f"no readable transcripts of this folder's design under {run}"
            + (f" ({dc.problems} left out; the first, {_first_problem(dc)})" if dc.problems else "")
        )
    if not at.empty:  # in the order one pass over the whole table gives
        at = at.assign(trial_id=at["trial_id"].astype(str))
        at = at.sort_values(["trial_id", "seat"], kind="stable").reset_index(drop=True)
    short = short_names(_texts(df["model"]))
    # labels made per category, not per row
    df["model_label"] = _relabel(df["model"], lambda m: short[m])
    df["population_label"] = _relabel(df["population"], lambda p: population_label(p, short))
    varied = _design_varies(dc) if dc.failed or dc.missing else set()
    factors = [f for f in FACTORS if _distinct(df[f]) > 1 or f in varied]
    firsts = df.drop_duplicates("trial_id")  # the design factors are the trial's
    df["cell"] = _per_trial(df, firsts, _cell_label(firsts, factors))
    at = archetypes.classify(at)
    if not at.empty:
        cells = firsts.assign(cell=df["cell"]).set_index(firsts["trial_id"].astype(str))
        where = cells.index.get_indexer(pd.Index(at["trial_id"]))
        found = bool((where >= 0).all())
        for col in (*factors, "cell"):
            text = cells[col].astype(str)
            at[col] = (
                pd.Series(text.to_numpy()[where], index=at.index, dtype=text.dtype)
                if found
                else at["trial_id"].map(text)
            )
        at["model_label"] = at["model"].astype(str).map(short)
    spec = dc.spec_name or str(df["spec"].iloc[0])
    return ReportData(
        df=df,
        agent_trials=at,
        trials=metrics.trial_summary(df),
        load=load,
        n_boot=n_boot,
        design=dc,
        factors=factors,
        short=short,
        detector=detector,
        title=spec,
        injection=inj,
    )


def _design_varies(dc: design.DesignCheck) -> set[str]:
    """The factors (``FACTORS``) that vary over the trials of the folder's design
    (``trials.jsonl``), read where some of its trials failed or are missing: a factor
    whose other levels lost every trial still names its one analysed level in the tables,
    instead of dropping out of them, their rates then reading as the whole run's (rt42
    F2-F3). Empty where the design cannot be read."""
    values: dict[str, set[str]] = {f: set() for f in FACTORS}
    try:
        with open(dc.run / "trials.jsonl", "rb") as lines:
            for line in lines:
                if not line.strip():
                    continue
                got = trial_factors(orjson.loads(line))
                got["population_label"] = got.pop("population")  # varies as its label
                for f in FACTORS:
                    values[f].add(str(got[f]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()
    return {f for f, seen in values.items() if len(seen) > 1}


def _injection_views(
    res: Scan, run: Path, lexicon: Lexicon, workers: int | None, keep: set[str] | None
) -> InjectionData:
    """The injection views of the scan ``res`` (its cached parts), of the trials ``keep``
    (all when ``None``); read again with a new scan if the cache changed since."""
    try:
        inj = scan_views.injection_data(res)
    except scan_views.Changed:
        inj = scan(run, lexicon=lexicon, workers=workers).injection
    return injection.only(inj, keep) if keep is not None else inj


#: rows per slice of ``save_rounds``: Arrow's default row group (``pq.write_table``)
ROW_GROUP = 1024 * 1024


def save_rounds(df: pd.DataFrame, path: Path, rows: int = ROW_GROUP) -> Path:
    """``tables.save_parquet`` of the agent-round table, converted to Arrow and written a
    row group at a time (never a whole Arrow copy of the table beside it): the same file
    (the same row groups, each column's categories whole in every slice)."""
    if len(df) <= rows:
        return save_parquet(df, path)
    writer: pq.ParquetWriter | None = None
    try:
        for start in range(0, len(df), rows):
            table = to_arrow(df.iloc[start : start + rows])
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            del table
    finally:
        if writer is not None:
            writer.close()
    return path


def build(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    n_boot: int = 500,
    sections: list[SectionFn] | None = None,
    after: Sequence[SectionFn] = (),
    keep: Sequence[str] = (),
) -> Path:
    """Write RUN_DIR/report/{report.html, report.md, *.parquet}; returns the HTML path.
    The sections ``after`` (which may call models: the LLM judge) are made in this
    process once the others are, and come last; ``keep``: files they write into the
    folder. What an earlier report wrote there and this one does not is removed
    (``_clear_stale``)."""
    run = Path(run_dir)
    out = Path(out_dir) if out_dir else run / "report"
    chosen = sections or SECTIONS
    early: dict[SectionFn, Section] = {fn: Section("") for fn in chosen if fn in EARLY}
    data = prepare(run, n_boot, early=early)
    out.mkdir(parents=True, exist_ok=True)
    fork = _forking(trials=_distinct(data.df["trial_id"]))
    if fork:  # the counts most sections read: made once, before the lanes part
        data.round_counts, data.trial_counts, data.trial_rounds  # noqa: B018
    made: dict[SectionFn, Section] = dict(early)
    # the tables are written in a thread while the sections are made (Arrow and Parquet
    # work outside the GIL; the sections only read the frames)
    with ThreadPoolExecutor(1, thread_name_prefix="report-tables") as pool:
        saved: list[Future[None]] = []
        rest = [fn for fn in chosen if fn not in made]
        made.update(
            _lanes(rest, data, fork, lambda: saved.append(pool.submit(_save_tables, data, out)))
        )
        saved[0].result()
    for fn in after:
        made[fn] = fn(data)
    written = {*_SAVED, *keep}
    path = _write(out, data.title, [made[fn] for fn in [*chosen, *after]], written)
    _clear_stale(out, written)
    return path


#: the tables ``_save_tables`` writes
_SAVED = ("agent_rounds.parquet", "trials.parquet", "agent_trials.parquet")
#: the names of the files the last report wrote into its folder
WRITTEN = ".written.json"


def _first_problem(dc: design.DesignCheck) -> str:
    """The design check's first problem in words: "trial T failed: why"."""
    kind, what, why = dc.table().iloc[0].tolist()
    return f"{what}, {kind}: {why}"


def _clear_stale(out: Path, written: set[str]) -> None:
    """Remove from ``out`` what the last report listed there (``WRITTEN``) and this one
    did not write (``written``): a table a report no longer makes (a design check once
    the failed trials were run again, a comparison the data no longer allow) stayed
    behind, from another state of the run, beside this report's (rt42 F1). Only files a
    report listed go, never the LLM judge's (paid for; a report without ``--judge``
    leaves them), never a file whose name is not a plain one of this folder: without a
    readable list (a folder of a report from before it was kept), nothing is removed."""
    before = {n for n in listed_files(out) if _plain_name(n)}
    for name in sorted(before - written):
        if name.startswith(_JUDGED):
            continue
        with contextlib.suppress(OSError, ValueError):
            (out / name).unlink()
    kept = sorted(written | {n for n in before if n.startswith(_JUDGED) and (out / n).exists()})
    tmp = out / f"{WRITTEN}.tmp"
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps({"files": kept}), encoding="utf-8")
        tmp.replace(out / WRITTEN)  # whole, or not at all: a cut list would remove nothing


#: the LLM judge's files (``--judge``), which a report never removes
_JUDGED = ("judge",)


def _plain_name(name: str) -> bool:
    """A file name of the folder itself: no path, no NUL, not hidden."""
    return bool(name) and "\0" not in name and Path(name).name == name and name[0] != "."


def listed_files(out: Path) -> set[str]:
    """The files the last report in ``out`` wrote (``WRITTEN``); empty when unknown."""
    try:
        files = json.loads((out / WRITTEN).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        return set()
    return {n for n in files if isinstance(n, str)} if isinstance(files, list) else set()


def _save_tables(data: ReportData, out: Path) -> None:
    """The agent-round, trial and agent-trial tables as ``out/<name>.parquet``."""
    save_rounds(data.df, out / "agent_rounds.parquet")
    data.trials.to_parquet(out / "trials.parquet", index=False)
    data.agent_trials.to_parquet(out / "agent_trials.parquet", index=False)


CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:12px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f2f2f2}
h2{border-bottom:2px solid #ddd;padding-bottom:4px}figure{margin:1em 0}
figcaption,.caption{color:#555;font-size:13px}img{max-width:100%}
.warn{background:#fff3cd;border:1px solid #e0c060;padding:6px 10px}
"""


def _cell_text(v: object) -> str | None:
    """A value of a column of texts as Parquet holds it: text, or null for no value (None,
    NaN: pandas 2 left a merge's NaN in such a column, and it was written as "nan")."""
    if v is None or isinstance(v, str):
        return v
    if v is pd.NA or (isinstance(v, float | np.floating) and math.isnan(v)):
        return None
    return str(v)


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].map(_cell_text)
    out.columns = [str(c) for c in out.columns]
    return out


def _write(out: Path, name: str, sections: list[Section], files: set[str]) -> Path:
    """The report's tables, figures, Markdown and HTML into ``out``, each file's name
    added to ``files``."""
    md = [f"# stagbench report: {name}", ""]
    body = [f"<h1>stagbench report: {html.escape(name)}</h1>"]
    written: set[str] = set()
    for sec in sections:
        md += [f"## {sec.title}", ""]
        body.append(f"<h2>{html.escape(sec.title)}</h2>")
        for block in sec.blocks:
            if isinstance(block, str):
                md += [block, ""]
                cls = ' class="warn"' if block.startswith(("LEFT OUT", "Note:")) else ""
                body.append(f"<p{cls}>{html.escape(block)}</p>")
            elif isinstance(block, Table):
                if block.caption:
                    md += [f"*{block.caption}*", ""]
                    body.append(f'<p class="caption">{html.escape(block.caption)}</p>')
                md += [_md_table(block.df), ""]
                body.append(_html_table(block.df))
                stem = block.name
                i = 2
                while stem in written:
                    stem, i = f"{block.name}_{i}", i + 1
                written.add(stem)
                _parquet_safe(block.df).to_parquet(out / f"{stem}.parquet", index=False)
                files.add(f"{stem}.parquet")
            else:
                (out / f"{block.name}.png").write_bytes(block.png)
                files.add(f"{block.name}.png")
                md += [f"![{block.caption}]({block.name}.png)", ""]
                data = base64.b64encode(block.png).decode()
                alt = html.escape(block.caption)
                body.append(
                    f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{alt}</figcaption></figure>"
                )
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>stagbench report: '
        f"{html.escape(name)}</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    files.update(("report.md", "report.html"))
    return path
