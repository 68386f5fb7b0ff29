"""stagbench installs one import name, ``stagbench``, from the folders at the repository
root; it installs beside a package that owns ``agents`` (the OpenAI Agents SDK); and the
tests import the installed package, not the checkout."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import stagbench
import stagbench.games

ROOT = Path(__file__).resolve().parent.parent
SOURCE_PARTS = ("games", "topologies", "agents", "adversaries", "runs", "analysis", "stagbench")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, cwd=out,
    )  # fmt: skip
    (path,) = out.glob("stagbench-*.whl")
    return path


def test_the_wheel_installs_one_top_level_name_with_every_module(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert top == {"stagbench", next(t for t in top if t.endswith(".dist-info"))}
    for part in SOURCE_PARTS:
        folder = ROOT / part
        for source in folder.rglob("*.py"):
            rel = source.relative_to(folder).as_posix()
            inside = f"stagbench/{rel}" if part == "stagbench" else f"stagbench/{part}/{rel}"
            if part == "stagbench" and rel.split("/", 1)[0] in SOURCE_PARTS:
                continue
            assert inside in names, f"{source} is not in the wheel (list its package?)"
    assert "stagbench/py.typed" in names
    for asset in ("viewer.js", "viewer.css"):  # package data the viewer copies beside its pages
        assert f"stagbench/viewer/assets/{asset}" in names
    assert "stagbench/analysis/talk_heldout.jsonl" in names  # the report's held-out talk


@pytest.mark.parametrize("where", ["elsewhere", "checkout"])
def test_a_regular_install_works_from_any_directory(
    wheel: Path, tmp_path: Path, where: str
) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--target", str(target), str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    cwd = ROOT if where == "checkout" else tmp_path
    code = (
        "import stagbench, stagbench.games, stagbench.runs.spec, stagbench.cli; "
        "print(stagbench.games.__file__)"
    )
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                         text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr
    if where == "elsewhere":  # the installed copy, not a checkout
        assert res.stdout.strip().startswith(str(target))
    cli = subprocess.run([sys.executable, "-m", "stagbench", "--help"], cwd=cwd, env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert cli.returncode == 0 and "validate" in cli.stdout, cli.stderr


def test_stagbench_installs_beside_the_openai_agents_sdk() -> None:
    import agents  # the OpenAI Agents SDK owns this name
    from stagbench.agents import Agent as StagAgent

    assert hasattr(agents, "Runner") and hasattr(agents, "Agent")
    assert agents.Agent is not StagAgent
    owners = importlib.metadata.packages_distributions()
    assert owners.get("agents") == ["openai-agents"]
    assert owners.get("stagbench") == ["stagbench"]
    assert not {"games", "runs", "analysis", "topologies", "adversaries"} & set(owners)
    top = (importlib.metadata.distribution("stagbench").read_text("top_level.txt") or "").split()
    assert top in ([], ["stagbench"])


def test_the_tests_import_the_installed_package() -> None:
    assert str(ROOT) not in {str(Path(p).resolve()) for p in sys.path if p}
    games = Path(stagbench.games.__file__)
    # an editable install maps it through its link tree; a regular one into site-packages
    assert "__editable__" in games.parts[-4] or "site-packages" in games.parts
    assert len(stagbench.__path__) == 1  # not the checkout fallback
