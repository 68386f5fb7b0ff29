"""Benchmark: `stagbench tables` and `stagbench report` on 10k, 100k and 1M scripted trials.

For each size N it generates N trials of a scripted 90-cell design into DIR-N (kept and
resumed, so a second run of the benchmark re-uses them), then runs, each in its own
process, as a user would:

- ``tables`` with no analysis cache (the first read: every transcript parsed, audited
  and reduced to its views by one worker per core; the views are cached);
- ``tables`` again, on the warm cache;
- ``report`` on the warm cache (a second command on the same folder).

It prints wall time, CPU time (user + system, the command's process and its workers) and
peak memory (max RSS of the command's main process, and of its largest worker process)
for each. Run:
    python benchmarks/bench_analysis.py [--sizes 10000,100000,1000000] [--dir /tmp/sb-bench]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CELLS = 90  # populations x topologies x disclosures x adversary arms below
SPEC = """
name = "bench-analysis"
seed = 7
repetitions = {reps}
[factors]
models = ["scripted/tit-for-tat", "scripted/grim-trigger", "scripted/random(p=0.7)"]
topologies = ["complete", "ring", "star(hub=0)"]
disclosures = ["explicit", "silent"]
adversaries = ["none", "byzantine(count=1)", "byzantine(count=2)", "soft(p=0.5,count=1)",
               "byzantine(count=1,placement=hub)"]
"""

#: runs one CLI command in this process and prints the peak RSS of it and its workers
PROBE = """
import resource, sys
from stagbench.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    print(f"PEAK {me.ru_maxrss // 1024} {kids.ru_maxrss // 1024} {cpu:.2f}", file=sys.stderr)
"""


def command(*args: str) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds (all processes), peak MB of the main process, peak MB of
    its largest worker."""
    t = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-P", "-c", PROBE, *args], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
    peak = next(line for line in res.stderr.splitlines() if line.startswith("PEAK"))
    me, kids, cpu = peak.split()[1:]
    return wall, float(cpu), int(me), int(kids)


def generate(n: int, out: Path) -> None:
    reps = math.ceil(n / CELLS)
    spec = out.parent / f"{out.name}.toml"
    spec.write_text(SPEC.format(reps=reps))
    done = len(list((out / "transcripts").glob("*.jsonl"))) if out.exists() else 0
    if done >= reps * CELLS:
        return
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-P", "-m", "stagbench.cli", "run", str(spec), "--out", str(out),
         "--concurrency", "64", "--workers", str(os.cpu_count() or 1), "--no-progress"],
        check=True,
    )  # fmt: skip
    print(f"  generated {reps * CELLS:,} trials in {time.perf_counter() - t:.0f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/stagbench-bench-analysis"))
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores; wall s, CPU s, peak RSS MB (main process / largest worker)")
    for n in (int(x) for x in args.sizes.split(",")):
        out = args.dir.parent / f"{args.dir.name}-{n}"
        print(f"== {n:,} trials requested ({out})", flush=True)
        generate(n, out)
        trials = len(list((out / "transcripts").glob("*.jsonl")))
        shutil.rmtree(out / ".cache", ignore_errors=True)
        rows = [("tables (first read, no cache)", command("tables", str(out)))]
        rows.append(("tables (cache warm)", command("tables", str(out))))
        rows.append(("report (cache warm)", command("report", str(out))))
        for name, (wall, cpu, me, kids) in rows:
            print(
                f"  {trials:>9,} {name:32s} {wall:8.1f} s wall {cpu:8.1f} s CPU "
                f"{me:7,} MB / {kids:6,} MB",
                flush=True,
            )


if __name__ == "__main__":
    main()
