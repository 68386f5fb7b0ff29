"""``python -m stagbench``: the command line."""

from stagbench.cli import main

main()
