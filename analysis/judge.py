"""An optional LLM judge for betrayal detection, and its agreement with the lexical
detector (Cohen's kappa).

Every agent-trial that observed a betrayal is either not asked (it wrote nothing after
the betrayal), answered (a reply that parses strictly: ``detected`` a JSON boolean,
``round`` null or a JSON integer naming a round of the trial after the betrayal) or
failed (the call raised, the reply had no JSON object, or it broke those rules): a
failure is recorded with its kind and detail, never dropped and never read as an answer.

Analysis reads records only: the judge is handed an ``Ask`` (a prompt and a JSON schema
in, the reply's JSON object out), which the command line builds on the run's model
registry (``stagbench.runs.compose.json_asker``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats as sps
from statsmodels.stats.inter_rater import cohens_kappa

#: a prompt and a JSON schema in; the reply's JSON object out (ValueError if it has none)
Ask = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "detected": {"type": "boolean"},
        "round": {"type": ["integer", "null"]},
    },
    "required": ["detected", "round"],
    "additionalProperties": False,
}

PROMPT = (
    "In a repeated Stag Hunt game, player {betrayer} promised to hunt stag in round {t} and "
    "then hunted hare. Below is everything player {me} wrote in later rounds. Did {me} "
    "recognise the betrayal, that is name {betrayer} as untrustworthy or voice distrust of "
    'them? Answer with JSON: {{"detected": true or false, "round": the first round '
    "where it shows, or null}}.\n\n{lines}"
)


def _writings(df: pd.DataFrame, trial_id: str, seat: int, after: int) -> list[tuple[int, str]]:
    rows = df[(df["trial_id"] == trial_id) & (df["seat"] == seat) & (df["round"] > after)]
    out = []
    ordered = rows.sort_values("round")
    for rnd, message, reasoning in zip(
        ordered["round"].tolist(),
        ordered["message"].tolist(),
        ordered["reasoning"].tolist(),
        strict=True,
    ):
        for text in (message, reasoning):
            if isinstance(text, str) and text:
                out.append((int(rnd), text))
    return out


#: ``judge_status`` of an agent-trial
ANSWERED, FAILED, NOT_ASKED = "answered", "failed", "not asked"
#: why an agent-trial is not asked
NOT_ASKED_WHY = "it wrote nothing after the betrayal"


class Rejected(ValueError):
    """A judge's reply that breaks the rules: ``kind`` (a fixed text, counted) and the
    detail (the value given)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def parse_reply(data: object, betrayal: int, last: int) -> tuple[bool, int | None]:
    """A judge's reply, strictly: ``detected`` must be a JSON boolean (never a string such
    as "false", a number or null) and ``round`` null or a JSON integer (not a bool, float
    or string) naming a round after the betrayal (``betrayal``) and no later than the
    trial's ``last``. Returns (detected, round); raises ``Rejected`` otherwise."""
    if not isinstance(data, dict):
        raise Rejected("reply not a JSON object", repr(data)[:200])
    if "detected" not in data:
        raise Rejected("'detected' missing", f"keys {sorted(map(str, data))}"[:200])
    detected = data["detected"]
    if not isinstance(detected, bool):
        raise Rejected("'detected' not a JSON boolean", f"detected = {detected!r}"[:200])
    if "round" not in data:
        raise Rejected("'round' missing", f"keys {sorted(map(str, data))}"[:200])
    rnd = data["round"]
    if rnd is None:
        return detected, None
    if isinstance(rnd, bool) or not isinstance(rnd, int):
        raise Rejected("'round' not a JSON integer or null", f"round = {rnd!r}"[:200])
    if not betrayal < rnd <= last:
        raise Rejected(
            "'round' not a round of the trial after the betrayal",
            f"round = {rnd}; betrayal in round {betrayal}, the trial's last round {last}",
        )
    return detected, rnd


def _failure(exc: Exception) -> tuple[str, str]:
    """(kind, detail) of a judge call that raised: a reply without JSON (``ValueError``
    from ``extract_json``: the text before its first colon is the kind) or a provider's
    error (its type)."""
    if isinstance(exc, Rejected):
        return exc.kind, str(exc)
    if type(exc) is ValueError:
        return str(exc).split(":", 1)[0] or "ValueError", str(exc)
    return f"provider error ({type(exc).__name__})", str(exc) or type(exc).__name__


async def judge_detection(
    df: pd.DataFrame, agent_trials: pd.DataFrame, ask: Ask, player_name: str = "P{n}"
) -> pd.DataFrame:
    """Judge every agent-trial with an observed betrayal; returns its rows with the judge's
    columns: ``judge_status`` (answered, failed, not asked), ``judge_detected`` (nullable
    boolean: NA unless answered), ``judge_round`` (the round it named, nullable),
    ``judge_latency`` (rounds from the betrayal to the round named, when detected),
    ``judge_failure`` (the kind of failure) and ``judge_error`` (its detail). A call that
    raises (any error: a provider's, a reply without JSON) is a failure of that
    agent-trial only; the others keep their answers. ``player_name`` is how the
    transcripts name a player (``{n}`` = seat + 1)."""
    todo = agent_trials[agent_trials["betrayal_round"].notna()]
    last_round = df.groupby("trial_id", observed=True)["round"].max() if len(df) else None

    async def one(row: pd.Series) -> dict[str, object]:
        t = int(row["betrayal_round"])
        writings = _writings(df, row["trial_id"], int(row["seat"]), t)
        out: dict[str, object] = {
            "judge_status": NOT_ASKED,
            "judge_detected": pd.NA,
            "judge_round": pd.NA,
            "judge_latency": np.nan,
            "judge_failure": None,
            "judge_error": None,
        }
        if not writings:
            return out
        assert last_round is not None  # there are writings
        last = int(last_round[row["trial_id"]])
        lines = "\n".join(f"round {r}: {json.dumps(text)}" for r, text in writings)
        me = player_name.format(n=int(row["seat"]) + 1)
        prompt = PROMPT.format(
            betrayer=player_name.format(n=int(row["betrayer"]) + 1), me=me, t=t, lines=lines
        )
        try:
            detected, rnd = parse_reply(await ask(prompt, SCHEMA), t, last)
        except Exception as exc:  # noqa: BLE001 - any failure is this agent-trial's only
            kind, detail = _failure(exc)
            return out | {"judge_status": FAILED, "judge_failure": kind, "judge_error": detail}
        latency = float(rnd - t) if detected and rnd is not None else np.nan
        return out | {
            "judge_status": ANSWERED,
            "judge_detected": detected,
            "judge_round": pd.NA if rnd is None else rnd,
            "judge_latency": latency,
        }

    results = await asyncio.gather(*(one(r) for _, r in todo.iterrows()))
    cols = ["judge_status", "judge_detected", "judge_round", "judge_latency"]
    frame = pd.DataFrame(results, index=todo.index, columns=[*cols, "judge_failure", "judge_error"])
    frame = frame.astype(
        {
            "judge_status": object,
            "judge_detected": "boolean",
            "judge_round": "Int64",
            "judge_latency": "float64",
            "judge_failure": object,
            "judge_error": object,
        }
    )
    return todo.assign(**{c: frame[c] for c in frame.columns})


def failure_counts(judged: pd.DataFrame) -> dict[str, int]:
    """The judge's failures of ``judged`` by kind, most frequent first."""
    kinds = judged.loc[judged["judge_status"] == FAILED, "judge_failure"].astype(str)
    return {str(k): int(v) for k, v in kinds.value_counts().items()}


def failures_text(failures: dict[str, int]) -> str:
    """``failure_counts`` as text: ``kind ×count; ...``."""
    return "; ".join(f"{k} ×{v}" for k, v in failures.items())


def kappa(lexical: np.ndarray, judged: np.ndarray) -> tuple[float, str]:
    """Cohen's kappa of two raters' booleans, and why it is NaN when it is: undefined
    when there is no pair, or when either rater gives one category only (the expected
    agreement is then the observed one: 0/0; ``cohens_kappa`` itself gives NaN)."""
    n = len(lexical)
    if not n:
        return float("nan"), "no answered judgement: no kappa"
    for name, r in (("the lexical detector", lexical), ("the judge", judged)):
        if r.all() or not r.any():
            said = "detected" if r.all() else "not detected"
            return float("nan"), (
                f"kappa undefined: {name} says {said} on all {n} answered (one category)"
            )
    table = np.array(
        [
            [np.sum(lexical & judged), np.sum(lexical & ~judged)],
            [np.sum(~lexical & judged), np.sum(~lexical & ~judged)],
        ]
    )
    return float(cohens_kappa(table).kappa), ""


#: how ``kappa_ci`` makes its interval
KAPPA_CI = "linearised trial-clustered standard error, t(trials - 1)"


def kappa_ci(
    lexical: np.ndarray, judged: np.ndarray, trials: np.ndarray, alpha: float = 0.05
) -> tuple[float, float, str]:
    """A ``1 - alpha`` interval for Cohen's kappa of two raters' booleans whose pairs are
    clustered in ``trials`` (agent-trials of one trial share its play): kappa is a function
    of three means (observed agreement, each rater's share of positives), so its standard
    error is the trial-clustered one of its linearisation (the delta method: each pair's
    influence, summed per trial), with Student's t on trials - 1 degrees of freedom, and
    the interval is clipped to [-1, 1]. No interval (NaN, with why) where kappa is
    undefined (``kappa``), from fewer than 2 trials, at perfect agreement, or where the
    trials' influences have no spread."""
    k, why = kappa(lexical, judged)
    if why:
        return float("nan"), float("nan"), why
    codes, uniq = pd.factorize(np.asarray(trials))
    if len(uniq) < 2:
        return float("nan"), float("nan"), "one trial: no trial-clustered interval"
    lx, jd = lexical.astype(float), judged.astype(float)
    po = float(np.mean(lx == jd))
    if po == 1.0:  # kappa 1 at the boundary: the linearisation has no spread there
        return float("nan"), float("nan"), "the raters agree on every pair: no interval"
    pl, pj = float(lx.mean()), float(jd.mean())
    pe = pl * pj + (1 - pl) * (1 - pj)
    # d kappa / d(po, pl, pj), then each pair's influence on kappa
    d_po = 1 / (1 - pe)
    d_pe = (po - 1) / (1 - pe) ** 2
    infl = d_po * ((lx == jd) - po) + d_pe * ((2 * pj - 1) * (lx - pl) + (2 * pl - 1) * (jd - pj))
    g = len(uniq)
    per_trial = np.bincount(codes, weights=infl, minlength=g)
    se = float(np.sqrt(g / (g - 1) * np.sum(per_trial**2)) / len(lx))
    if not se > 1e-12:
        return float("nan"), float("nan"), "the trials do not vary: no interval"
    q = float(sps.t.ppf(1 - alpha / 2, g - 1))
    return max(-1.0, k - q * se), min(1.0, k + q * se), KAPPA_CI


def agreement(judged: pd.DataFrame) -> dict[str, Any]:
    """The judge's counts on ``judged`` (rows of ``judge_detection``) and its agreement
    with the lexical detector over the answered ones: ``observers`` (rows), ``not_asked``,
    ``asked``, ``answered``, ``failed``, ``failures`` (by kind), ``lexical_detected`` and
    ``judge_detected`` (of the answered), ``agreed``, ``agreement`` (NaN when none
    answered), ``kappa`` and ``kappa_note`` (why it is NaN), and kappa's trial-clustered
    interval ``kappa_ci_lo``, ``kappa_ci_hi`` with ``kappa_ci``: how it was made, or why
    there is none (``kappa_ci``)."""
    status = judged["judge_status"]
    ok = judged[status == ANSWERED]
    lex = ok["detected"].astype(bool).to_numpy()
    jud = ok["judge_detected"].astype(bool).to_numpy()
    n = len(ok)
    agreed = int(np.sum(lex == jud))
    k, note = kappa(lex, jud)
    lo, hi, how = kappa_ci(lex, jud, ok["trial_id"].astype(str).to_numpy())
    return {
        "observers": len(judged),
        "not_asked": int((status == NOT_ASKED).sum()),
        "asked": int((status != NOT_ASKED).sum()),
        "answered": n,
        "failed": int((status == FAILED).sum()),
        "failures": failure_counts(judged),
        "lexical_detected": int(lex.sum()),
        "judge_detected": int(jud.sum()),
        "agreed": agreed,
        "agreement": agreed / n if n else float("nan"),
        "kappa": k,
        "kappa_note": note,
        "kappa_ci_lo": lo,
        "kappa_ci_hi": hi,
        "kappa_ci": how,
    }
