"""A registry of lazy provider factories keyed by the ``provider`` part of ``provider/model``.

Registering a provider imports nothing heavy: each factory imports its SDK when a model
of that provider is first built, and a missing optional package becomes a
``MissingExtraError`` naming the pip extra.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from agents.models.base import ModelAPI
from agents.models.settings import ModelSettings
from stagbench.errors import ModelNotFoundError

# (model part of the string, settings) -> provider API
Factory = Callable[[str, ModelSettings], ModelAPI]


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

    def status(self) -> str:
        """Whether it can be used here, and if not, what is missing."""
        import os

        missing = [
            f"pip install 'stagbench[{extra}]'"
            for module, extra in self.needs
            if importlib.util.find_spec(module) is None
        ]
        if missing:
            return "needs " + ", ".join(missing)
        if self.key_env and not os.environ.get(self.key_env):
            return f"needs {self.key_env}"
        return "ready"


PROVIDERS: dict[str, Provider] = {}


def modelapi(
    name: str,
    *,
    description: str,
    example: str,
    needs: tuple[tuple[str, str], ...] = (),
    key_env: str | None = None,
    parts: int = 1,
) -> Callable[[Factory], Factory]:
    """Register a provider factory under ``name``."""

    def register(factory: Factory) -> Factory:
        PROVIDERS[name] = Provider(name, factory, description, example, needs, key_env, parts)
        return factory

    return register


def _load_builtins() -> None:
    import agents.models.providers  # noqa: F401 - registers the built-in providers


def resolve(model: str) -> tuple[Provider, str]:
    """Split ``provider/model`` and find the provider; raise a clear error if unknown."""
    _load_builtins()
    provider, sep, rest = model.partition("/")
    if not sep or not rest:
        raise ModelNotFoundError(
            f"model string {model!r} must look like provider/model, "
            f"e.g. {', '.join(p.example for p in PROVIDERS.values())}"
        )
    info = PROVIDERS.get(provider)
    if info is None:
        known = ", ".join(sorted([*PROVIDERS, "scripted"]))
        raise ModelNotFoundError(f"unknown provider {provider!r} in {model!r}; known: {known}")
    if info.parts > 1 and len(rest.split("/", info.parts - 1)) < info.parts:
        raise ModelNotFoundError(f"model string {model!r} must look like {info.example}")
    return info, rest


def create_api(model: str, settings: ModelSettings | None = None) -> ModelAPI:
    info, rest = resolve(model)
    api = info.factory(rest, settings or ModelSettings())
    api.name = model
    return api
