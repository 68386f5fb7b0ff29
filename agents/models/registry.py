"""The registry of model providers, keyed by the ``provider`` part of ``provider/model``.

A provider declares every fact about itself in its one registration: how to build its
API, what it needs installed and which key, whether it costs money (and its list prices),
whether its calls share one engine (serial), and how many calls it takes at once by
default. Registering imports nothing heavy: each factory imports its SDK when a model of
that provider is first built, and a missing optional package becomes a
``MissingExtraError`` naming the pip extra.

Two checks run before anything is built or spent (``validate`` and the start of ``run``):
``check_model`` raises for what the spec gets wrong (an unknown mock, a missing replay
source or model file, a bad option, a base URL with credentials), through each
provider's ``check``; ``environment_problems`` lists what this machine lacks (a package, a
key), which ``validate`` reports and ``run`` refuses.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from stagbench.agents.models.base import ModelAPI
from stagbench.agents.models.pricing import FREE, Price
from stagbench.agents.models.settings import ModelSettings
from stagbench.errors import ModelError, ModelNotFoundError
from stagbench.registry import Registry

# (model part of the string, settings) -> provider API
Factory = Callable[[str, ModelSettings], ModelAPI]
# (model part of the string, settings) -> None, raising what building or calling would
Check = Callable[[str, ModelSettings], None]

DEFAULT_CONCURRENCY = 32

#: what an ``options`` value must be: ``number`` takes an integer or a float, never a
#: boolean; ``integer`` takes only an integer; ``table`` and ``list`` check only the outer
#: type (their contents are passed on as they are); ``strings`` is a non-empty list of strings
Kind = Literal["number", "integer", "string", "boolean", "table", "list", "strings"]

_KIND_WORDS: dict[str, tuple[str, str]] = {
    # kind: (with its article, bare)
    "number": ("a number", "number"),
    "integer": ("an integer", "integer"),
    "string": ("a string", "string"),
    "boolean": ("a boolean (true or false)", "boolean"),
    "table": ("a table", "table"),
    "list": ("a list", "list"),
    "strings": ("a non-empty list of strings", "non-empty list of strings"),
}


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def describe_value(value: object) -> str:
    """A spec value as its TOML reads, with its type: ``true (a boolean)``, ``'x' (a string)``."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int):
        return f"{value} (an integer)"
    if isinstance(value, float):
        return f"{value} (a float)"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"{value!r} (a {type(value).__name__})"


@dataclass(frozen=True)
class Option:
    """What one key of a provider's ``options`` table must hold: its kind and, for a number,
    its range (``minimum``, exclusive when ``above``; ``maximum``, inclusive)."""

    kind: Kind
    minimum: float | None = None
    maximum: float | None = None
    above: bool = False

    def doc(self) -> str:
        """Its kind and range, bare: ``number >= 0``, ``integer from 1 to 65535``."""
        words = _KIND_WORDS[self.kind][1]
        return words + self._range()

    def expects(self) -> str:
        """Its kind and range, as a message says it: ``a number >= 0``."""
        return _KIND_WORDS[self.kind][0] + self._range()

    def _range(self) -> str:
        lo, hi = self.minimum, self.maximum
        if lo is not None and hi is not None and not self.above:
            return f" from {_fmt(lo)} to {_fmt(hi)}"
        parts = []
        if lo is not None:
            parts.append(f"{'>' if self.above else '>='} {_fmt(lo)}")
        if hi is not None:
            parts.append(f"<= {_fmt(hi)}")
        return (" " + " and ".join(parts)) if parts else ""

    def fits(self, value: Any) -> bool:
        """Whether ``value`` is of its kind and in its range."""
        if self.kind in ("number", "integer"):
            if isinstance(value, bool) or not isinstance(
                value, int if self.kind == "integer" else (int, float)
            ):
                return False
            if isinstance(value, float) and not math.isfinite(value):
                return False
            if self.minimum is not None and (
                value <= self.minimum if self.above else value < self.minimum
            ):
                return False
            return self.maximum is None or value <= self.maximum
        if self.kind == "string":
            return isinstance(value, str)
        if self.kind == "boolean":
            return isinstance(value, bool)
        if self.kind == "table":
            return isinstance(value, dict)
        if self.kind == "list":
            return isinstance(value, list)
        return bool(value) and isinstance(value, list) and all(isinstance(v, str) for v in value)


@dataclass(frozen=True)
class Provider:
    name: str
    factory: Factory
    description: str
    example: str
    #: (importable module, pip extra) pairs the provider needs
    needs: tuple[tuple[str, str], ...] = ()
    #: env variable that must be set for it to work (None: no key needed)
    key_env: str | None = None
    #: how many parts the model part has (openai-api/<name>/<model> has 2)
    parts: int = 1
    #: runs on your own hardware or is simulated: every call costs nothing
    free: bool = False
    #: calls share one in-process engine: one at a time unless the spec says otherwise
    serial: bool = False
    #: calls in flight per model when the spec sets no max_concurrency
    default_concurrency: int = DEFAULT_CONCURRENCY
    #: list prices by model part (``gpt-4o-mini``), USD per million tokens
    prices: Mapping[str, Price] = field(default_factory=dict)
    #: raises a clear error for a model string or settings a call would fail on, without
    #: building anything (no engine loaded, no connection made)
    check: Check | None = None
    #: what else this machine lacks to use it (a server that does not answer), or None
    probe: Callable[[], str | None] | None = None
    #: env variable with another endpoint; where it is set the default key may not apply
    base_url_env: str | None = None
    #: its model part is itself a model string (``fault/mock/random``)
    wraps: bool = False
    #: (model part, settings) -> what else this machine lacks for that model, in words
    lacks: Callable[[str, ModelSettings], list[str]] | None = None
    #: the keys its ``options`` table may hold, each with what its value must be (a spec
    #: giving another key is refused, so a typo is no silent no-op, and so is a value of
    #: another kind); None: any key (a provider that cannot list them)
    options: Mapping[str, Option] | None = None
    #: (model part, settings) -> what this machine makes of the settings that is allowed but
    #: probably not meant (an option a running server named by the environment ignores), in
    #: words; ``validate`` and ``run`` warn
    warns: Callable[[str, ModelSettings], list[str]] | None = None

    def missing_packages(self) -> list[str]:
        return [
            f"pip install 'stagbench[{extra}]'"
            for module, extra in self.needs
            if importlib.util.find_spec(module) is None
        ]

    def status(self) -> str:
        """Whether it can be used here, and if not, what is missing."""
        missing = self.missing_packages()
        if missing:
            return "needs " + ", ".join(missing)
        if self.key_env and not os.environ.get(self.key_env):
            return f"needs {self.key_env}"
        problem = self.probe() if self.probe else None
        return problem or "ready"

    def price(self, model_part: str) -> Price | None:
        """The list price of one of its models: None when unknown (reported as unpriced)."""
        if self.free:
            return FREE
        return self.prices.get(model_part)

    def concurrency(self, share: int = 1) -> int:
        """Default calls in flight for one of ``share`` worker processes."""
        return 1 if self.serial else max(1, self.default_concurrency // share)


# The built-in providers register when ``stagbench.agents.models`` is imported (it imports
# ``stagbench.agents.models.providers``), before anyone can look one up.
PROVIDERS: Registry[Provider] = Registry("model provider", ModelNotFoundError)


def modelapi(
    name: str,
    *,
    description: str,
    example: str,
    needs: tuple[tuple[str, str], ...] = (),
    key_env: str | None = None,
    parts: int = 1,
    free: bool = False,
    serial: bool = False,
    default_concurrency: int = DEFAULT_CONCURRENCY,
    prices: Mapping[str, Price] | None = None,
    check: Check | None = None,
    probe: Callable[[], str | None] | None = None,
    base_url_env: str | None = None,
    wraps: bool = False,
    lacks: Callable[[str, ModelSettings], list[str]] | None = None,
    options: Mapping[str, Option] | None = None,
    warns: Callable[[str, ModelSettings], list[str]] | None = None,
) -> Callable[[Factory], Factory]:
    """Register a provider factory under ``name``, with every fact about it."""

    def register(factory: Factory) -> Factory:
        PROVIDERS.register(
            name,
            Provider(
                name,
                factory,
                description,
                example,
                needs,
                key_env,
                parts,
                free,
                serial,
                default_concurrency,
                dict(prices or {}),
                check,
                probe,
                base_url_env,
                wraps,
                lacks,
                None if options is None else dict(options),
                warns,
            ),  # fmt: skip
        )
        return factory

    return register


def resolve(model: str) -> tuple[Provider, str]:
    """Split ``provider/model`` and find the provider; raise a clear error if unknown."""
    provider, sep, rest = model.partition("/")
    if not sep or not rest:
        examples = ", ".join(p.example for _, p in PROVIDERS.items())
        raise ModelNotFoundError(
            f"model string {model!r} must look like provider/model, e.g. {examples}"
        )
    try:
        info = PROVIDERS.get(provider)
    except ModelNotFoundError:
        known = ", ".join(sorted([*PROVIDERS.names(), "scripted"]))
        raise ModelNotFoundError(
            f"unknown provider {provider!r} in {model!r}; known: {known}"
        ) from None
    if info.parts > 1 and len(rest.split("/", info.parts - 1)) < info.parts:
        raise ModelNotFoundError(f"model string {model!r} must look like {info.example}")
    return info, rest


def inner_settings(settings: ModelSettings) -> ModelSettings:
    """The settings a wrapping provider (``fault/...``) gives the model it wraps."""
    return ModelSettings(options=dict(settings.options.get("inner_options", {})))


def check_options(
    model: str, info: Provider, settings: ModelSettings, where: str = "its model_settings options"
) -> None:
    """Refuse an option key the provider does not read: a typo (``clinet``) would
    otherwise be a silent no-op. The message names the model, the key, the keys the
    provider accepts and the closest of them; ``where``: where the options were given.
    Refuse as well a value of the wrong kind or out of range (``latency_s = true`` would
    read as one second): the message names the model, the key, what it must be and what
    it is."""
    if info.options is None:
        return
    for key, value in settings.options.items():
        option = info.options.get(key)
        if option is not None:
            if not option.fits(value):
                raise ModelError(
                    f"{model}: option {key!r} in {where} must be {option.expects()}, "
                    f"not {describe_value(value)}"
                )
            continue
        close = difflib.get_close_matches(key, info.options, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        accepted = ", ".join(info.options) if info.options else "none (it takes no options)"
        raise ModelError(
            f"{model}: unknown option {key!r} in {where}{hint}; "
            f"the {info.name} provider accepts: {accepted}"
        )


def check_model(
    model: str, settings: ModelSettings | None = None, where: str = "its model_settings options"
) -> None:
    """Raise the error that building or calling ``model`` would raise for what the spec says
    (not for what this machine lacks: see ``environment_problems``). ``where``: where its
    options were given (a wrapped model's are its wrapper's ``inner_options``)."""
    info, rest = resolve(model)
    s = settings or ModelSettings()
    check_options(model, info, s, where)
    if info.check is not None:
        info.check(rest, s)
    if info.wraps:
        inner = s.options.get("inner_options", {})
        if not isinstance(inner, dict):
            raise ModelError(f"{model}: options.inner_options must be a table of options")
        check_model(rest, inner_settings(s), f"the inner_options of {model}")


def environment_problems(model: str, settings: ModelSettings | None = None) -> list[str]:
    """What this machine lacks to run ``model``: packages, an API key. Empty when none."""
    info, rest = resolve(model)
    s = settings or ModelSettings()
    problems = [f"{model} needs {p}" for p in info.missing_packages()]
    key_env = s.api_key_env or info.key_env
    elsewhere = s.base_url or (info.base_url_env and os.environ.get(info.base_url_env))
    if key_env and not os.environ.get(key_env) and (s.api_key_env or not elsewhere):
        problems.append(f"{model} needs an API key in the environment variable {key_env}")
    if info.lacks is not None:
        problems += [f"{model} needs {p}" for p in info.lacks(rest, s)]
    if info.wraps:
        problems += environment_problems(rest, inner_settings(s))
    return problems


def model_warnings(model: str, settings: ModelSettings | None = None) -> list[str]:
    """What this machine makes of ``model``'s settings that is probably not meant, each
    naming the model. Empty when nothing."""
    info, rest = resolve(model)
    s = settings or ModelSettings()
    out = [f"{model}: {w}" for w in info.warns(rest, s)] if info.warns is not None else []
    if info.wraps:
        out += model_warnings(rest, inner_settings(s))
    return out


def create_api(model: str, settings: ModelSettings | None = None) -> ModelAPI:
    info, rest = resolve(model)
    api = info.factory(rest, settings or ModelSettings())
    api.name = model
    return api


def price_for(model: str, settings: ModelSettings | None = None) -> Price | None:
    """The price of ``model``: the spec's own (``input_per_mtok`` and ``output_per_mtok``),
    else its provider's list price; None when unknown (cost is then reported as unpriced).
    A wrapper's calls are its inner model's (``fault/openai/gpt-4o`` costs what gpt-4o
    does): its price is the inner model's, with the wrapper's ``inner_options``."""
    if settings and settings.input_per_mtok is not None and settings.output_per_mtok is not None:
        return Price(settings.input_per_mtok, settings.output_per_mtok)
    try:
        info, rest = resolve(model)
    except ModelNotFoundError:
        return None
    if info.wraps:
        return price_for(rest, inner_settings(settings or ModelSettings()))
    return info.price(rest)
