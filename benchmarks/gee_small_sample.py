"""Simulation: type-I error of the regression's disclosure term with few trials.

Null data: two disclosure arms with the same stag rate (0.5), T trials per arm, each trial
4 honest agents x 8 rounds, a trial random effect on the logit scale (sd 0: independent
rows; sd 0.8: trials correlated). Fits the report's model ``stag ~ C(disclosure) * round``
with ``stats.logit_model`` (what the report prints) and, on the same data, the plain GEE
sandwich with a normal reference (what it printed before: robust covariance, z test), and
counts how often the disclosure term's p falls below 0.05 (nominal 0.05) and how often the
model refuses (too few trials for the coefficients). Run:
    nice -n 10 python benchmarks/gee_small_sample.py [--sims 200] [--trials 1,2,3,5,10,20,40]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from patsy import dmatrices

from stagbench.analysis import stats

FORMULA = "stag ~ C(disclosure) * round"
TERM = "C(disclosure)[T.silent]"


def null_data(
    rng: np.random.Generator, per_arm: int, sd: float, agents: int = 4, rounds: int = 8
) -> pd.DataFrame:
    rows = []
    for arm in ("explicit", "silent"):
        for t in range(per_arm):
            p = 1 / (1 + np.exp(-rng.normal(0, sd))) if sd > 0 else 0.5
            stag = rng.random((rounds, agents)) < p
            for r in range(rounds):
                for a in range(agents):
                    rows.append((f"{arm}{t}", arm, r + 1, float(stag[r, a])))
    return pd.DataFrame(rows, columns=["trial_id", "disclosure", "round", "stag"])


def plain_sandwich_p(df: pd.DataFrame) -> float:
    """The disclosure term's p from the plain (robust) sandwich and a normal reference."""
    y, x = dmatrices(FORMULA, df, return_type="dataframe")
    model = sm.GEE(
        y,
        x,
        groups=pd.factorize(df["trial_id"])[0],
        family=sm.families.Binomial(),
        cov_struct=sm.cov_struct.Exchangeable(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit()
    p = float(res.pvalues[TERM]) if res is not None else float("nan")
    return p if np.isfinite(p) else 0.0  # a zero se gives NaN z: printed as p = 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=200)
    ap.add_argument("--trials", default="1,2,3,5,10,20,40")
    ap.add_argument("--sd", default="0,0.8")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"{'sd':>4} {'trials/arm':>10} {'old p<.05':>10} {'new p<.05':>10} {'refused':>8} time")
    for sd in (float(s) for s in args.sd.split(",")):
        for per_arm in (int(t) for t in args.trials.split(",")):
            rng = np.random.default_rng([args.seed, per_arm, int(sd * 100)])
            t0 = time.perf_counter()
            old = new = refused = fitted = 0
            methods: set[str] = set()
            for _ in range(args.sims):
                df = null_data(rng, per_arm, sd)
                old += plain_sandwich_p(df) < 0.05
                fit = stats.logit_model(df, FORMULA, n_boot=100)
                methods.add(fit.method.split(" (")[0].split(",")[0])
                if fit.table is None:
                    refused += 1
                    continue
                fitted += 1
                new += float(fit.table.loc[TERM, "p"]) < 0.05
            rate = f"{new / fitted:10.3f}" if fitted else f"{'-':>10}"
            print(
                f"{sd:4.1f} {per_arm:10d} {old / args.sims:10.3f} {rate} "
                f"{refused / args.sims:8.2f} {time.perf_counter() - t0:5.1f}s "
                f"({', '.join(sorted(methods))})",
                flush=True,
            )


if __name__ == "__main__":
    main()
