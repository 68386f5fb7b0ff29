"""Compare two report folders written by `stagbench report`: report.md byte for byte and
every Parquet table by frame equality (pandas ``assert_frame_equal``), the same set of
tables in both. Prints what differs and exits 1 when anything does. Run:
    python benchmarks/diff_reports.py OLD_REPORT_DIR NEW_REPORT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq


def diff(old: Path, new: Path) -> list[str]:
    problems = []
    a, b = (old / "report.md").read_bytes(), (new / "report.md").read_bytes()
    if a != b:
        la, lb = a.decode().splitlines(), b.decode().splitlines()
        first = next((i for i, (x, y) in enumerate(zip(la, lb, strict=False)) if x != y), None)
        where = f"line {first + 1}: {la[first]!r} vs {lb[first]!r}" if first is not None else ""
        problems.append(f"report.md differs ({len(la)} vs {len(lb)} lines) {where}")
    names_a = {p.name for p in old.glob("*.parquet")}
    names_b = {p.name for p in new.glob("*.parquet")}
    if names_a != names_b:
        problems.append(
            f"tables differ: only old {names_a - names_b}, only new {names_b - names_a}"
        )
    for name in sorted(names_a & names_b):
        ta, tb = pq.read_table(old / name), pq.read_table(new / name)
        if ta.equals(tb):  # the same columns, types and values (fast on large tables)
            continue
        fa, fb = ta.to_pandas(), tb.to_pandas()
        try:
            pd.testing.assert_frame_equal(fa, fb)
        except AssertionError as exc:
            problems.append(f"{name}: {str(exc).splitlines()[:6]}")
    return problems


def main() -> None:
    if len(sys.argv) != 3 or not all((Path(a) / "report.md").is_file() for a in sys.argv[1:]):
        sys.exit((__doc__ or "").strip() + "\n(each a folder holding a report.md)")
    old, new = Path(sys.argv[1]), Path(sys.argv[2])
    problems = diff(old, new)
    for p in problems:
        print("DIFF", p)
    n = len(list(old.glob("*.parquet")))
    print(f"{'SAME' if not problems else 'DIFFERENT'}: report.md and {n} tables ({old} vs {new})")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
