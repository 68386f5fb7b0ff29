"""Short labels for tables and plots, with a legend back to the full names.

Full provider strings (``openai-api/deepinfra/mistralai/Mixtral-8x22B-Instruct-v0.1``)
swamp tables and tick labels. Each model gets the shortest tail of its path that is unique
among the run's models (``Mixtral-8x22B-Instruct-v0.1``), cut to ``MAX_LEN`` characters;
a cut keeps the parameters in brackets at the end (``generous-tit-for-…(g=0.1)``), and
where cut labels would still be alike the tails are given whole: a label never hides
what tells two models apart (redteam rt29 F10: ``(g=0.1)`` and ``(g=0.9)`` were shown as
``generous-tit-for-tat(g=…`` and ``generous-tit-for-tat#2``). The report prints the
legend.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

MAX_LEN = 24

#: a name's parameters in brackets at its end: ``random(p=0.7)``
_PARAMS = re.compile(r"(.+?)(\([^()]*\))")


def _cut(text: str) -> str:
    """``text`` in at most ``MAX_LEN`` characters, its final parameters kept whole where
    they leave room for some of the name before them."""
    if len(text) <= MAX_LEN:
        return text
    m = _PARAMS.fullmatch(text)
    if m and len(m.group(2)) <= MAX_LEN - 6:
        return m.group(1)[: MAX_LEN - len(m.group(2)) - 1] + "…" + m.group(2)
    return text[: MAX_LEN - 1] + "…"


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
    cut = {n: _cut(label[n]) for n in full}
    seen: dict[str, int] = {}
    for lab in cut.values():
        seen[lab] = seen.get(lab, 0) + 1
    # alike once cut: the whole tails (unique), never a counter that hides the difference
    out = {n: cut[n] if seen[cut[n]] == 1 else label[n] for n in full}
    if len(set(out.values())) < len(out):  # a whole tail equal to another's cut label
        out = {n: label[n] for n in full}
    return out


def population_label(population: str, short: dict[str, str]) -> str:
    """``a+b+c`` with each model's short label."""
    return "+".join(short.get(m, m) for m in str(population).split("+"))


def legend(short: dict[str, str]) -> pd.DataFrame:
    """The legend table: short label, full name (only where they differ)."""
    rows = [(s, f) for f, s in sorted(short.items(), key=lambda x: x[1]) if s != f]
    return pd.DataFrame(rows, columns=["label", "model"])
