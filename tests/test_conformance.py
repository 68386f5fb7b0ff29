"""Every registered provider, strategy, adversary kind and topology passes its extension
point's conformance suite (stagbench.testing), and the suites catch what they must."""

from __future__ import annotations

import random
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stagbench.adversaries import ADVERSARIES, wrap_adversary
from stagbench.agents.base import Agent, AgentView, Decision
from stagbench.agents.llm import LLMAgent
from stagbench.agents.models.base import ModelAPI
from stagbench.agents.models.pool import ModelPool
from stagbench.agents.models.registry import PROVIDERS, create_api
from stagbench.agents.models.settings import ModelSettings
from stagbench.agents.scripted import STRATEGIES, AlwaysStag, ScriptedAgent, make_scripted
from stagbench.errors import ModelError
from stagbench.games import Action
from stagbench.records import AgentSettings
from stagbench.testing import (
    ConformanceError,
    Failure,
    check_agent,
    check_model_api,
    check_topology,
    seed_test,
)
from stagbench.topologies import TOPOLOGIES, topology

from fake_openai import Behaviour, FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-conformance-0123456789abcdefghij"


# -- topologies ----------------------------------------------------------------------
@pytest.mark.parametrize("name", TOPOLOGIES.names())
def test_every_topology_conforms(name: str) -> None:
    kind = TOPOLOGIES.get(name)
    if kind.example is None and name == "graph-file":
        pytest.skip("needs a file: test_custom_graphs checks it on GraphML and edge lists")
    check_topology(kind.example or name)


def test_topology_check_catches_a_broken_builder() -> None:
    import networkx as nx

    @topology("conformance_broken", "seats numbered from one")
    def _broken(n: int) -> nx.Graph:
        return nx.relabel_nodes(nx.cycle_graph(n), {i: i + 1 for i in range(n)})

    with pytest.raises(ConformanceError, match="could not be built"):
        check_topology("conformance_broken")

    @topology("conformance_crash", "a builder that crashes")
    def _crash(n: int) -> nx.Graph:
        raise KeyError("oops")

    with pytest.raises(ConformanceError, match="not TopologyError"):
        check_topology("conformance_crash")

    flips = iter(range(100))

    @topology("conformance_unseeded", "random without a seed, declared pure", pure=True)
    def _unseeded(n: int) -> nx.Graph:  # a new graph at every build: not pure at all
        return nx.path_graph(n) if next(flips) % 2 else nx.cycle_graph(n)

    # the check builds twice for real: a kind declared pure is not let off by the sharing
    with pytest.raises(ConformanceError, match="differs between two builds"):
        check_topology("conformance_unseeded")


# -- agents --------------------------------------------------------------------------
@pytest.mark.parametrize("name", STRATEGIES.names())
async def test_every_scripted_strategy_conforms(name: str) -> None:
    await check_agent(lambda rng: make_scripted(name, rng), f"scripted/{name}")


def _llm(model: str) -> Callable[[random.Random], Agent]:
    pool = ModelPool()

    def make(rng: random.Random) -> Agent:
        return LLMAgent(pool.get(model), 0, AgentSettings(), seed=rng.randrange(2**31))

    return make


@pytest.mark.parametrize("kind", ADVERSARIES.names())
async def test_every_adversary_kind_conforms(kind: str) -> None:
    model_backed = ADVERSARIES.get(kind).model_backed
    inner = _llm("mock/random") if model_backed else (lambda rng: AlwaysStag(rng=rng))

    def make(rng: random.Random) -> Agent:
        return wrap_adversary(kind, {}, inner(rng), 0, rng)

    await check_agent(make, kind)


@pytest.mark.parametrize("model", ["mock/random", "mock/garbage"])
async def test_llm_agent_conforms(model: str) -> None:
    await check_agent(_llm(model), model)


async def test_agent_check_catches_global_randomness_and_silent_holes() -> None:
    class Moody(ScriptedAgent):
        def choose(self, view: AgentView) -> Action:
            return random.choice([Action.STAG, Action.HARE])  # noqa: S311 - the bug on purpose

    random.seed(3)
    with pytest.raises(ConformanceError, match="same seed played differently"):
        for _ in range(5):  # differs on some try with overwhelming probability
            await check_agent(lambda rng: Moody(rng=rng), "moody")

    class Hole(ScriptedAgent):
        async def act(self, view: AgentView) -> Decision:
            return Decision(action=None)

        def choose(self, view: AgentView) -> Action:
            return Action.STAG

    with pytest.raises(ConformanceError, match="silent hole"):
        await check_agent(lambda rng: Hole(rng=rng), "hole")


# -- model providers -----------------------------------------------------------------
@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        server.honour_schema = True
        yield server


def _http_failures(fake: FakeOpenAI) -> list[Failure]:
    def queue(b: Behaviour) -> Callable[[], None]:
        return lambda: fake.script.append(b)

    echo = f'{{"error": {{"message": "bad key {SECRET} given"}}}}'.encode()
    return [
        Failure("HTTP 429", queue(Behaviour(status=429, headers={"retry-after": "0"})), True),
        Failure("HTTP 500", queue(Behaviour(status=500)), True),
        Failure("HTTP 400", queue(Behaviour(status=400)), False),
        Failure("HTTP 401 echoing the key", queue(Behaviour(status=401, raw_body=echo)), False),
        Failure("a malformed body", queue(Behaviour(raw_body=b"{not json")), True),
    ]


def _vllm_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM cannot be installed here: a stand-in for its documented offline interface
    that answers within the requested schema."""
    import json

    class LLM:
        def __init__(self, model: str, **engine_args: object) -> None:
            pass

        def chat(self, convs, sampling_params, use_tqdm):  # type: ignore[no-untyped-def]
            out = types.SimpleNamespace
            replies = []
            for p in sampling_params:
                schema = p.kw["structured_outputs"].json
                reply = {"message": "stag"} if "message" in schema["properties"] else {
                    "action": "stag", **({"reasoning": "r"} if "reasoning" in schema[
                        "properties"] else {})}  # fmt: skip
                replies.append(json.dumps(reply))
            return [
                out(
                    prompt_token_ids=[1], outputs=[out(text=t, token_ids=[1], finish_reason="stop")]
                )
                for t in replies
            ]

    class Params:
        def __init__(self, **kw: object) -> None:
            self.kw = kw

    class Structured:
        def __init__(self, json: dict[str, object]) -> None:
            self.json = json

    sp = types.SimpleNamespace(StructuredOutputsParams=Structured)
    vllm = types.SimpleNamespace(LLM=LLM, SamplingParams=Params, sampling_params=sp)
    monkeypatch.setitem(sys.modules, "vllm", vllm)


async def _provider_case(
    name: str, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> tuple[ModelAPI, list[Failure]]:
    """A working instance of provider ``name`` on this machine, and how to make it fail."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    fake.default = Behaviour(text='{"message": "stag", "reasoning": "r", "action": "stag"}')
    if name == "mock":
        return create_api("mock/stag"), []
    if name == "fault":
        settings = ModelSettings(options={"fatal_rate": 0.0})
        return create_api("fault/mock/hare", settings), []
    if name == "replay":
        recording = sorted((ROOT / "tests" / "golden_llm" / "v2").glob("*.jsonl"))[0]
        return create_api(f"replay/{recording}"), []
    if name == "openai":
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        return create_api("openai/gpt-4o-mini"), _http_failures(fake)
    if name == "openai-api":
        monkeypatch.setenv("CONF_BASE_URL", fake.base_url)
        monkeypatch.setenv("CONF_API_KEY", SECRET)
        return create_api("openai-api/conf/some-model"), _http_failures(fake)
    if name == "vllm":
        monkeypatch.setenv("VLLM_BASE_URL", fake.base_url)
        monkeypatch.setenv("VLLM_API_KEY", SECRET)
        return create_api("vllm/Qwen/Qwen2.5-0.5B-Instruct"), _http_failures(fake)
    if name == "anthropic":
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url.removesuffix("/v1"))
        return create_api("anthropic/claude-haiku-4-5"), _http_failures(fake)[:-1]
    if name == "vllm-offline":
        _vllm_stand_in(monkeypatch)
        return create_api("vllm-offline/Qwen/Qwen2.5-0.5B-Instruct"), []
    if name == "local":
        pytest.importorskip("llama_cpp")
        return create_api("local/smollm2-135m"), []
    raise AssertionError(f"no conformance case for provider {name!r}: add one here")


LOCAL = pytest.mark.local_model


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=LOCAL) if n == "local" else n
        for n in PROVIDERS.names()
        if n != "replay"  # it answers only what it recorded: its own test is below
    ],
)
async def test_every_provider_conforms(
    name: str, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, failures = await _provider_case(name, fake, monkeypatch)
    await check_model_api(api, failures=failures, secret=SECRET)


async def test_replay_conforms_on_its_own_recording(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay provider answers recorded prompts with their recorded replies."""
    from stagbench.records import ModelCallEvent, read_transcript

    path = sorted((ROOT / "tests" / "golden_llm" / "v2").glob("*.jsonl"))[0]
    t = read_transcript(path)
    api, _ = await _provider_case("replay", fake, monkeypatch)
    call = next(e for e in t.events if isinstance(e, ModelCallEvent))
    from stagbench.agents.models.base import GenerateConfig

    out = await api.generate(t.full_messages(call), GenerateConfig(), None)
    assert out.text == call.call.raw
    with pytest.raises(ModelError, match="not recorded"):
        await api.generate(t.full_messages(call)[:1], GenerateConfig(), None)
    await api.aclose()
    await api.aclose()


async def test_model_check_catches_ignored_schemas_leaks_and_wrong_retry_flags(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConformanceError, match="does not honour"):
        await check_model_api(create_api("mock/garbage"))

    inner = create_api("mock/stag")

    class Leaky(ModelAPI):
        """Answers well, but its errors echo a key it never declared as its secret."""

        name = "leaky/x"
        fail = False

        async def generate(self, messages, config, schema=None):  # type: ignore[no-untyped-def]
            if self.fail:
                raise ModelError(f"denied for key {SECRET[:12]}", retryable=False)
            return await inner.generate(messages, config, schema)

    leaky = Leaky()
    arm = Failure("a denial", lambda: setattr(leaky, "fail", True), False)
    with pytest.raises(ConformanceError, match="holds the API key"):
        await check_model_api(leaky, failures=[arm], secret=SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    api = create_api("openai/gpt-4o-mini")
    wrong = [Failure("HTTP 400 claimed retryable", lambda: fake.script.append(
        Behaviour(status=400)), True)]  # fmt: skip
    fake.default = Behaviour(text='{"message": "stag", "reasoning": "r", "action": "stag"}')
    with pytest.raises(ConformanceError, match="should be retryable"):
        await check_model_api(api, failures=wrong)


def test_every_provider_has_a_case() -> None:
    """A provider added without a conformance case fails here, not silently."""
    source = Path(__file__).read_text()
    for name in PROVIDERS.names():
        assert f'name == "{name}"' in source, name


# -- whole runs ----------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["golden/golden.toml", "golden_llm/golden_llm.toml"])
def test_seed_test_on_the_golden_specs(spec: str) -> None:
    text = (ROOT / "tests" / spec).read_text()
    assert seed_test(text) > 0
