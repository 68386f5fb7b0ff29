"""Each provider declares what each of its ``options`` must hold, and a spec giving a value
of another kind or out of range is refused at validation, naming the model, the key, what
it must be and what it is (``latency_s = true`` is not one second). A vLLM model whose
base_url names a running server refuses the options that only start a server, which it
would ignore; with VLLM_BASE_URL's server they are warned about. The declarations are kept in step with the code's reads and with the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagbench.agents.models.registry import PROVIDERS, check_model
from stagbench.agents.models.settings import ModelSettings
from stagbench.cli import app
from stagbench.errors import ModelError

from helpers import assert_refused_before_writing

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
PROVIDER_DIR = ROOT / "agents" / "models" / "providers"
WHERE = "in its model_settings options"
URL = "http://127.0.0.1:9/v1"  # nothing listens there; validation never calls it

BUILTIN = (
    "openai", "anthropic", "openai-api", "vllm", "vllm-offline", "local", "mock", "replay",
    "fault",
)  # fmt: skip

#: (model, its base_url or None, key, a value it must refuse, what the message says it
#: must be, how the message shows what it is)
WRONG = [
    ("mock/stag", None, "latency_s", True, "a number >= 0", "true (a boolean)"),
    ("mock/stag", None, "latency_s", "0.5", "a number >= 0", "'0.5' (a string)"),
    ("mock/stag", None, "latency_s", -0.1, "a number >= 0", "-0.1 (a float)"),
    ("mock/stag", None, "latency_s", float("nan"), "a number >= 0", "nan (a float)"),
    ("mock/stag", None, "replies", "stag", "a non-empty list of strings", "'stag' (a string)"),
    ("mock/stag", None, "replies", [], "a non-empty list of strings", "a list"),
    ("mock/stag", None, "replies", ["a", 1], "a non-empty list of strings", "a list"),
    ("fault/mock/random", None, "error_rate", 1.5, "a number from 0 to 1", "1.5 (a float)"),
    ("fault/mock/random", None, "garbage_rate", False, "a number from 0 to 1", "false (a boolean)"),
    ("fault/mock/random", None, "seed", 1.5, "an integer", "1.5 (a float)"),
    ("fault/mock/random", None, "seed", "3", "an integer", "'3' (a string)"),
    ("fault/mock/random", None, "burst_every", True, "an integer >= 0", "true (a boolean)"),
    ("fault/mock/random", None, "burst_len", -1, "an integer >= 0", "-1 (an integer)"),
    ("fault/mock/random", None, "hang_s", "1h", "a number >= 0", "'1h' (a string)"),
    ("fault/mock/random", None, "inner_options", ["latency_s"], "a table", "a list"),
    ("local/smollm2-135m", None, "n_ctx", 4096.0, "an integer >= 1", "4096.0 (a float)"),
    ("local/smollm2-135m", None, "n_threads", 0, "an integer >= 1", "0 (an integer)"),
    (
        "local/smollm2-135m",
        None,
        "prompt_cache",
        "no",
        "a boolean (true or false)",
        "'no' (a string)",
    ),
    ("local/smollm2-135m", None, "prompt_cache", 0, "a boolean (true or false)", "0 (an integer)"),
    ("vllm/Qwen/Q", None, "max_model_len", "4096", "an integer >= 1", "'4096' (a string)"),
    ("vllm/Qwen/Q", None, "gpu_memory_utilization", 0, "a number > 0 and <= 1", "0 (an integer)"),
    ("vllm/Qwen/Q", None, "gpu_memory_utilization", 1.2, "a number > 0 and <= 1", "1.2 (a float)"),
    ("vllm/Qwen/Q", None, "port", 70000, "an integer from 0 to 65535", "70000 (an integer)"),
    ("vllm/Qwen/Q", None, "command", "vllm serve", "a list", "'vllm serve' (a string)"),
    ("vllm/Qwen/Q", None, "extra_args", {"a": 1}, "a list", "a table"),
    ("vllm/Qwen/Q", None, "startup_timeout_s", 0, "a number > 0", "0 (an integer)"),
    ("vllm/Qwen/Q", URL, "client", 1, "a string", "1 (an integer)"),
    ("vllm-offline/Qwen/Q", None, "engine_args", "x", "a table", "'x' (a string)"),
    ("vllm-offline/Qwen/Q", None, "max_batch", 0, "an integer >= 1", "0 (an integer)"),
    ("openai/gpt-4o-mini", None, "token_param", True, "a string", "true (a boolean)"),
    ("openai-api/box/m", URL, "structured", ["json_schema"], "a string", "a list"),
    ("anthropic/claude-haiku-4-5", None, "structured", 1, "a string", "1 (an integer)"),
]


def _settings(base_url: str | None, options: dict[str, object]) -> ModelSettings:
    return ModelSettings(base_url=base_url, options=options)


@pytest.fixture(autouse=True)
def _no_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in ("VLLM_BASE_URL", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(env, raising=False)


@pytest.mark.parametrize(("model", "url", "key", "value", "expects", "shown"), WRONG)
def test_a_wrong_value_names_the_model_the_key_what_it_must_be_and_what_it_is(
    model: str, url: str | None, key: str, value: object, expects: str, shown: str
) -> None:
    with pytest.raises(ModelError) as caught:
        check_model(model, _settings(url, {key: value}))
    assert str(caught.value) == f"{model}: option {key!r} {WHERE} must be {expects}, not {shown}"


#: values of the declared kind, at the edges of its range, that must be accepted
RIGHT = [
    ("mock/stag", None, {"latency_s": 0}),  # an integer where a number is wanted
    ("mock/stag", None, {"latency_s": 0.25, "replies": ["x"]}),
    ("fault/mock/random", None, {"error_rate": 0, "fatal_rate": 1, "rate_limit_rate": 0.5}),
    ("fault/mock/random", None, {"burst_every": 0, "burst_len": 3, "seed": -4, "hang_s": 0}),
    ("fault/mock/random", None, {"inner_options": {}}),
    ("local/smollm2-135m", None, {"n_ctx": 1, "seed": -1, "prompt_cache": False}),
    ("vllm/Qwen/Q", None, {"port": 0, "gpu_memory_utilization": 1, "command": ["x", "{port}"]}),
    ("vllm/Qwen/Q", None, {"max_model_len": 8192, "startup_timeout_s": 0.5, "extra_args": []}),
    ("vllm-offline/Qwen/Q", None, {"engine_args": {"anything": [1, True]}, "max_batch": 1}),
]


@pytest.mark.parametrize(("model", "url", "options"), RIGHT)
def test_a_value_of_the_declared_kind_is_accepted(
    model: str, url: str | None, options: dict[str, object]
) -> None:
    check_model(model, _settings(url, options))


def test_a_wrapped_models_values_are_checked_where_they_were_given() -> None:
    s = ModelSettings(options={"inner_options": {"latency_s": True}})
    with pytest.raises(ModelError) as caught:
        check_model("fault/mock/random", s)
    assert str(caught.value) == (
        "mock/random: option 'latency_s' in the inner_options of fault/mock/random must be "
        "a number >= 0, not true (a boolean)"
    )


SPEC = """
name = "values"
[game]
rounds = 1
[factors]
models = ["{model}"]
[model_settings.{table}]
{settings}
"""


@pytest.mark.parametrize(
    ("model", "table", "settings", "message"),
    [
        (
            "mock/stag",
            "mock",
            "options = {latency_s = true}",
            "mock/stag: option 'latency_s' in its model_settings options must be a number "
            ">= 0, not true (a boolean)",
        ),
        (
            "vllm/Qwen/Q",
            "vllm",
            f'base_url = "{URL}"\noptions = {{max_model_len = 4096, startup_timeout_s = 900}}',
            "vllm/Qwen/Q: options 'max_model_len', 'startup_timeout_s' would be ignored",
        ),
    ],
)
def test_validate_and_run_refuse_it_before_anything_is_written(
    model: str, table: str, settings: str, message: str, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(model=model, table=table, settings=settings))
    assert_refused_before_writing(spec, tmp_path / "out", message)


# -- vLLM: the options that only start a server, with a server already running ----------

#: what ManagedServerAPI reads only to start a server (not client and structured, which
#: the client of a running server reads too)
SERVER_KEYS = (
    "port", "max_model_len", "gpu_memory_utilization", "extra_args", "startup_timeout_s",
    "command", "log_path",
)  # fmt: skip
SERVER_VALUES: dict[str, object] = {
    "port": 8000, "max_model_len": 4096, "gpu_memory_utilization": 0.5, "extra_args": ["-x"],
    "startup_timeout_s": 60, "command": ["serve", "{model}"], "log_path": "server.log",
}  # fmt: skip


def _reads(source: str) -> set[str]:
    """The option keys a piece of provider code reads."""
    patterns = (
        r"(?:options|\bo)(?:\.get\(|\[)\s*\"(\w+)\"",  # options.get("k"  options["k"]  o.get("k"
        r"\"(\w+)\" in (?:self\.)?options\b",  # "k" in self.options
        r"_p\(\"(\w+)\"\)",  # fault's probabilities
        r"_option\([^,]+, \w+, \"(\w+)\"",  # _option(model, s, "client", ...)
    )
    return {key for p in patterns for key in re.findall(p, source)}


def _class_source(path: Path, name: str) -> str:
    text = path.read_text()
    start = text.index(f"class {name}(")
    end = text.find("\nclass ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_server_keys_are_what_the_managed_server_reads_beyond_the_client() -> None:
    managed = _reads(_class_source(PROVIDER_DIR / "vllm.py", "ManagedServerAPI"))
    assert managed - {"client", "structured"} == set(SERVER_KEYS)
    vllm = PROVIDERS.get("vllm").options or ()
    assert set(vllm) == {"client", "structured", *SERVER_KEYS}


@pytest.mark.parametrize("key", SERVER_KEYS)
def test_a_server_key_with_a_base_url_is_refused_and_named(key: str) -> None:
    with pytest.raises(ModelError) as caught:
        check_model("vllm/Qwen/Q", _settings(URL, {key: SERVER_VALUES[key], "client": "http"}))
    msg = str(caught.value)
    assert msg.startswith(f"vllm/Qwen/Q: option {key!r} would be ignored: its base_url "), msg
    assert "names a running server" in msg and "drop base_url" in msg, msg
    assert "'client'" not in msg, msg


def test_every_ignored_key_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError) as caught:
        check_model("vllm/Qwen/Q", _settings([URL, URL], dict(SERVER_VALUES)))
    keys = ", ".join(repr(k) for k in SERVER_VALUES)
    assert str(caught.value).startswith(f"vllm/Qwen/Q: options {keys} would be ignored: ")


def test_with_vllm_base_url_the_ignored_keys_are_warned_about_not_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same spec may start servers on one machine and use VLLM_BASE_URL's on another
    (experiments/paper.toml): the environment's server is said, not refused."""
    from stagbench.agents.models.registry import model_warnings

    options = {"max_model_len": 4096, "client": "http", "startup_timeout_s": 900}
    monkeypatch.setenv("VLLM_BASE_URL", URL)
    check_model("vllm/Qwen/Q", _settings(None, options))
    said = (
        "vllm/Qwen/Q: options 'max_model_len', 'startup_timeout_s' ignored: VLLM_BASE_URL "
        "names a running server, so none is started here (unset VLLM_BASE_URL to have "
        "stagbench start one)"
    )
    assert model_warnings("vllm/Qwen/Q", _settings(None, options)) == [said]
    wrapped = ModelSettings(options={"inner_options": options})
    assert model_warnings("fault/vllm/Qwen/Q", wrapped) == [said]
    spec = tmp_path / "spec.toml"
    settings = "options = {max_model_len = 4096, startup_timeout_s = 900}"
    spec.write_text(SPEC.format(model="vllm/Qwen/Q", table="vllm", settings=settings))
    res = runner.invoke(app, ["validate", str(spec)])
    assert res.exit_code == 0, res.output
    assert "warning: " + said in " ".join(res.output.split()), res.output
    monkeypatch.delenv("VLLM_BASE_URL")
    assert model_warnings("vllm/Qwen/Q", _settings(None, options)) == []
    assert model_warnings("vllm/Qwen/Q", _settings(URL, {"client": "http"})) == []


def test_a_running_server_still_takes_the_client_options_and_none_takes_the_server_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = {"client": "sdk", "structured": "json_object"}
    check_model("vllm/Qwen/Q", _settings(URL, client))
    monkeypatch.setenv("VLLM_BASE_URL", URL)
    check_model("vllm/Qwen/Q", _settings(None, client))
    monkeypatch.delenv("VLLM_BASE_URL")
    check_model("vllm/Qwen/Q", _settings(None, {**client, **SERVER_VALUES}))


# -- the declarations, the code's reads and the README, in step ------------------------


def test_every_key_the_code_reads_is_declared_and_every_declared_key_is_read() -> None:
    code = "\n".join(p.read_text() for p in sorted(PROVIDER_DIR.glob("*.py")))
    code += (ROOT / "agents" / "models" / "registry.py").read_text()
    read = _reads(code)
    declared = {k for name in BUILTIN for k in PROVIDERS.get(name).options or ()}
    assert read == declared
    # Where one provider's reads sit in a file or class of their own, they match exactly.
    own = {
        "fault": _reads((PROVIDER_DIR / "fault.py").read_text()) | {"inner_options"},
        "local": _reads((PROVIDER_DIR / "local.py").read_text()),
        "vllm-offline": _reads(_class_source(PROVIDER_DIR / "vllm.py", "VLLMOfflineAPI")),
    }
    for name, keys in own.items():
        assert keys == set(PROVIDERS.get(name).options or ()), name


def test_where_the_code_converts_a_value_the_declared_kind_matches() -> None:
    """``int(options.get("k"...))`` must be declared an integer and ``float(...)`` a number
    (a boolean would pass through either, and a float through int() truncated)."""
    code = "\n".join(p.read_text() for p in sorted(PROVIDER_DIR.glob("*.py")))
    converted = re.findall(r"\b(int|float)\((?:self\.|s\.)*(?:options|o)\.get\(\"(\w+)\"", code)
    assert len(converted) >= 10, converted
    kinds: dict[str, set[str]] = {}
    for name in BUILTIN:
        for key, option in (PROVIDERS.get(name).options or {}).items():
            kinds.setdefault(key, set()).add(option.kind)
    for conversion, key in converted:
        assert kinds[key] == {"integer" if conversion == "int" else "number"}, key


def test_the_readme_gives_each_options_kind_as_declared() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in BUILTIN:
        row = re.search(rf"^\| `{re.escape(name)}` \| (.*) \|$", readme, re.M)
        assert row is not None, name
        for key, option in (PROVIDERS.get(name).options or {}).items():
            documented = re.search(rf"`{key}` \(([^):;]*)[):;]", row.group(1))
            assert documented is not None, (name, key)
            assert documented.group(1) == option.doc(), (name, key)
