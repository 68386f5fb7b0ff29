"""Conformance suites for stagbench's extension points, shipped with the package so the
author of a provider, strategy, adversary or topology (built in or a plugin) can hold it
to the same contract the built-ins are held to (the idea of PettingZoo's ``api_test`` and
``seed_test``).

- ``check_model_api``: the reply honours the requested JSON schema; provider errors map to
  ``ModelError`` with the right ``retryable``; no secret (or any 8 characters of one) in
  the error text a run would show (through the ``Model`` wrapper, which redacts); closing
  twice is safe.
- ``check_agent``: an agent plays a short game through the real trial loop, answers with
  well-formed utterances and decisions (no action only as a recorded parse failure), and
  plays the same way twice from the same seed.
- ``check_topology``: a registered topology gives seats ``0..n-1``, no self-loops,
  routing that agrees both ways, the same graph every time, and a clear error for a size
  it cannot build.
- ``seed_test``: the same spec run twice gives the same transcripts, byte for byte (model
  latencies aside).

Each raises ``ConformanceError`` saying what broke.
"""

from __future__ import annotations

import asyncio
import random
import re
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stagbench.agents.base import Agent, AgentView, Decision, Utterance
from stagbench.agents.llm import ActReply, TalkReply, extract_json
from stagbench.agents.models.base import ChatMessage, GenerateConfig, ModelAPI, OutputSchema
from stagbench.agents.models.model import Model
from stagbench.agents.models.settings import ModelSettings
from stagbench.agents.prompts import TALK_SCHEMA, act_schema
from stagbench.agents.scripted import AlwaysStag
from stagbench.errors import ModelError, TopologyError
from stagbench.games import Action
from stagbench.records import (
    ActionEvent,
    AdversarySpec,
    AgentSettings,
    Disclosure,
    GameConfig,
    MessageEvent,
    SeatInfo,
    Transcript,
    TrialSpec,
)
from stagbench.runs.compose import Seating
from stagbench.runs.trial import play
from stagbench.topologies import build_topology


class ConformanceError(AssertionError):
    """An extension that breaks the contract of its extension point."""


# -- models --------------------------------------------------------------------------
@dataclass(frozen=True)
class Failure:
    """One way to make the provider's next call fail, and whether a retry may help.

    ``arrange`` sets it up (e.g. tells a loopback server to answer 429 next)."""

    label: str
    arrange: Callable[[], object]
    retryable: bool


_MESSAGES = [
    ChatMessage(role="system", content="You play a repeated Stag Hunt. Reply with JSON only."),
    ChatMessage(role="user", content="Round 1. Choose stag or hare."),
]


def _leaks(text: str, secret: str, min_len: int = 8) -> bool:
    """Whether ``text`` holds ``secret`` or any stretch of ``min_len`` characters of it."""
    if not secret:
        return False
    n = min(min_len, len(secret))
    return any(secret[i : i + n] in text for i in range(len(secret) - n + 1))


async def check_model_api(
    api: ModelAPI,
    *,
    failures: Sequence[Failure] = (),
    secret: str | None = None,
    config: GenerateConfig | None = None,
) -> None:
    """Hold one provider API to the ``ModelAPI`` contract (see the module docstring)."""
    cfg = config or GenerateConfig(temperature=0.0, max_tokens=120, seed=1, timeout_s=30)
    schemas: list[tuple[OutputSchema, type[TalkReply] | type[ActReply]]] = [
        (TALK_SCHEMA, TalkReply),
        (act_schema(True), ActReply),
        (act_schema(False), ActReply),
    ]
    for schema, reply in schemas:
        out = await api.generate(_MESSAGES, cfg, schema)
        if not isinstance(out.text, str):
            raise ConformanceError(f"{api.name}: reply text is {type(out.text).__name__}")
        try:
            data = extract_json(out.text)
            reply.model_validate(data)
        except ValueError as exc:
            raise ConformanceError(
                f"{api.name}: the reply does not honour the {schema.name!r} schema: {exc} "
                f"(reply {out.text[:120]!r})"
            ) from exc
        extra = set(data) - set(schema.json_schema["properties"])
        if extra:
            raise ConformanceError(f"{api.name}: keys outside the schema: {sorted(extra)}")
        if out.input_tokens < 0 or out.output_tokens < 0:
            raise ConformanceError(f"{api.name}: negative token counts")
    secret = secret if secret is not None else (api.secret or "")
    # Errors as a run meets them: through the Model wrapper that owns retries and redaction
    # (retries off, so each failure surfaces once, with its retryable flag).
    # It knows the key the API declares (``api.secret``), as the model pool does.
    wrapped = Model(api, ModelSettings(max_retries=0))
    for failure in failures:
        failure.arrange()
        try:
            await wrapped.generate(_MESSAGES, cfg, TALK_SCHEMA)
        except ModelError as exc:
            if exc.retryable != failure.retryable:
                raise ConformanceError(
                    f"{api.name}: {failure.label} should be "
                    f"{'retryable' if failure.retryable else 'final'}, got "
                    f"retryable={exc.retryable}"
                ) from exc
            if _leaks(str(exc), secret):
                raise ConformanceError(
                    f"{api.name}: the error text of {failure.label} holds the API key"
                ) from exc
        except Exception as exc:
            raise ConformanceError(
                f"{api.name}: {failure.label} raised {type(exc).__name__}, not ModelError"
            ) from exc
        else:
            raise ConformanceError(f"{api.name}: {failure.label} did not fail")
    await api.aclose()
    await api.aclose()


# -- agents --------------------------------------------------------------------------
def _probe_trial(config: GameConfig, topology: str) -> TrialSpec:
    return TrialSpec(
        trial_id="conformance",
        seed=1,
        repetition=0,
        condition="base",
        game=config,
        models=("agent-under-test",),
        topology=topology,
        disclosure=Disclosure.EXPLICIT,
        adversary=AdversarySpec(kind="none"),
        agents=AgentSettings(),
    )


class _Checked:
    """Passes the calls on to the agent under test and checks each answer's shape."""

    def __init__(self, inner: Agent, name: str) -> None:
        self.inner, self.name = inner, name

    async def speak(self, view: AgentView) -> Utterance:
        u = await self.inner.speak(view)
        if not isinstance(u, Utterance):
            raise ConformanceError(f"{self.name}: speak returned {type(u).__name__}")
        if u.text is not None and not isinstance(u.text, str):
            raise ConformanceError(f"{self.name}: message text is {type(u.text).__name__}")
        if u.parse_failed and u.text:
            raise ConformanceError(f"{self.name}: a failed talk reply still carries a message")
        self._calls(u.calls, "talk")
        return u

    async def act(self, view: AgentView) -> Decision:
        d = await self.inner.act(view)
        if not isinstance(d, Decision):
            raise ConformanceError(f"{self.name}: act returned {type(d).__name__}")
        if d.action is not None and not isinstance(d.action, Action):
            raise ConformanceError(f"{self.name}: action {d.action!r} is not an Action")
        if d.action is None and not d.parse_failed:
            raise ConformanceError(
                f"{self.name}: no action without a recorded parse failure (never a silent hole)"
            )
        if d.action is not None and d.parse_failed:
            raise ConformanceError(f"{self.name}: an action and a parse failure at once")
        self._calls(d.calls, "act")
        return d

    def _calls(self, calls: Sequence[object], purpose: str) -> None:
        for c in calls:
            if getattr(c, "purpose", None) != purpose:
                raise ConformanceError(
                    f"{self.name}: a {purpose} reply recorded a non-{purpose} call"
                )


async def _play_once(make_agent: Callable[[random.Random], Agent], name: str) -> Transcript:
    config = GameConfig(n_players=4, rounds=3, talk_phases=1)
    trial = _probe_trial(config, "ring")
    topo = build_topology(trial.topology, config.n_players)
    agents: list[Agent] = [_Checked(make_agent(random.Random(7)), name)]
    agents += [AlwaysStag() for _ in range(config.n_players - 1)]
    seats = [SeatInfo(seat=s, model=name if s == 0 else "scripted/always-stag", role="honest")
             for s in range(config.n_players)]  # fmt: skip
    return await play(trial, "conformance", Seating(seats=seats, agents=agents, topology=topo))


_LATENCY = re.compile(r'"latency_s":[0-9.e+-]+')


def _normal(text: str) -> str:
    return _LATENCY.sub('"latency_s":0', text)


async def check_agent(make_agent: Callable[[random.Random], Agent], name: str = "agent") -> None:
    """Play ``make_agent(rng)`` in seat 0 of a 3-round, 4-player ring game (the rest
    always hunt stag) through the real trial loop, twice from the same seed."""
    first = await _play_once(make_agent, name)
    second = await _play_once(make_agent, name)
    acts = [e for e in first.events if isinstance(e, ActionEvent) and e.seat == 0]
    if len(acts) != 3:
        raise ConformanceError(f"{name}: {len(acts)} actions in 3 rounds")
    said = [e for e in first.events if isinstance(e, MessageEvent) and e.sender == 0]
    if len(said) != 3:
        raise ConformanceError(f"{name}: {len(said)} talk turns in 3 rounds")
    if _normal(first.to_jsonl()) != _normal(second.to_jsonl()):
        raise ConformanceError(
            f"{name}: the same seed played differently twice (randomness must come from the "
            "generator it is given, never from global state)"
        )


# -- topologies ----------------------------------------------------------------------
def check_topology(spec: str, sizes: Sequence[int] = range(2, 9)) -> None:
    """Build ``spec`` (e.g. ``ring`` or ``star(hub=1)``) at every size in ``sizes``."""
    built = 0
    for n in sizes:
        try:
            topo = build_topology(spec, n, share=False)
        except TopologyError:
            continue  # a size the family cannot take is refused clearly: that is allowed
        except Exception as exc:
            raise ConformanceError(
                f"topology {spec!r} at n={n} raised {type(exc).__name__}, not TopologyError: {exc}"
            ) from exc
        built += 1
        again = build_topology(spec, n, share=False)
        if topo.edges() != again.edges():
            raise ConformanceError(f"topology {spec!r} at n={n} differs between two builds")
        for s in range(n):
            for r in topo.receivers(s):
                if not 0 <= r < n or r == s:
                    raise ConformanceError(f"topology {spec!r}: seat {s} reaches {r}")
                if s not in topo.senders(r):
                    raise ConformanceError(
                        f"topology {spec!r}: {s} reaches {r} but {r} does not hear {s}"
                    )
            view = topo.view(s, Disclosure.EXPLICIT)
            if view is None or view.can_reach != topo.receivers(s):
                raise ConformanceError(f"topology {spec!r}: explicit view of {s} is wrong")
            if topo.view(s, Disclosure.SILENT) is not None:
                raise ConformanceError(f"topology {spec!r}: silent disclosure tells something")
        if sorted(topo.edges()) != sorted((u, v) for u in range(n) for v in topo.receivers(u)):
            raise ConformanceError(f"topology {spec!r}: edges() disagrees with routing")
    if not built:
        raise ConformanceError(f"topology {spec!r} could not be built at any of {list(sizes)}")


# -- whole runs ----------------------------------------------------------------------
def seed_test(spec_text: str, *, concurrency: int = 4) -> int:
    """Run a spec twice into fresh folders; every transcript must match byte for byte
    (model-call latencies aside). Returns how many transcripts were compared."""
    from stagbench.agents.models.pool import ModelPool
    from stagbench.runs.orchestrator import run_trials
    from stagbench.runs.spec import parse_spec
    from stagbench.runs.store import RunStore

    spec = parse_spec(spec_text)
    trials = spec.trials()

    async def once(out: Path) -> dict[str, str]:
        store = RunStore(out)
        store.open(spec, spec_text, trials)
        pool = ModelPool(spec.model_settings, cache_dir=None)
        try:
            summary = await run_trials(spec, trials, store, pool=pool, concurrency=concurrency)
        finally:
            await pool.aclose()
        if summary.failed or not summary.finished:
            raise ConformanceError(f"seed_test: the run did not finish: {summary.errors}")
        return {p.name: _normal(p.read_text(encoding="utf-8")) for p in store.transcript_paths()}

    with tempfile.TemporaryDirectory() as tmp:
        a = asyncio.run(once(Path(tmp) / "a"))
        b = asyncio.run(once(Path(tmp) / "b"))
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    if differ:
        raise ConformanceError(f"seed_test: {len(differ)} transcripts differ, e.g. {differ[0]}")
    return len(a)


def run_sync(coro: Awaitable[None]) -> None:
    """Run one of the async checks from synchronous code."""

    async def _wrap() -> None:
        await coro

    asyncio.run(_wrap())


__all__ = [
    "ConformanceError",
    "Failure",
    "check_agent",
    "check_model_api",
    "check_topology",
    "run_sync",
    "seed_test",
]
