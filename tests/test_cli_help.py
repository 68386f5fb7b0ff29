"""The command list of ``stagbench --help``."""

from __future__ import annotations

from typer.testing import CliRunner

from stagbench.cli import app


def test_each_command_line_is_its_first_paragraph_on_one_line() -> None:
    """Typer kept the docstring's line breaks in the list ("Exit code 1 when" ended a line
    of merge's entry at any terminal width); each entry is now one line, wrapped only to
    the terminal."""
    res = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})
    assert res.exit_code == 0, res.output
    for info in app.registered_commands:
        assert info.callback is not None and info.callback.__doc__
        first = " ".join(info.callback.__doc__.strip().split("\n\n")[0].split())
        assert first in res.output, (info.name, first)
