"""Each provider declares the ``options`` keys it reads; a spec giving any other key (a
typo such as ``clinet``) is refused at validation, not silently ignored (hard20 1)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from stagbench.agents.models.registry import PROVIDERS, check_model, check_options
from stagbench.agents.models.settings import ModelSettings
from stagbench.errors import ModelError

from helpers import assert_refused_before_writing

if TYPE_CHECKING:
    from stagbench.agents.models.registry import Option


#: the providers stagbench ships: each must say which option keys it takes
BUILTIN = (
    "openai", "anthropic", "openai-api", "vllm", "vllm-offline", "local", "mock", "replay",
    "fault",
)  # fmt: skip

#: (model, a misspelt option, the close match the message offers, or None)
TYPOS = [
    ("mock/stag", "clinet", None),
    ("mock/stag", "latency", "latency_s"),
    ("openai/gpt-4o-mini", "structred", "structured"),
    ("anthropic/claude-haiku-4-5", "structure", "structured"),
    ("local/smollm2-135m", "n_cxt", "n_ctx"),
    ("vllm/Qwen/Qwen2.5-0.5B-Instruct", "max_model_length", "max_model_len"),
    ("vllm-offline/Qwen/Qwen2.5-0.5B-Instruct", "engine_arg", "engine_args"),
    ("replay/no/such/run", "latency_s", None),
    ("fault/mock/random", "error_rat", "error_rate"),
]


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_provider_declares_its_options(name: str) -> None:
    assert PROVIDERS.get(name).options is not None


def fitting(option: Option) -> object:
    """A value of the kind ``option`` declares, in its range."""
    if option.kind in ("number", "integer"):
        low = option.minimum if option.minimum is not None else -3
        value = low + 1 if option.above or low < 0 else low
        return value if option.maximum is None else min(value, option.maximum)
    samples: dict[str, object] = {
        "string": "x", "boolean": False, "table": {}, "list": [], "strings": ["x"],
    }  # fmt: skip
    return samples[option.kind]


@pytest.mark.parametrize("name", BUILTIN)
def test_every_declared_option_is_accepted(name: str) -> None:
    info = PROVIDERS.get(name)
    assert info.options is not None
    given = {key: fitting(option) for key, option in info.options.items()}
    check_options(f"{name}/m", info, ModelSettings(options=given))


@pytest.mark.parametrize(("model", "key", "close"), TYPOS)
def test_an_unknown_option_names_the_model_the_key_and_what_is_accepted(
    model: str, key: str, close: str | None
) -> None:
    info = PROVIDERS.get(model.split("/", 1)[0])
    with pytest.raises(ModelError) as caught:
        check_model(model, ModelSettings(options={key: "x"}))
    msg = str(caught.value)
    assert msg.startswith(f"{model}: unknown option {key!r}"), msg
    assert f"the {info.name} provider accepts: " in msg
    assert all(k in msg for k in info.options or ()), msg
    if close is None:
        assert "did you mean" not in msg
    else:
        assert f"(did you mean {close!r}?)" in msg


def test_a_wrapped_models_options_are_checked_where_they_were_given() -> None:
    s = ModelSettings(options={"seed": 1, "inner_options": {"latncy_s": 0.1}})
    with pytest.raises(ModelError, match=re.escape(
        "mock/random: unknown option 'latncy_s' in the inner_options of fault/mock/random "
        "(did you mean 'latency_s'?)"
    )):  # fmt: skip
        check_model("fault/mock/random", s)
    check_model("fault/mock/random", ModelSettings(options={"inner_options": {"latency_s": 0}}))


SPEC = """
name = "typo"
[game]
rounds = 1
[factors]
models = ["{model}"]
{settings}
"""

#: (the model, its settings table, what validate and run must say)
CASES = {
    "the red team's typo": (
        "mock/stag",
        '[model_settings.mock]\noptions = {clinet = "http"}',
        "mock/stag: unknown option 'clinet' in its model_settings options; "
        "the mock provider accepts: replies, latency_s",
    ),
    "a close match": (
        "openai-api/box/m",
        '[model_settings."openai-api/box/m"]\nbase_url = "http://127.0.0.1:9/v1"\n'
        'options = {clinet = "http"}',
        "openai-api/box/m: unknown option 'clinet' in its model_settings options "
        "(did you mean 'client'?); the openai-api provider accepts: client, structured",
    ),
    "inner options that are not a table": (
        "fault/mock/random",
        "[model_settings.fault]\noptions = {inner_options = 5}",
        "fault/mock/random: option 'inner_options' in its model_settings options must be a "
        "table, not 5 (an integer)",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_and_run_refuse_an_unknown_option(case: str, tmp_path: Path) -> None:
    model, settings, message = CASES[case]
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(model=model, settings=settings))
    assert_refused_before_writing(spec, tmp_path / "out", message)


def test_the_readme_lists_each_providers_options() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name in BUILTIN:
        row = re.search(rf"^\| `{re.escape(name)}` \| (.*) \|$", readme, re.M)
        assert row is not None, name
        options = PROVIDERS.get(name).options or ()
        listed = re.findall(r"`(\w+)`", row.group(1))
        assert [k for k in listed if k in options] == list(options) or not options, name
