"""Short labels for tables and plots, with a legend back to the full names.

Full provider strings (``openai-api/deepinfra/mistralai/Mixtral-8x22B-Instruct-v0.1``)
swamp tables and tick labels. Each model gets the shortest tail of its path that is unique
among the run's models (``Mixtral-8x22B-Instruct-v0.1``), cut to ``MAX_LEN`` characters
with a counter when two would still collide; the report prints the legend.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

MAX_LEN = 24


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LEN else text[: MAX_LEN - 1] + "…"


def short_names(names: Iterable[str]) -> dict[str, str]:
    """Full name -> a short label, unique among ``names``."""
    full = sorted({str(n) for n in names})
    parts = {n: n.split("/") for n in full}
    depth = dict.fromkeys(full, 1)
    while True:
        label = {n: "/".join(parts[n][-depth[n] :]) for n in full}
        clash: dict[str, list[str]] = {}
        for n, lab in label.items():
            clash.setdefault(lab, []).append(n)
        grown = False
        for group in clash.values():
            if len(group) > 1:
                for n in group:
                    if depth[n] < len(parts[n]):
                        depth[n] += 1
                        grown = True
        if not grown:
            break
    out: dict[str, str] = {}
    used: set[str] = set()
    for n in full:
        lab = _cut(label[n])
        i = 2
        base = lab
        while lab in used:
            lab = _cut(f"{base[: MAX_LEN - 4]}#{i}")
            i += 1
        used.add(lab)
        out[n] = lab
    return out


def population_label(population: str, short: dict[str, str]) -> str:
    """``a+b+c`` with each model's short label."""
    return "+".join(short.get(m, m) for m in str(population).split("+"))


def legend(short: dict[str, str]) -> pd.DataFrame:
    """The legend table: short label, full name (only where they differ)."""
    rows = [(s, f) for f, s in sorted(short.items(), key=lambda x: x[1]) if s != f]
    return pd.DataFrame(rows, columns=["label", "model"])
