"""Size and power of the trial-permutation tests (analysis/stats.py) against the tests
they replaced, on simulated trials whose true answer is known: rejection rates at 5%
for two arms whose trials differ in size (iid Bernoulli agent-rounds, and clustered
ones with a beta-binomial trial effect), for the omnibus over four groups, and power on
a planted difference. Run: ``python benchmarks/bench_permutation.py [reps]``."""

from __future__ import annotations

import sys
import time

import numpy as np

from stagbench.analysis import stats


def raw_difference_p(k: np.ndarray, n: np.ndarray, m: int, n_perm: int, seed: int) -> float:
    """The replaced two-arm test: permute trials, statistic |rate_a - rate_b|."""
    rng = np.random.default_rng(seed)
    observed = abs(k[:m].sum() / n[:m].sum() - k[m:].sum() / n[m:].sum())
    perms = (rng.random((n_perm, len(k))).argsort(axis=1) < m).astype(float)
    ka, na = perms @ k, perms @ n
    diffs = np.abs(ka / na - (k.sum() - ka) / (n.sum() - na))
    return float((np.sum(diffs >= observed - 1e-12) + 1) / (n_perm + 1))


def raw_chi_square_p(k: np.ndarray, n: np.ndarray, g: np.ndarray, n_perm: int, seed: int) -> float:
    """The replaced omnibus: permute trials, statistic the pooled counts' chi-square."""
    rng = np.random.default_rng(seed)
    groups = int(g.max()) + 1
    p = k.sum() / n.sum()

    def chi(codes: np.ndarray) -> np.ndarray:
        flat = (codes + groups * np.arange(codes.shape[0])[:, None]).ravel()
        kk = np.bincount(flat, np.tile(k, codes.shape[0]), groups * codes.shape[0])
        nn = np.bincount(flat, np.tile(n, codes.shape[0]), groups * codes.shape[0])
        return np.asarray(((kk - nn * p) ** 2 / (nn * p * (1 - p))).reshape(-1, groups).sum(1))

    observed = chi(g[None, :])[0]
    perm = g[np.argsort(rng.random((n_perm, len(k))), axis=1)]
    return float((np.sum(chi(perm) >= observed - 1e-9) + 1) / (n_perm + 1))


def draw(rng: np.random.Generator, size: int, trials: int, p: float, icc: float) -> np.ndarray:
    if icc <= 0:
        return rng.binomial(size, p, trials).astype(float)
    ab = 1 / icc - 1
    return rng.binomial(size, rng.beta(p * ab, (1 - p) * ab, trials)).astype(float)


def two_arms(reps: int) -> None:
    print("two arms, true null unless pa != pb: share of p < 0.05")
    print(f"{'trials':>6} {'sizes a/b':>10} {'icc':>4} {'pa':>5} {'pb':>5} "
          f"{'raw diff':>9} {'studentized':>12} {'fisher':>7} {'s/rep':>6}")  # fmt: skip
    designs = [
        (12, 10, 10, 0.0, 0.6, 0.6),
        (12, 10, 40, 0.0, 0.6, 0.6),
        (12, 10, 180, 0.0, 0.6, 0.6),
        (12, 5, 100, 0.0, 0.6, 0.6),
        (8, 20, 10, 0.0, 0.6, 0.6),
        (8, 20, 5, 0.0, 0.6, 0.6),
        (12, 10, 180, 0.2, 0.6, 0.6),
        (30, 15, 15, 0.3, 0.6, 0.6),
        (12, 10, 180, 0.0, 0.45, 0.6),
        (30, 15, 15, 0.2, 0.5, 0.7),
    ]
    for trials, sa, sb, icc, pa, pb in designs:
        rng = np.random.default_rng(1)
        old = new = fisher = 0
        start = time.perf_counter()
        for i in range(reps):
            ka, kb = draw(rng, sa, trials, pa, icc), draw(rng, sb, trials, pb, icc)
            na, nb = np.full(trials, float(sa)), np.full(trials, float(sb))
            c = stats.compare_counts(ka, na, kb, nb, n_perm=1000, seed=i)
            new += c.permutation_p < 0.05
            fisher += c.fisher_p < 0.05
            old += raw_difference_p(np.r_[ka, kb], np.r_[na, nb], trials, 1000, i) < 0.05
        per = (time.perf_counter() - start) / reps
        print(f"{trials:>6} {f'{sa}/{sb}':>10} {icc:>4} {pa:>5} {pb:>5} {old / reps:>9.3f} "
              f"{new / reps:>12.3f} {fisher / reps:>7.3f} {per:>6.3f}")  # fmt: skip


def omnibus(reps: int) -> None:
    print("\nomnibus, 12 trials per group of these sizes: share of p < 0.05")
    for sizes, rates in (
        ([20, 20, 20], [0.6, 0.6, 0.6]),
        ([10, 3, 20, 180], [0.6, 0.6, 0.6, 0.6]),
        ([20, 10], [0.6, 0.6]),
        ([10, 3, 20, 180], [0.4, 0.6, 0.6, 0.6]),
    ):
        rng = np.random.default_rng(3)
        n = np.repeat(sizes, 12).astype(float)
        g = np.repeat(np.arange(len(sizes)), 12)
        p = np.repeat(rates, 12)
        old = new = 0
        for i in range(reps):
            k = rng.binomial(n.astype(int), p).astype(float)
            new += stats.omnibus_test(k, n, g, n_perm=500, seed=i) < 0.05
            old += raw_chi_square_p(k, n, g, 500, i) < 0.05
        print(f"sizes {sizes} rates {rates}: raw chi-square {old / reps:.3f}, "
              f"studentized Wald {new / reps:.3f}")  # fmt: skip


def family(reps: int) -> None:
    print("\nHolm over a family of 300 strong effects (10 vs 10 trials of 10, 0.9 vs 0.2)")
    rng = np.random.default_rng(5)
    ps, fixed = [], []
    start = time.perf_counter()
    for i in range(300):
        ka, kb = draw(rng, 10, 10, 0.9, 0.0), draw(rng, 10, 10, 0.2, 0.0)
        n = np.full(10, 10.0)
        ps.append(stats.two_sample_permutation_test(ka, n, kb, n, 1000, i, family=300).p)
        fixed.append(raw_difference_p(np.r_[ka, kb], np.r_[n, n], 10, 1000, i))
    took = time.perf_counter() - start
    print(f"Holm keeps {sum(p < 0.05 for p in stats.holm(ps))} of 300 (old, 1000 "
          f"permutations: {sum(p < 0.05 for p in stats.holm(fixed))}); {took:.1f} s")  # fmt: skip


if __name__ == "__main__":
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    two_arms(reps)
    omnibus(reps)
    family(reps)
