"""The report: files, sections, self-contained HTML, judge agreement, CLI commands."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from stagbench.agents.models.base import ChatMessage
from stagbench.agents.models.pool import ModelPool
from stagbench.agents.models.providers.mock import register_mock
from stagbench.analysis import judge, metrics
from stagbench.cli import app
from stagbench.runs.compose import json_asker

from analysis_helpers import accused_run, run_spec

runner = CliRunner()

SPEC = """
name = "rep"
seed = 2
repetitions = 4
[game]
rounds = 4
[agents]
max_reasks = 0
[factors]
models = [["mock/random", "mock/garbage", "scripted/tit-for-tat"]]
topologies = ["complete", "star(hub=0)"]
disclosures = ["explicit", "silent"]
adversaries = ["none", "byzantine(count=1)"]
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_spec(SPEC, tmp_path_factory.mktemp("rep"), llm=True)


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.h2: list[str] = []
        self.srcs: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in_h2 = tag == "h2"
        if tag == "img":
            self.srcs.append(dict(attrs).get("src") or "")

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.h2.append(data)
            self._in_h2 = False


def test_report_command_writes_everything(run: Path) -> None:
    res = runner.invoke(app, ["report", str(run), "--n-boot", "100"])
    assert res.exit_code == 0, res.output
    out = run / "report"
    assert "Report: " in res.output
    for name in (
        "report.html", "report.md", "agent_rounds.parquet", "trials.parquet",
        "agent_trials.parquet", "cooperation_by_cell.parquet", "cooperation_by_round.parquet",
        "comparisons.parquet", "archetypes.parquet", "payoffs.parquet", "parse_failures.parquet",
        "lexicon_recall.parquet", "regression.parquet",
    ):  # fmt: skip
        assert (out / name).exists(), name
    page = _Collect()
    page.feed((out / "report.html").read_text())
    assert page.h2 == [
        "Overview", "Cooperation", "Comparisons", "Payoffs and welfare", "Regression",
        "Archetypes", "Betrayal detection", "Parse failures and truncations",
        "Injection and persuasion",
    ]  # fmt: skip
    assert len(page.srcs) >= 4 and all(s.startswith("data:image/png;base64,") for s in page.srcs)
    md = (out / "report.md").read_text()
    assert md.startswith("# stagbench report: rep\n")  # the spec's name, not the folder's
    assert "| garbage |" in md and "mock/garbage" not in md.split("## Cooperation")[1]
    # what made the numbers: stagbench, Python and the libraries' versions, in the overview
    import numpy as np

    import stagbench

    software = f"Software: stagbench {stagbench.__version__}, Python "
    overview = md.split("## Cooperation")[0]
    assert software in overview and f"pandas {pd.__version__}, numpy {np.__version__}" in md
    assert "http" not in (out / "report.html").read_text().replace("https://", "")  # self-contained
    comp = pd.read_parquet(out / "comparisons.parquet")
    assert {"rate_a", "rate_b", "n_a", "n_b", "test", "p"} <= set(comp.columns)
    assert set(comp["factor"]) >= {"disclosure", "topology", "adversary"}
    assert (comp["population"] == "honest").all()
    arch = pd.read_parquet(out / "archetypes.parquet")
    assert {"model", "condition", "label", "confidence"} <= set(arch.columns)
    idle = arch["label"] == "no valid action"  # garbage never acts: no label, no confidence
    assert idle.any() and (arch.loc[idle, "model"] == "garbage").all()
    assert arch.loc[~idle, "confidence"].between(0, 1).all()
    assert arch.loc[idle, "confidence"].isna().all()
    # every table in the report is a Parquet file: as many files as tables
    tables = md.count("\n|---|")
    parquet = [p for p in out.glob("*.parquet") if p.stem not in
               ("agent_rounds", "trials", "agent_trials")]  # fmt: skip
    assert len(parquet) == tables


def test_report_flags_corrupt_transcripts(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    victim = sorted((copy / "transcripts").glob("*.jsonl"))[0]
    victim.write_text(victim.read_text()[:100])
    res = runner.invoke(app, ["report", str(copy), "--n-boot", "100"])
    assert res.exit_code == 0
    html = (copy / "report" / "report.html").read_text()
    assert "LEFT OUT" in html and victim.name in html


def _judge_reply(messages: list[ChatMessage], purpose: str | None) -> str:
    text = messages[-1].content
    detected = "trust" in text.lower() or "lied" in text.lower()
    return json.dumps({"detected": detected, "round": 2 if detected else None})


def test_llm_judge_and_agreement(tmp_path: Path) -> None:
    register_mock("judge", _judge_reply)

    df = accused_run(tmp_path)
    at = metrics.agent_trials(df)
    pool = ModelPool()
    judged = asyncio.run(judge.judge_detection(df, at, json_asker(pool, "mock/judge")))
    assert len(judged) == 3 and judged["judge_detected"].all()
    assert (judged["judge_latency"] == 1).all()
    a = judge.agreement(judged)
    assert a["answered"] == 3 and a["failed"] == 0 and a["agreement"] == 1.0


def test_report_with_a_judge_reads_what_the_agents_wrote(tmp_path: Path) -> None:
    register_mock("judge", _judge_reply)
    accused_run(tmp_path / "run")
    res = runner.invoke(app, ["report", str(tmp_path / "run"), "--n-boot", "100",
                              "--judge", "mock/judge"])  # fmt: skip
    assert res.exit_code == 0, res.output
    judged = pd.read_parquet(tmp_path / "run" / "report" / "judged_detection.parquet")
    assert len(judged) == 3 and judged["judge_detected"].all()
    assert "agreement with the lexical detector" in res.output


def test_power_and_tables_commands(run: Path) -> None:
    res = runner.invoke(
        app, ["power", "--p0", "0.5", "--p1", "0.7", "--cluster-size", "15", "--icc", "0.2"]
    )
    assert res.exit_code == 0 and "trials per arm" in res.output
    res = runner.invoke(app, ["power", "--p0", "0.5", "--p1", "0.7", "--from-run", str(run)])
    assert res.exit_code == 0 and "ICC" in res.output
    bad = runner.invoke(app, ["power", "--p0", "0.5", "--p1", "0.5"])
    assert bad.exit_code == 2
    bad = runner.invoke(app, ["power", "--p0", "0.5", "--p1", "0.7", "--icc", "-0.2"])
    assert bad.exit_code == 2 and "[0, 1]" in bad.output
    res = runner.invoke(app, ["tables", str(run)])
    assert res.exit_code == 0 and (run / "agent_rounds.parquet").exists()


NEGATIVE_ICC = """
name = "even"
repetitions = 4
[game]
rounds = 4
[factors]
models = [["scripted/always-stag", "scripted/always-hare"]]
"""


def test_power_from_run_clamps_a_negative_icc(tmp_path: Path) -> None:
    """Every trial has exactly half its honest rounds stag: trials vary less than chance,
    the ANOVA ICC is negative, and the design effect would fall below 1 (4 trials)."""
    from stagbench.analysis import power, stats
    from stagbench.analysis.tables import agent_rounds

    out = run_spec(NEGATIVE_ICC, tmp_path / "even")
    df, _ = agent_rounds(out)
    assert stats.icc_estimate(df) < 0
    res = runner.invoke(app, ["power", "--p0", "0.5", "--p1", "0.7", "--from-run", str(out)])
    assert res.exit_code == 0, res.output
    assert "below 0" in res.output and "clamped to 0" in res.output
    assert "cluster size 16, ICC 0.000, design effect 1.00" in res.output  # 4 agents x 4 rounds
    flat = " ".join(res.output.split())  # one design cell: nothing to compare, one test
    assert "alpha 0.05 (one test)" in flat
    assert "Tests: the 0 comparisons the report makes" in flat and "(one cell:" in flat
    # 6 by the normal approximation: below 30 per arm, the simulated power of the report's test
    assert power.plan_trials(0.5, 0.7, cluster_size=16, icc=0.0).trials == int(
        res.output.split(" trials per arm")[0].split()[-1]
    )


CELLS_OF_TWO_SIZES = """
name = "cells"
seed = 3
repetitions = 5
[game]
n_players = 4
rounds = 6
[factors]
models = ["scripted/always-stag", "scripted/random(p=0.5)"]
conditions = [{name="small", n_players=2, rounds=2}, {name="big"}]
"""


def test_power_from_run_estimates_within_cells_and_plans_on_the_smallest(
    tmp_path: Path,
) -> None:
    """Two populations with very different rates (1.0 and 0.5, independent rounds) and two
    conditions whose trials hold 4 and 24 honest actions: pooled over cells, the ICC is
    large (the populations' difference read as within-trial correlation) and the mean
    cluster size (14) fits no cell; the command estimates within cells and plans on the
    smallest cell's trials, and says so."""
    from stagbench.analysis import power, stats
    from stagbench.analysis.tables import agent_rounds

    out = run_spec(CELLS_OF_TWO_SIZES, tmp_path / "cells")
    df, _ = agent_rounds(out)
    honest = stats.population(df).dropna(subset=["stag"])
    assert stats.icc_estimate(honest, cells=[]) > 0.3  # the old, pooled estimate
    within = stats.icc_estimate(honest)
    assert abs(within) < 0.1
    res = runner.invoke(app, ["power", "--p0", "0.5", "--p1", "0.7", "--from-run", str(out)])
    assert res.exit_code == 0, res.output
    icc = max(within, 0.0)
    # 2 populations x 2 conditions: each factor compared within each level of the other
    n = power.plan_trials(0.5, 0.7, cluster_size=4, icc=icc, family=4).trials
    assert res.output.startswith(f"{n} trials per arm to detect 0.5 -> 0.7"), res.output
    assert f"(cluster size 4, ICC {icc:.3f}," in res.output
    assert f"ICC {within:.3f} estimated within its 4 design cells" in res.output
    flat = " ".join(res.output.split())
    assert "per cell from 4.0 to 24.0: planned on the smallest (condition=small;" in flat


PLACED = """
name = "placed"
seed = 4
repetitions = 2
[game]
rounds = 2
[factors]
models = ["scripted/always-stag"]
topologies = ["star(hub=0)"]
disclosures = ["explicit", "silent"]
adversaries = ["none", "byzantine(count=1,placement=hub)", "byzantine(count=1,placement=leaf)"]
"""


@pytest.mark.parametrize("spec", [CELLS_OF_TWO_SIZES, PLACED], ids=["2x2", "placements"])
def test_power_plans_for_the_reports_holm_family(spec: str, tmp_path: Path) -> None:
    """``power --from-run`` plans at alpha over the number of comparisons the report makes
    of the pilot's cells (and Holm-adjusts together: redteam18 found a plan for one test
    reached 0.727 of its 0.8 power under the report's adjustment); that number is the
    report's own, hub vs leaf pairs included; ``--tests`` overrides it, and a plan without
    either says it is for one test."""
    from stagbench.analysis import power, report, stats
    from stagbench.analysis.tables import agent_rounds

    out = run_spec(spec, tmp_path / "pilot")
    d = report.prepare(out, n_boot=50)
    family = len(report._pairs(d))
    assert family == report.comparison_count(d.df)
    # disclosure x3 arms, adversary x2 disclosures (none vs each, hub vs leaf): 3 + 6
    assert family == (4 if spec is CELLS_OF_TWO_SIZES else 9)
    res = runner.invoke(app, ["power", "--p0", "0.5", "--p1", "0.7", "--from-run", str(out)])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert f"Holm-adjusted over {family} tests (planned at {0.05 / family:.4g})" in flat
    assert f"Tests: the {family} comparisons the report makes" in flat
    size = int(flat.split("(cluster size ")[1].split(",")[0])
    # the pilot's ICC as the command estimates it (printed to 3 places, planned unrounded)
    honest = stats.population(agent_rounds(out)[0]).dropna(subset=["stag"])
    icc = stats.clamped_icc(stats.icc_estimate(honest, cells=stats.cell_factors(honest)))[0]
    assert f"(cluster size {size}, ICC {icc:.3f}," in flat
    n = power.plan_trials(0.5, 0.7, 0.05, 0.8, size, icc, family).trials
    assert flat.startswith(f"{n} trials per arm")
    one = runner.invoke(
        app, ["power", "--p0", "0.5", "--p1", "0.7", "--from-run", str(out), "--tests", "1"]
    )
    assert one.exit_code == 0 and "alpha 0.05 (one test)" in one.output
    assert n > int(one.output.split(" trials per arm")[0])
    bare = runner.invoke(app, ["power", "--p0", "0.5", "--p1", "0.7"])
    assert "(one test)" in bare.output and "pass --tests" in " ".join(bare.output.split())
    bad = runner.invoke(app, ["power", "--p0", "0.5", "--p1", "0.7", "--tests", "0"])
    assert bad.exit_code == 2


ONE_TRIAL_PER_ARM = """
name = "onetrial"
seed = 5
repetitions = {reps}
[game]
rounds = 8
[factors]
models = ["scripted/random(p=0.5)"]
disclosures = ["explicit", "silent"]
"""


def test_regression_section_refuses_too_few_trials_and_names_its_covariance(
    tmp_path: Path,
) -> None:
    """1 trial per arm (2 clusters for 4 coefficients) used to print se 5e-15 and p = 0;
    the section now says why no coefficients are reported. With 3 per arm it prints the
    fit and its method (the bias-reduced covariance)."""
    from stagbench.analysis import report, stats

    def texts(reps: int) -> tuple[list[str], list[report.Table]]:
        out = run_spec(ONE_TRIAL_PER_ARM.format(reps=reps), tmp_path / f"r{reps}")
        sec = report.regression(report.prepare(out, n_boot=20))
        return (
            [b for b in sec.blocks if isinstance(b, str)],
            [b for b in sec.blocks if isinstance(b, report.Table)],
        )

    lines, tables = texts(1)
    assert not tables
    assert any(
        "too few trials for inference: 2 trials (clusters) for 4 coefficients" in t for t in lines
    ), lines
    assert any("is not estimable on this data: no coefficients are reported" in t for t in lines)
    lines, tables = texts(3)
    assert f"Method: {stats.GEE_METHOD}." in lines and len(tables) == 1
    assert (tables[0].df["se"] > 0.01).all() and "bias-reduced" in tables[0].caption


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_report_renders_in_headless_chromium(run: Path) -> None:
    from stagbench.analysis.report import build

    html = build(run, n_boot=20)
    shot = Path(tempfile.mkdtemp()) / "shot.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tempfile.mkdtemp()}", "--window-size=1200,2400",
         f"--screenshot={shot}", html.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert shot.stat().st_size > 20_000


def test_report_checks_the_folder_against_its_design(run: Path, tmp_path: Path) -> None:
    """A missing, a failed, a tampered and two foreign transcripts are listed at the top of
    the report and left out of every statistic; so is the trial one of them is a copy of
    (under another name): its rows and the copy's cannot be told apart, and counting it
    counted both."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "report", ignore_errors=True)
    files = sorted((copy / "transcripts").glob("*.jsonl"))
    missing, failed, tampered, dup = files[0], files[1], files[2], files[3]
    missing.unlink()
    failed.unlink()
    (copy / "failures" / f"{failed.stem}.txt").write_text("provider exploded\ntraceback...\n")
    lines = tampered.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if '"round_end"' in line)
    event = json.loads(lines[i])
    event["payoffs"] = [p + 1 for p in event["payoffs"]]
    lines[i] = json.dumps(event)
    tampered.write_text("\n".join(lines) + "\n")
    shutil.copy(dup, copy / "transcripts" / "0123456789abcdef.jsonl")  # named after no trial
    other = run_spec(NEGATIVE_ICC, tmp_path / "other")
    stranger = next((other / "transcripts").glob("*.jsonl"))
    shutil.copy(stranger, copy / "transcripts" / stranger.name)
    res = runner.invoke(app, ["report", str(copy), "--n-boot", "100"])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())  # on the console too (rt42 F7)
    assert "left out of the report: 3 foreign, " in said and "1 failed" in said, said
    out = copy / "report"
    md = (out / "report.md").read_text()
    overview = md.split("## Cooperation")[0]
    assert "LEFT OUT: 6" in overview
    check = pd.read_parquet(out / "design_check.parquet")
    kinds = dict(zip(check["trial or file"], check["problem"], strict=True))
    assert kinds[missing.stem] == "missing" and kinds[failed.stem] == "failed"
    assert kinds[tampered.name] == "corrupt or tampered"
    assert kinds["0123456789abcdef.jsonl"] == "foreign" and kinds[stranger.name] == "foreign"
    assert kinds[dup.name] == "foreign"  # its copy's rows would be counted with its own
    assert "provider exploded" in set(check["why"])
    assert "28 trials analysed of 32 in the design" in overview
    cells = pd.read_parquet(out / "cooperation_by_cell.parquet")
    assert cells["stag_trials"].sum() == 28
    analysed = set(pd.read_parquet(out / "trials.parquet")["trial_id"])
    assert not analysed & {missing.stem, failed.stem, tampered.stem, stranger.stem, dup.stem}
    rows = pd.read_parquet(out / "agent_rounds.parquet").groupby("trial_id", observed=True).size()
    assert len(rows) == 28 and rows.nunique() == 1  # each trial's agent-rounds once


def test_truncated_calls_are_counted_per_model(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "report", ignore_errors=True)
    victim = sorted((copy / "transcripts").glob("*.jsonl"))[0]
    lines = victim.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if '"model_call"' in line and "mock/random" in line)
    event = json.loads(lines[i])
    event["call"]["finish_reason"] = "length"
    lines[i] = json.dumps(event)
    victim.write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, ["report", str(copy), "--n-boot", "100"])
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(copy / "report" / "parse_failures.parquet")
    assert table["truncated_calls"].sum() == 1  # rows per model, role and cell
    cut = table[table["truncated_calls"] == 1].iloc[0]
    assert cut["model"] == "random" and cut["role"] == "honest"
    assert cut["truncation_rate"] == 1 / cut["calls"]
    garbage = table[table["model"] == "garbage"]
    assert (garbage["no_valid_action"] == garbage["agent_rounds"]).all()


@pytest.mark.parametrize("folder", ["golden", "golden/v2", "golden_llm", "golden_llm/v2"])
def test_report_builds_on_the_suite_folders(folder: str, tmp_path: Path) -> None:
    """Folders of transcripts without a manifest (the golden files) are reported with a
    note that the design was not checked."""
    from stagbench.analysis.report import build

    src = Path(__file__).parent / folder
    copy = tmp_path / "run"
    copy.mkdir()
    for f in src.glob("*.jsonl"):
        shutil.copy(f, copy / f.name)
    html = build(copy, n_boot=20)
    md = (html.parent / "report.md").read_text()
    assert "the transcripts are analysed as found" in md


def test_round_plot_has_whole_rounds_and_visible_lines() -> None:
    from stagbench.analysis.report import round_plot

    per_round = pd.DataFrame(
        {
            "condition": ["a"] * 3 + ["b"] * 3,
            "round": [1, 2, 3] * 2,
            "stag_rate": [1.0, 0.5, 0.5] * 2,  # identical series: they must not hide
            "stag_ci_lo": [1.0, 0.2, 0.2] * 2,
            "stag_ci_hi": [1.0, 0.8, 0.8] * 2,
        }
    )
    fig = round_plot(per_round, ["condition"])
    ax = fig.axes[0]
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    lines = [c.lines[0] for c in ax.containers]  # the data line of each errorbar
    xs = [tuple(line.get_xdata()) for line in lines]
    assert len(xs) == 2 and xs[0] != xs[1]  # moved sideways
    assert lines[0].get_marker() != lines[1].get_marker()
    assert ax.get_legend() is not None


def test_short_model_labels() -> None:
    from stagbench.analysis.labels import population_label, short_names

    names = [
        "openai-api/deepinfra/mistralai/Mixtral-8x22B-Instruct-v0.1",
        "openai-api/deepinfra/Qwen/Qwen2.5-72B-Instruct",
        "vllm/a/model",
        "vllm/b/model",
        "scripted/tit-for-tat",
    ]
    short = short_names(names)
    assert short["scripted/tit-for-tat"] == "tit-for-tat"
    assert short["openai-api/deepinfra/Qwen/Qwen2.5-72B-Instruct"] == "Qwen2.5-72B-Instruct"
    assert short["vllm/a/model"] == "a/model" and short["vllm/b/model"] == "b/model"
    assert len(set(short.values())) == len(names) and all(len(v) <= 24 for v in short.values())
    assert population_label("vllm/a/model+scripted/tit-for-tat", short) == "a/model+tit-for-tat"


def test_comparisons_hold_every_design_factor_fixed_but_a_name() -> None:
    """A comparison of topology is never of cells that differ in their adversary arm,
    even where each arm ran on one topology only (redteam19a: BCT's ``byzantine`` and
    ``byzantine_star_v1`` imported together gave "topology complete vs star", which was
    no adversary against a Byzantine hub: each arm ran on one topology, so the arm
    "determined" it and was let differ); an imported study's condition name,
    which determines the factors of its cell, may differ beside the one compared."""
    from stagbench.analysis import report

    factors = ["condition", "topology", "adversary_arm"]
    cells = pd.DataFrame(
        [
            ("byzantine/adv_0", "complete", "none"),
            ("byzantine/adv_2", "complete", "byzantine[2@seats[1, 3]]"),
            ("star_v1/hub_is_adversary", "star(hub=3)", "byzantine[1@hub]"),
            ("star_v1/hub_is_honest", "star(hub=varied)", "byzantine[1@leaf]"),
            ("ring_v1/seat_0", "ring", "byzantine[1@seats[0]]"),
        ],
        columns=factors,
    )
    cells["cell"] = cells["condition"]
    pairs = {(f, a["cell"], b["cell"]) for f, a, b in report._cell_pairs(cells, factors)}
    assert pairs == {
        ("adversary_arm", "byzantine/adv_0", "byzantine/adv_2"),
        ("adversary_arm", "star_v1/hub_is_adversary", "star_v1/hub_is_honest"),
    }
    assert report._fixed(cells, factors, "topology") == ["adversary_arm"]
    assert report._fixed(cells, factors, "adversary_arm") == ["topology"]
    # hub vs leaf is compared on stars whichever seat is the hub (the study's hub is the
    # Byzantine's seat in one condition and drawn per trial in the other), never on
    # another shape (a ring), and the hub is the only parameter let differ
    assert report._shape("star(hub=3)") == report._shape("star(hub=varied)") == "star"
    assert report._shape("star(direction=in, hub=2)") == "star(direction=in)"
    assert report._shape("star(hub=1,direction=out)") != "star(direction=in)"
    assert report._shape("erdos_renyi(p=0.3)") == "erdos_renyi(p=0.3)"
