"""Trials per arm for the report's own comparison test (``stagbench power``).

The report compares two cells by ``stats.compare_counts``: a studentized permutation of
whole trials (exact over every split when there are few, else Monte Carlo), its p then
Holm-adjusted over the report's family of comparisons. The textbook answer
(``stats.trials_per_arm``: a normal-approximation two-proportion test, Cohen's h,
inflated by the design effect) is right for many trials but not for few: n v n trials
give a permutation p no smaller than 2 / C(2n, n), so 2 per arm can never reject at 0.05
(and 4 per arm cannot at 0.05 / 52), and with few trials the approximation overstates the
test's power: 0.73-0.77 for a planned 0.8 at 6-7 per arm (redteam rt29 F2), and still
0.73-0.79 at its answers of 13-34 per arm (800-1000 simulated data sets each: 0.6 ->
0.8, trials of 15, ICC 0.3, one test: 0.76 at its 28; two tests: 0.77 at its 34), and for
small trials past that too (0.5 -> 0.7, one agent-round per trial, ICC 0: 0.75 at its 93,
2000 data sets; redteam rt31: 0.74-0.78 for trials of 1-4 agent-rounds), though 0.83 at its
40 (ICC 0.45) and 0.805 at its 47 (ICC 0.3, 9 tests).

``plan_trials`` therefore (1) never answers below the *floor*, the fewest trials per arm at
which the test's smallest attainable p reaches alpha / tests; (2) simulates the report's
test on beta-binomial trials of the planned cluster size and ICC (seeded: the same answer
every time), from the larger of the floor and the normal approximation's answer up: where
``POWER_SIMS`` pilots fall short it jumps to where a normal test with the power found would
reach the target, then halves back between the last number short and the first enough (to
within a trial below ``SIMULATE_UP_TO``, ``STEP_SHARE`` past it), and takes that number only
when ``CONFIRM_SIMS`` pilots reach the target too (else on up from there); (3) keeps the
normal approximation's answer only past ``SIMULATE_UP_TO_NORMAL`` trials per arm, where
it is accurate and simulating slow. The plan says which of these gave its number.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from stagbench.analysis import stats

#: up to this many trials per arm (by the normal approximation) the answer is simulated;
#: past it the approximation is taken as is (0.5 -> 0.6, one agent-round per trial: 388 per
#: arm, simulated 0.81)
SIMULATE_UP_TO_NORMAL = 2000
#: simulated data sets per number of trials (Monte Carlo SE of a power near 0.8: 0.02)
POWER_SIMS = 400
#: ... and where those reach the target, data sets in all before it is taken (SE 0.01): on
#: 400 the first number whose share passed was often short (0.5 -> 0.7, one agent-round
#: per trial: 99 passed at 0.80, and 0.755 in 400 data sets simulated apart)
CONFIRM_SIMS = 1600
#: ... though every this many it stops where the power is this many standard errors clear
#: of the target (an effect far too small or far larger than needed)
DECIDE_EVERY = 50
DECIDE_SE = 2.5
#: the simulation's seed: the same inputs give the same plan
POWER_SEED = 0
#: the most trials per arm the simulation steps up to before giving up: this many, or
#: ``STEP_UP_TO`` times where it started, whichever is more
SIMULATE_UP_TO = 80
STEP_UP_TO = 2.0
#: past ``SIMULATE_UP_TO`` trials per arm each step adds this share of the trials (the
#: answer is then good to about this share)
STEP_SHARE = 0.03

#: what to do where the report's test cannot give so small a p
FURTHER = (
    "plan at a larger alpha or for fewer tests (this plans for the report's default "
    f"{stats.COMPARISON_PERMUTATIONS} permutations; report --n-boot draws more)"
)

NORMAL = "normal approximation"
SIMULATED = "simulated power of the report's test"


@dataclass(frozen=True)
class Plan:
    """``trials`` per arm and how they were found: ``method`` (``NORMAL`` or
    ``SIMULATED``); ``normal`` the normal approximation's answer (``None``: it has none);
    ``floor`` the fewest trials per arm at which the report's test can give p <= ``level``
    (alpha / tests), ``floor_p`` its smallest p there and ``floor_how`` how that p is made;
    ``achieved`` the simulated power at ``trials`` (``None`` where not simulated) over
    ``sims`` data sets, and ``fewer`` (trials, power, data sets) of the most trials
    simulated that fell short, where any did."""

    trials: int
    method: str
    normal: int | None
    floor: int
    floor_p: float
    floor_how: str
    level: float
    achieved: float | None = None
    sims: int = 0
    fewer: tuple[int, float, int] | None = None

    @property
    def achieved_ci(self) -> tuple[float, float]:
        """The Wilson 95% interval of ``achieved`` over its ``sims`` data sets (NaN where
        not simulated)."""
        if self.achieved is None or not self.sims:
            return math.nan, math.nan
        return stats.wilson(round(self.achieved * self.sims), self.sims)


def smallest_p(
    trials: int, family: int = 1, n_perm: int = stats.COMPARISON_PERMUTATIONS
) -> tuple[float, str]:
    """The smallest p the report's test (``stats.two_sample_permutation_test`` as
    ``compare_counts`` calls it for a family of ``family`` tests, ``n_perm``
    permutations) can give for ``trials`` v ``trials`` trials, and how it is made.

    Exact while the C(2n, n) splits fit ``stats.EXACT_MAX``: the most extreme split and its
    mirror image (the statistic is two-sided) each have probability 1 / C(2n, n), so p is
    at least 2 / C(2n, n). Past that, trials of many distinct outcomes are tested by Monte
    Carlo, whose p is at least 1 / (draws + 1), draws as many as the test draws at most
    for the family (Besag-Clifford's sequential draws near the floor, within
    ``stats.DRAW_BUDGET``). (Data with few distinct trial outcomes can stay exact there,
    with a smaller p; the plan does not count on it.)"""
    splits = math.comb(2 * trials, trials)
    if splits <= stats.EXACT_MAX:
        return 2 / splits, f"exact: 2 / C({2 * trials}, {trials}) = 2 / {splits:,} splits"
    draws = max(n_perm, stats._floor_draws(family, stats.ALPHA))
    draws = min(draws, max(n_perm, stats.DRAW_BUDGET // (2 * trials)))
    return 1 / (draws + 1), f"Monte Carlo: 1 / ({draws:,} permutations + 1)"


def trials_past_exact() -> int:
    """The fewest trials per arm whose C(2n, n) splits pass ``stats.EXACT_MAX`` (9)."""
    trials = 1
    while math.comb(2 * trials, trials) <= stats.EXACT_MAX:
        trials += 1
    return trials


def fewest_trials(
    level: float, family: int = 1, n_perm: int = stats.COMPARISON_PERMUTATIONS
) -> int | None:
    """The fewest trials per arm at which the report's test can give p <= ``level``
    (``smallest_p``), or ``None`` where no number can (a level below the Monte Carlo floor
    and below every exact one). Past the exact range the Monte Carlo floor only rises with
    the trials (the draw budget), so the first Monte Carlo number is the last to try."""
    for trials in range(1, trials_past_exact() + 1):
        if smallest_p(trials, family, n_perm)[0] <= level:
            return trials
    return None


def beta_binomial_trials(
    rng: np.random.Generator, rate: float, icc: float, cluster_size: int, trials: int
) -> np.ndarray:
    """Stag counts of ``trials`` trials of ``cluster_size`` agent-rounds: each trial's rate
    drawn from a beta distribution of mean ``rate`` whose intra-trial correlation is
    ``icc`` (a + b = 1 / ICC - 1; ICC 0: every trial at ``rate``, ICC 1: each trial all
    stag or all hare), its agent-rounds binomial at that rate."""
    if icc <= 0 or rate in (0.0, 1.0):
        q = np.full(trials, rate)
    elif icc >= 1:
        q = (rng.random(trials) < rate).astype(float)
    else:
        s = 1 / icc - 1
        q = rng.beta(rate * s, (1 - rate) * s, trials)
    return rng.binomial(cluster_size, q)


def rejections(
    p0: float,
    p1: float,
    trials: int,
    cluster_size: int,
    icc: float,
    alpha: float = 0.05,
    family: int = 1,
    seed: int = POWER_SEED,
    n_perm: int = stats.COMPARISON_PERMUTATIONS,
    drawn: int | None = None,
) -> Iterator[bool]:
    """Simulated pilots without end (``trials`` v ``trials`` beta-binomial trials,
    ``beta_binomial_trials``), each giving whether the report's test
    (``stats.comparison_test``: ``compare_counts``' permutation p, with the report's
    permutations and family; data set i seeded i) gives p <= alpha / family: Holm's first
    step, so the comparison is rejected whatever the others find. Seeded by ``seed`` and
    ``i``: the same inputs give the same sequence, and data set i with more trials is data
    set i with fewer and more trials added (common random numbers: the powers of two
    numbers of trials differ by the trials, not by the luck of the draw, up to ``drawn``
    trials: ``SIMULATE_UP_TO`` when not given)."""
    sizes = np.full(trials, float(cluster_size))
    level = alpha / family
    drawn = max(trials, drawn or SIMULATE_UP_TO)
    for i in itertools.count():
        rng = np.random.default_rng([seed, i])
        ka = beta_binomial_trials(rng, p0, icc, cluster_size, drawn)[:trials]
        kb = beta_binomial_trials(rng, p1, icc, cluster_size, drawn)[:trials]
        yield bool(stats.comparison_test(ka, sizes, kb, sizes, n_perm, i, family).p <= level)


def simulated_power(
    p0: float,
    p1: float,
    trials: int,
    cluster_size: int,
    icc: float,
    alpha: float = 0.05,
    family: int = 1,
    sims: int = POWER_SIMS,
    seed: int = POWER_SEED,
) -> float:
    """The share of ``sims`` simulated pilots (``rejections``) in which the report's test
    rejects."""
    found = rejections(p0, p1, trials, cluster_size, icc, alpha, family, seed)
    return sum(itertools.islice(found, sims)) / sims


def _power_against(
    target: float, found: Iterator[bool], sims: int, hits: int = 0, before: int = 0
) -> tuple[int, int]:
    """The rejections in up to ``sims`` pilots of ``found``, and how many pilots: every
    ``DECIDE_EVERY`` pilots it stops early where their share is ``DECIDE_SE`` standard
    errors (of a power at the target or the share, whichever is wider) clear of the
    target, above or below. ``hits`` of ``before`` pilots drawn from ``found`` already
    count toward it (the rest goes on from there)."""
    done = before
    for done, hit in enumerate(itertools.islice(found, sims - before), before + 1):
        hits += hit
        if done % DECIDE_EVERY == 0 and done < sims:
            share = hits / done
            se = math.sqrt(max(share * (1 - share), target * (1 - target)) / done)
            if abs(share - target) > DECIDE_SE * se:
                return hits, done
    return hits, done


def plan_trials(
    p0: float,
    p1: float,
    alpha: float = 0.05,
    power: float = 0.8,
    cluster_size: int = 1,
    icc: float = 0.0,
    family: int = 1,
    sims: int = POWER_SIMS,
    seed: int = POWER_SEED,
) -> Plan:
    """Trials per arm at which the report's comparison test has ``power`` to detect p0 vs
    p1 at ``alpha`` Holm-adjusted over ``family`` tests (planned at alpha / family), and
    how they were found (see the module). A ``ValueError`` (saying why) where the inputs
    mean nothing (``stats.check_power_inputs``), where the report's test cannot give so
    small a p at the number found, or where the simulation does not reach the power by
    ``SIMULATE_UP_TO`` trials per arm, or twice where it started: no number is given that
    no method supports. The same inputs give the same plan, made once per process."""
    return _plan(p0, p1, alpha, power, cluster_size, icc, family, sims, seed)


@functools.lru_cache(maxsize=64)
def _plan(
    p0: float,
    p1: float,
    alpha: float,
    power: float,
    cluster_size: int,
    icc: float,
    family: int,
    sims: int,
    seed: int,
) -> Plan:
    """``plan_trials``, its arguments all given in order (one cache entry per plan)."""
    level = alpha / family
    # (which checks the inputs first: stats.check_power_inputs)
    normal = stats.normal_trials_per_arm(p0, p1, alpha, power, cluster_size, icc, family)
    floor = fewest_trials(level, family)
    if floor is None:
        past = trials_past_exact()
        p, how = smallest_p(past, family)
        exact, exact_how = smallest_p(past - 1, family)
        raise ValueError(
            f"the report's test can never give p <= {level:.4g} (alpha {alpha:g} over "
            f"{family} test{'s' if family != 1 else ''}): from {past} trials per arm it "
            f"is Monte Carlo, whose smallest p is {p:.3g} ({how}), and with fewer its exact "
            f"p is at least {exact:.3g} ({exact_how}); {FURTHER}"
        )
    floor_p, floor_how = smallest_p(floor, family)

    def plan(
        trials: int,
        method: str,
        achieved: tuple[float, int] | None = None,
        fewer: tuple[int, float, int] | None = None,
    ) -> Plan:
        power_, done = achieved or (None, 0)
        return Plan(trials, method, normal, floor, floor_p, floor_how, level, power_, done, fewer)

    if normal is not None and normal > SIMULATE_UP_TO_NORMAL:
        _can_reject(normal, level, family)
        return plan(normal, NORMAL)
    start = max(floor, normal or floor)
    last = max(SIMULATE_UP_TO, math.ceil(STEP_UP_TO * start))

    #: each number's pilots: their draws, rejections and how many were drawn
    pilots: dict[int, tuple[Iterator[bool], int, int]] = {}

    def simulate(trials: int, confirm: bool = False) -> tuple[float, int]:
        """The simulated power at ``trials`` on ``sims`` pilots, or (``confirm``) on
        ``CONFIRM_SIMS``: the same pilots, and more (each stops early where clear)."""
        if trials not in pilots:
            _can_reject(trials, level, family)
            found = rejections(p0, p1, trials, cluster_size, icc, alpha, family, seed, drawn=last)
            pilots[trials] = (found, *_power_against(power, found, sims))
        found, hits, done = pilots[trials]
        most = max(sims, CONFIRM_SIMS)
        if confirm and hits / max(done, 1) >= power and done < most:
            hits, done = _power_against(power, found, most, hits, done)
            pilots[trials] = (found, hits, done)
        return hits / max(done, 1), done

    # up from the start until the power is reached (by a jump to where the power's curve
    # says it would be), down by halves between the last short number and the first
    # enough, to within a trial below SIMULATE_UP_TO and STEP_SHARE past it; then the
    # answer is simulated again on more pilots, and where it falls short, on up from there
    short: tuple[int, float, int] | None = None
    trials = start
    while True:
        got, done = simulate(trials)
        if got < power:
            short = (trials, got, done)
            if trials >= last:
                raise ValueError(
                    f"the report's test did not reach power {power:g} in simulation by "
                    f"{last} trials per arm (power {got:.2f} there): no number to recommend"
                )
            trials = min(last, max(trials + 1, _jump(trials, got, level, power)))
            continue
        enough = (trials, got, done)
        while short is not None and enough[0] - short[0] > _within(enough[0]):
            mid = (short[0] + enough[0]) // 2
            got, done = simulate(mid)
            if got >= power:
                enough = (mid, got, done)
            else:
                short = (mid, got, done)
        got, done = simulate(enough[0], confirm=True)
        if got >= power:
            return plan(enough[0], SIMULATED, (got, done), short)
        short, trials = (enough[0], got, done), enough[0] + 1


def _within(trials: int) -> int:
    """How far above the fewest trials reaching the power a plan may stop: one trial below
    ``SIMULATE_UP_TO``, ``STEP_SHARE`` of them past it."""
    return 1 if trials < SIMULATE_UP_TO else max(1, math.floor(STEP_SHARE * trials))


def _jump(trials: int, got: float, level: float, power: float) -> int:
    """Where simulated power ``got`` at ``trials`` falls short, the trials at which a
    two-sided normal test at ``level`` with that power would reach ``power`` (its power
    Phi(c sqrt(n) - z)): the next number to try, not an answer. No power at all: twice."""
    if got <= 0:
        return 2 * trials
    z = NormalDist().inv_cdf(1 - level / 2)
    c = (z + NormalDist().inv_cdf(min(got, 1 - 1e-9))) / math.sqrt(trials)
    if c <= 0:
        return 2 * trials
    return math.ceil(((z + NormalDist().inv_cdf(power)) / c) ** 2)


def _can_reject(trials: int, level: float, family: int) -> None:
    p, how = smallest_p(trials, family)
    if p > level:
        raise ValueError(
            f"at {trials} trials per arm the report's test cannot give p <= {level:.4g}: "
            f"its smallest p is {p:.3g} ({how}); {FURTHER}"
        )
