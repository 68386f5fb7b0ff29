"""``stagbench report RUN_DIR``: tables (Parquet), statistics, plots, and a self-contained
HTML report (images inlined) with a Markdown twin."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from stagbench.analysis import archetypes, metrics, stats  # noqa: E402
from stagbench.analysis.tables import LoadReport, agent_rounds, save_parquet  # noqa: E402
from stagbench.errors import TranscriptError  # noqa: E402


@dataclass
class Table:
    df: pd.DataFrame
    caption: str


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

    def table(self, df: pd.DataFrame, caption: str = "") -> None:
        self.blocks.append(Table(df, caption))

    def figure(self, fig: Any, name: str, caption: str) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.blocks.append(Figure(buf.getvalue(), name, caption))


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.4g}"
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


def _rate_table(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    h = metrics.honest(df).dropna(subset=["stag"])
    g = h.groupby(keys, observed=True)["stag"].agg(k="sum", n="count").reset_index()
    ci = [stats.wilson(int(k), int(n)) for k, n in zip(g["k"], g["n"], strict=True)]
    g["stag_rate"] = g["k"] / g["n"]
    g["ci_lo"] = [c[0] for c in ci]
    g["ci_hi"] = [c[1] for c in ci]
    coord = (
        df.drop_duplicates(["trial_id", "round"])
        .groupby(keys, observed=True)["hunt_succeeded"]
        .mean()
        .rename("coordination")
        .reset_index()
    )
    trials = df.groupby(keys, observed=True)["trial_id"].nunique().rename("trials").reset_index()
    return g.merge(coord, on=keys).merge(trials, on=keys)


def _condition_label(df: pd.DataFrame) -> pd.Series:
    parts = [df[c].astype(str) for c in ("disclosure", "adversary_kind") if df[c].nunique() > 1]
    if not parts:
        return pd.Series("all", index=df.index)
    out = parts[0]
    for p in parts[1:]:
        out = out + " / " + p
    return out


@dataclass
class ReportData:
    """What every section reads: the agent-round table and what derives from it."""

    df: pd.DataFrame
    agent_trials: pd.DataFrame
    trials: pd.DataFrame
    load: LoadReport
    n_boot: int = 500
    #: the run folder the tables were read from (sections that read more of it)
    run: Path | None = None


SectionFn = Callable[[ReportData], Section]


def overview(d: ReportData) -> Section:
    df, load = d.df, d.load
    s = Section("Overview")
    s.text(
        f"{df['trial_id'].nunique()} trials, {len(df)} agent-rounds, models: "
        f"{', '.join(sorted(map(str, df['model'].unique())))}. Honest stag rate "
        f"{metrics.honest_stag_rate(df):.3f}; full coordination "
        f"{metrics.coordination_rate(df):.3f}."
    )
    if load.corrupt:
        s.text(
            f"WARNING: {len(load.corrupt)} transcript(s) could not be read and are NOT analysed:"
        )
        s.table(pd.DataFrame(load.corrupt, columns=["file", "problem"]))
    return s


def cooperation(d: ReportData) -> Section:
    df = d.df
    s = Section("Cooperation")
    keys = [
        c
        for c in ("topology", "disclosure", "adversary_kind", "adversary_count")
        if df[c].nunique() > 1
    ]
    s.table(_rate_table(df, keys or ["spec"]), "Honest stag rate (Wilson 95% CI) and coordination")
    rounds = df.assign(cond=_condition_label(df))
    per = metrics.by_round(rounds, "cond")
    fig, ax = plt.subplots(figsize=(7, 4))
    for cond, g in per.groupby("cond", observed=True):
        ax.plot(g["round"], g["stag_rate"], marker="o", label=str(cond))
    ax.set(
        xlabel="round", ylabel="honest stag rate", ylim=(-0.02, 1.02), title="Cooperation by round"
    )
    ax.legend(fontsize=8)
    s.figure(fig, "cooperation_by_round", "Honest stag rate by round per condition")
    return s


def explicit_vs_silent(d: ReportData) -> Section:
    df = d.df
    s = Section("Explicit vs silent")
    if set(df["disclosure"].unique()) >= {"explicit", "silent"}:
        table = _rate_table(df, ["topology", "disclosure"])
        fig, ax = plt.subplots(figsize=(7, 4))
        topos = list(dict.fromkeys(table["topology"].astype(str)))
        for i, disc in enumerate(("explicit", "silent")):
            t = table[table["disclosure"] == disc]
            t = t.set_index(t["topology"].astype(str)).reindex(topos)
            xs = [j + (i - 0.5) * 0.38 for j in range(len(topos))]
            err = [t["stag_rate"] - t["ci_lo"], t["ci_hi"] - t["stag_rate"]]
            ax.bar(xs, t["stag_rate"], width=0.36, yerr=err, capsize=3, label=disc)
        ax.set_xticks(range(len(topos)), topos)
        ax.set(ylabel="honest stag rate", ylim=(0, 1.05), title="Explicit vs silent per topology")
        ax.legend()
        s.figure(fig, "explicit_vs_silent", "Honest stag rate with Wilson 95% CIs")
        tests = []
        for topo in topos:
            sub = df[df["topology"].astype(str) == topo]
            c = stats.comparison_family(sub, [("disclosure", "explicit", "silent")])
            if not c.empty:
                tests.append(c.assign(topology=topo))
        if tests:
            fam = pd.concat(tests, ignore_index=True)
            fam["permutation_p_holm"] = stats.holm(fam["permutation_p"].tolist())
            fam["fisher_p_holm"] = stats.holm(fam["fisher_p"].tolist())
            cols = ["topology", "rate_a", "rate_b", "diff", "diff_lo", "diff_hi", "trials_a",
                    "trials_b", "fisher_p", "permutation_p", "permutation_p_holm"]  # fmt: skip
            s.table(fam[cols], "explicit (a) vs silent (b): Fisher on pooled agent-rounds, "
                    "trial-clustered permutation test, Holm-adjusted over topologies")  # fmt: skip
    else:
        s.text("The run has only one disclosure mode.")
    return s


def adversaries(d: ReportData) -> Section:
    df = d.df
    s = Section("Adversaries")
    counts = sorted(df["adversary_count"].unique())
    if len(counts) > 1:
        pairs = [("adversary_count", counts[0], k) for k in counts[1:]]
        fam = stats.comparison_family(df, pairs)
        s.table(
            fam.drop(columns=["factor"]), "k adversaries: honest stag rate, Holm-adjusted family"
        )
    else:
        s.text("The run has one adversary count.")
    ev = metrics.betrayal_events(df)
    s.text(f"{len(ev)} betrayal events (signalled stag, hunted hare); "
           f"{int((ev['role'] == 'honest').sum())} by honest agents.")  # fmt: skip
    return s


def regression(d: ReportData) -> Section:
    s = Section("Regression")
    honest_df = metrics.honest(d.df)
    formula = stats.default_formula(honest_df)
    sample = stats.gee_sample(honest_df)
    n_all, n_fit = honest_df["trial_id"].nunique(), sample["trial_id"].nunique()
    fitted_on = "" if n_fit == n_all else f" (fitted on a random {n_fit} of {n_all} trials)"
    try:
        gee = stats.gee_logit(sample, formula)
        if gee["coef"].isna().all():
            s.text(f"GEE `{formula}` is not estimable on this data (complete separation).")
        else:
            s.table(
                gee.reset_index(names="term"),
                f"Logistic GEE, trials as clusters: {formula}{fitted_on}",
            )
    except Exception as exc:  # statsmodels raises many kinds on degenerate designs
        s.text(f"GEE `{formula}` could not be fitted: {exc}")
    return s


def archetype_section(d: ReportData) -> Section:
    at = d.agent_trials
    s = Section("Archetypes")
    dist = at.groupby(["model", "archetype"], observed=True).size().unstack(fill_value=0)
    if not dist.empty:
        fig, ax = plt.subplots(figsize=(7, 4))
        shares = dist.div(dist.sum(axis=1), axis=0)
        bottom = pd.Series(0.0, index=shares.index)
        for lab in [c for c in archetypes.LABELS if c in shares.columns]:
            ax.bar(shares.index.astype(str), shares[lab], bottom=bottom, label=lab)
            bottom += shares[lab]
        ax.set(ylabel="share of agent-trials", title="Archetypes per model")
        ax.tick_params(axis="x", rotation=20)
        ax.legend(fontsize=8)
        s.figure(fig, "archetypes", "Archetype distribution per model")
        s.table(
            archetypes.model_labels(at, n_boot=d.n_boot), "Model labels with bootstrap confidence"
        )
        s.table(archetypes.stability(at), "Stability across split halves and seed cohorts")
    adapt = (
        at.dropna(subset=["trigger_round"])
        .groupby("model", observed=True)
        .agg(
            agents=("seat", "count"),
            switched=("switched", "mean"),
            returned=("returned", "mean"),
            persistence_cost=("persistence_cost", "mean"),
        )
    )
    if not adapt.empty:
        s.table(adapt.reset_index(), "Adaptation after the trigger; mean payoff lost by persisting")
    return s


def betrayal_detection(d: ReportData) -> Section:
    at = d.agent_trials
    s = Section("Betrayal detection")
    seen = at[at["betrayal_round"].notna()]
    if len(seen):
        s.text(f"{len(seen)} agent-trials observed a betrayal; lexical detection rate "
               f"{seen['detected'].mean():.3f}.")  # fmt: skip
        lat = seen["detection_latency"].dropna()
        if len(lat):
            fig, ax = plt.subplots(figsize=(6, 3.5))
            ax.hist(lat, bins=range(1, int(lat.max()) + 2), align="left", rwidth=0.8)
            ax.set(xlabel="rounds to detection", ylabel="agent-trials", title="Detection latency")
            s.figure(fig, "detection_latency", "Rounds from observed betrayal to detection")
    else:
        s.text("No agent observed a betrayal.")
    return s


def parse_failures(d: ReportData) -> Section:
    df = d.df
    s = Section("Parse failures")
    llm = df[df["calls"] > 0]
    if len(llm):
        g = llm.groupby("model", observed=True)["valid"].agg(ok="sum", n="count").reset_index()
        g["failures"] = g["n"] - g["ok"]
        g["rate"] = g["failures"] / g["n"]
        ci = [stats.wilson(int(f), int(n)) for f, n in zip(g["failures"], g["n"], strict=True)]
        g["ci_lo"], g["ci_hi"] = [c[0] for c in ci], [c[1] for c in ci]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar(
            g["model"].astype(str),
            g["rate"],
            yerr=[g["rate"] - g["ci_lo"], g["ci_hi"] - g["rate"]],
            capsize=3,
        )
        ax.set(ylabel="agent-rounds with no valid action", title="Parse failure rate per model")
        ax.tick_params(axis="x", rotation=20)
        s.figure(fig, "parse_failures", "Parse failure rate per model (Wilson 95% CI)")
        s.table(g.drop(columns=["ok"]), "Parse failures per model")
    else:
        s.text("No LLM agents in this run.")
    return s


def injection_section(d: ReportData) -> Section:
    """Injection and persuasion, echo and contagion, defences, and the variance that
    prompt wording explains beside the other factors (``analysis.injection``)."""
    from stagbench.analysis import injection

    s = Section("Injection and persuasion")
    if d.run is None:
        s.text("Needs the run folder: build the report with `stagbench report DIR`.")
        return s
    for block in injection.report_blocks(d.run, n_boot=d.n_boot):
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
    explicit_vs_silent,
    adversaries,
    regression,
    archetype_section,
    betrayal_detection,
    parse_failures,
    injection_section,
]


def build(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    n_boot: int = 500,
    sections: list[SectionFn] | None = None,
) -> Path:
    """Write RUN_DIR/report/{report.html, report.md, *.parquet}; returns the HTML path."""
    run = Path(run_dir)
    out = Path(out_dir) if out_dir else run / "report"
    df, load = agent_rounds(run)
    if df.empty:
        raise TranscriptError(f"no readable transcripts under {run}")
    out.mkdir(parents=True, exist_ok=True)
    data = ReportData(
        df=df,
        agent_trials=archetypes.classify(metrics.agent_trials(df)),
        trials=metrics.trial_summary(df),
        load=load,
        n_boot=n_boot,
        run=run,
    )
    save_parquet(df, out / "agent_rounds.parquet")
    data.trials.to_parquet(out / "trials.parquet", index=False)
    data.agent_trials.to_parquet(out / "agent_trials.parquet", index=False)
    return _write(out, run.name, [section(data) for section in sections or SECTIONS])


CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f2f2f2}
h2{border-bottom:2px solid #ddd;padding-bottom:4px}figure{margin:1em 0}
figcaption,.caption{color:#555;font-size:13px}img{max-width:100%}
"""


def _write(out: Path, name: str, sections: list[Section]) -> Path:
    md = [f"# stagbench report: {name}", ""]
    body = [f"<h1>stagbench report: {html.escape(name)}</h1>"]
    for sec in sections:
        md += [f"## {sec.title}", ""]
        body.append(f"<h2>{html.escape(sec.title)}</h2>")
        for block in sec.blocks:
            if isinstance(block, str):
                md += [block, ""]
                body.append(f"<p>{html.escape(block)}</p>")
            elif isinstance(block, Table):
                if block.caption:
                    md += [f"*{block.caption}*", ""]
                    body.append(f'<p class="caption">{html.escape(block.caption)}</p>')
                md += [_md_table(block.df), ""]
                body.append(_html_table(block.df))
            else:
                (out / f"{block.name}.png").write_bytes(block.png)
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
    return path
