"""stagbench: repeated N-player Stag Hunt experiments between LLM agents.

One import name, ``stagbench``. Its parts live in the folders the design card puts at the
repository root and are installed beneath it: ``stagbench.games``, ``stagbench.topologies``,
``stagbench.agents``, ``stagbench.adversaries``, ``stagbench.runs``, ``stagbench.analysis``.
This folder holds what sits below them all (the errors, the records, the registry helper)
and what sits above them all (the command line, the conformance suites).
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

_PARTS = ("games", "topologies", "agents", "adversaries", "runs", "analysis")


def _beside_the_checkout() -> None:
    """Imported straight from a source checkout (its root is the working directory of
    ``python -m ...``, or on ``sys.path``), this folder has no subpackages of its own:
    they are the folders beside it. An installed copy (regular or editable) has them
    inside, and this does nothing."""
    here = Path(__file__).parent
    root = here.parent
    if not (here / "games").is_dir() and all((root / p / "__init__.py").is_file() for p in _PARTS):
        __path__.append(str(root))  # noqa: F821 - the package's own search path


_beside_the_checkout()
