"""The report: files, sections, self-contained HTML, judge agreement, CLI commands."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

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
    res = runner.invoke(app, ["report", str(run), "--n-boot", "50"])
    assert res.exit_code == 0, res.output
    out = run / "report"
    assert "Report: " in res.output
    for name in (
        "report.html",
        "report.md",
        "agent_rounds.parquet",
        "trials.parquet",
        "agent_trials.parquet",
    ):
        assert (out / name).exists(), name
    page = _Collect()
    page.feed((out / "report.html").read_text())
    assert page.h2 == [
        "Overview", "Cooperation", "Explicit vs silent", "Adversaries", "Regression",
        "Archetypes", "Betrayal detection", "Parse failures", "Injection and persuasion",
    ]  # fmt: skip
    assert len(page.srcs) >= 4 and all(s.startswith("data:image/png;base64,") for s in page.srcs)
    md = (out / "report.md").read_text()
    assert "| topology | rate_a |" in md and "mock/garbage" in md
    assert "http" not in (out / "report.html").read_text().replace("https://", "")  # self-contained


def test_report_flags_corrupt_transcripts(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    victim = sorted((copy / "transcripts").glob("*.jsonl"))[0]
    victim.write_text(victim.read_text()[:100])
    res = runner.invoke(app, ["report", str(copy), "--n-boot", "20"])
    assert res.exit_code == 0
    html = (copy / "report" / "report.html").read_text()
    assert "could not be read and are NOT analysed" in html and victim.name in html


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
    assert a["n"] == 3 and a["agreement"] == 1.0


def test_power_and_tables_commands(run: Path) -> None:
    res = runner.invoke(
        app, ["power", "--p0", "0.5", "--p1", "0.7", "--cluster-size", "15", "--icc", "0.2"]
    )
    assert res.exit_code == 0 and "trials per arm" in res.output
    res = runner.invoke(app, ["power", "--p0", "0.5", "--p1", "0.7", "--from-run", str(run)])
    assert res.exit_code == 0 and "ICC" in res.output
    bad = runner.invoke(app, ["power", "--p0", "0.5", "--p1", "0.5"])
    assert bad.exit_code == 2
    res = runner.invoke(app, ["tables", str(run)])
    assert res.exit_code == 0 and (run / "agent_rounds.parquet").exists()


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
