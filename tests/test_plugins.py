"""Outside packages extend stagbench through the ``stagbench`` entry-point group: one module
registers a provider, a scripted strategy, an adversary kind and a topology, and a spec can
name them all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PLUGIN = '''
"""A plugin: one file, one registration each."""
import json

import networkx as nx
from dataclasses import dataclass

from stagbench.adversaries import adversary
from stagbench.adversaries.wrappers import Wrapper
from stagbench.agents.models.base import ModelAPI, ModelOutput
from stagbench.agents.models.registry import modelapi
from stagbench.agents.scripted import ScriptedAgent, strategy
from stagbench.games import Action
from stagbench.topologies import topology


class Contrarian(ScriptedAgent):
    def choose(self, view):
        return Action.HARE if view.round % 2 else Action.STAG


strategy("contrarian", Contrarian, "hare in odd rounds")


@topology("bowtie", "two triangles sharing seat 0")
def bowtie(n):
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from([(0, i) for i in range(1, n)] + [(1, 2)])
    return g


@adversary("sleeper", "plays along until round r, then betrays")
@dataclass
class Sleeper(Wrapper):
    r: int = 2

    def betrays(self, view):
        return view.round >= self.r


class Echo(ModelAPI):
    async def generate(self, messages, config, schema=None):
        reply = {"message": "stag"} if schema and schema.name == "talk" else {"action": "stag"}
        return ModelOutput(text=json.dumps(reply), input_tokens=1, output_tokens=1)


@modelapi("echo", description="always stag", example="echo/any", free=True)
def _echo(model, settings):
    return Echo()
'''

SPEC = """
name = "plugged"
seed = 1
[game]
rounds = 3
[agents]
reasoning = false
[factors]
models = [["scripted/contrarian", "echo/any"]]
topologies = ["bowtie"]
adversaries = ["sleeper(r=2)"]
"""


def test_a_plugin_package_adds_every_kind_of_entry(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "stagbench_demo_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "stagbench_demo_plugin.py").write_text(PLUGIN)
    info = site / "stagbench_demo_plugin-0.1.dist-info"
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: stagbench-demo-plugin\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text("[stagbench]\ndemo = stagbench_demo_plugin\n")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    env = {**os.environ, "PYTHONPATH": str(site)}
    cli = [sys.executable, "-P", "-m", "stagbench.cli"]
    run = subprocess.run(
        [*cli, "run", str(spec), "--out", str(tmp_path / "out"), "--no-progress"],
        env=env, capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 trials run" in run.stdout
    listed = subprocess.run([*cli, "models"], env=env, capture_output=True, text=True)
    assert "echo" in listed.stdout and "contrarian" in listed.stdout
    # without the plugin, the same spec is a clear error naming what is unknown
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    bad = subprocess.run([*cli, "validate", str(spec)], env=plain, capture_output=True, text=True)
    assert bad.returncode == 2
    for unknown in ("bowtie", "sleeper", "contrarian", "echo"):
        assert unknown in bad.stdout + bad.stderr, unknown
    assert "Traceback" not in bad.stderr


def test_a_broken_plugin_is_named_in_a_clear_error(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "broken_plugin.py").write_text("raise RuntimeError('half-installed')\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[stagbench]\nbroken = broken_plugin\n")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    env = {**os.environ, "PYTHONPATH": str(site)}
    res = subprocess.run(
        [sys.executable, "-P", "-m", "stagbench.cli", "validate", str(spec)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 2
    assert "broken" in res.stderr and "half-installed" in res.stderr
    assert "Traceback" not in res.stderr
