"""Registries of the named extension points: topologies, scripted strategies, adversary
kinds and model providers. Each entry is one record holding every fact about it, and the
one helper here does what every extension point needs: parse ``name(key=value, ...)``,
look the name up, and turn bad parameters into a clear error of the point's own kind.

Outside packages add entries through the ``stagbench`` entry-point group; each entry
point names a module (registering on import) or a function (called with no arguments)::

    [project.entry-points.stagbench]
    my_plugin = "my_package.stagbench_plugin"

Plugins are loaded the first time a name is not found among the built-in entries, or a
registry is listed.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from stagbench.errors import PluginError, StagbenchError

T = TypeVar("T")
R = TypeVar("R")

ENTRY_POINT_GROUP = "stagbench"

_CALL = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(?:\((.*)\))?\s*$", re.S)


def normalise(name: str) -> str:
    """``Tit-For-Tat`` and ``tit_for_tat`` name the same entry."""
    return name.strip().lower().replace("-", "_")


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets, so ``placement=[0,1]`` stays whole."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_call(
    text: str, what: str = "name", error: type[StagbenchError] = StagbenchError
) -> tuple[str, dict[str, Any]]:
    """Split ``name(a=1,b=0.5,c=x)`` into the normalised name and literal keyword arguments
    (a bare word such as ``direction=out`` is a string)."""
    m = _CALL.match(text) if isinstance(text, str) else None
    if not m:
        raise error(f"cannot parse {what} {text!r}: expected NAME or NAME(key=value, ...)")
    name, arg_text = normalise(m.group(1)), (m.group(2) or "").strip()
    params: dict[str, Any] = {}
    if arg_text:
        for part in _split_top_level(arg_text):
            if "=" not in part:
                raise error(
                    f"cannot parse {what} {text!r}: argument {part.strip()!r} is not key=value"
                )
            key, raw = (s.strip() for s in part.split("=", 1))
            if raw.lower() in _TRUTH:  # TOML's and JSON's spelling, as Python's
                params[key] = _TRUTH[raw.lower()]
                continue
            ratio = _RATIO.match(raw)
            if ratio and float(ratio.group(2)) != 0:  # g=1/3, as the README writes it
                params[key] = float(ratio.group(1)) / float(ratio.group(2))
                continue
            try:
                params[key] = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                params[key] = raw
    return name, params


#: bare words read as booleans: ``directed=false`` (a spec is TOML) was the text "false",
#: which every check of the parameter took for true
_TRUTH = {"true": True, "false": False}
#: a fraction of two plain numbers
_RATIO = re.compile(r"^(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)$")


_plugins_loaded = False


def load_plugins() -> None:
    """Import every module (or call every function) of the ``stagbench`` entry-point group,
    once per process. A plugin that fails to load is a ``PluginError`` naming it."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = ep.load()
            if callable(target) and not inspect.ismodule(target):
                target()
        except Exception as exc:
            raise PluginError(
                f"the stagbench plugin {ep.name!r} ({ep.value}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


@functools.lru_cache(maxsize=4096)
def _cached_bind(fn: Callable[..., Any], n_args: int, names: frozenset[str]) -> str | None:
    """Whether ``fn`` takes ``n_args`` positional arguments and the keywords ``names``:
    ``None``, or the ``TypeError`` message binding gives (binding looks at names only)."""
    try:
        inspect.signature(fn).bind(*([None] * n_args), **dict.fromkeys(names))
    except TypeError as exc:
        return str(exc)
    return None


def _bind_error(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str | None:
    """``inspect.signature(fn).bind(*args, **kwargs)``'s complaint, if any, worked out once
    per callable and shape of call (every trial builds its seats through here). Raises
    ``ValueError`` where ``fn`` has no signature to check."""
    try:
        return _cached_bind(fn, len(args), frozenset(kwargs))
    except TypeError:  # a callable that cannot be a cache key: bind it each time
        try:
            inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as exc:
            return str(exc)
        return None


def _annotation_words(param: inspect.Parameter) -> set[str]:
    """The names in a parameter's annotation (``"int | None"``: int, None)."""
    ann = param.annotation
    text = ann.__name__ if isinstance(ann, type) else str(ann)
    return set(re.findall(r"[A-Za-z_]\w*", text))


@functools.lru_cache(maxsize=1024)
def _number_params(fn: Callable[..., Any]) -> frozenset[str]:
    """The parameters of ``fn`` annotated as a number (``int``, ``float``, ``float | None``)
    and not also as a boolean: a spec's ``p=True`` there is a mistake, not 1."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return frozenset()
    out = set()
    for name, param in params.items():
        words = _annotation_words(param)
        if words & {"int", "float"} and "bool" not in words:
            out.add(name)
    return frozenset(out)


def _bool_for_number(fn: Callable[..., Any], kwargs: dict[str, Any]) -> str | None:
    """Which number parameter was given a boolean, in words; None when none was."""
    try:
        numbers = _number_params(fn)
    except TypeError:  # a callable that cannot be a cache key
        numbers = _number_params.__wrapped__(fn)
    for name, value in kwargs.items():
        if type(value) is bool and name in numbers:
            return f"{name} must be a number, not the boolean {value}"
    return None


@functools.lru_cache(maxsize=1024)
def _typed_params(fn: Callable[..., Any]) -> dict[str, tuple[str, bool]]:
    """The parameters of ``fn`` annotated as a boolean alone or a whole number alone
    (``bool``, ``int``, either ``| None``): each one's kind and whether None is allowed."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    out = {}
    for name, param in params.items():
        words = _annotation_words(param)
        kinds = words - {"None", "Optional"}
        if kinds in ({"bool"}, {"int"}, {"float"}, {"int", "float"}):
            kind = "number" if "float" in kinds else kinds.pop()
            out[name] = (kind, bool(words & {"None", "Optional"}))
    return out


def _mistyped(fn: Callable[..., Any], kwargs: dict[str, Any]) -> str | None:
    """Which parameter annotated a boolean was given something else (``relay="no"``), or
    annotated a whole number a fraction (``hub=1.0``, ``k=1.5``: a float seat broke every
    trial, a fractional delay was cut to the next round), in words; None when none was."""
    try:
        typed = _typed_params(fn)
    except TypeError:  # a callable that cannot be a cache key
        typed = _typed_params.__wrapped__(fn)
    for name, value in kwargs.items():
        if name not in typed or (value is None and typed[name][1]):
            continue
        kind = typed[name][0]
        if kind == "bool" and type(value) is not bool:
            return f"{name} must be true or false, not {value!r}"
        if kind == "int" and type(value) is not int:
            return f"{name} must be a whole number, not {value!r}"
        if kind == "number" and type(value) not in (int, float):
            return f"{name} must be a number, not {value!r}"
    return None


class Registry(Generic[T]):
    """Named entries of one extension point. ``what`` names it in messages ("topology"),
    ``error`` is the error class its failures raise."""

    def __init__(
        self,
        what: str,
        error: type[StagbenchError],
        builtins: Callable[[], object] | None = None,
    ) -> None:
        self.what = what
        self.error = error
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._builtins = builtins
        self._builtins_loaded = builtins is None

    def _load_builtins(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            assert self._builtins is not None
            self._builtins()

    def register(self, name: str, entry: T, aliases: tuple[str, ...] = ()) -> T:
        """Add ``entry`` under ``name`` (and its aliases). A later registration of the same
        name replaces the earlier one, so a plugin can override a built-in on purpose."""
        key = normalise(name)
        self._entries[key] = entry
        self._aliases.pop(key, None)
        for alias in aliases:
            self._aliases[normalise(alias)] = key
        return entry

    def _find(self, name: str) -> T | None:
        key = normalise(name)
        key = self._aliases.get(key, key)
        return self._entries.get(key)

    def get(self, name: str) -> T:
        self._load_builtins()
        entry = self._find(name)
        if entry is None:
            load_plugins()
            entry = self._find(name)
        if entry is None:
            raise self.error(f"unknown {self.what} {name!r}; known: {', '.join(self.names())}")
        return entry

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.get(name)
        except StagbenchError:
            return False
        return True

    def names(self) -> list[str]:
        """Every registered name, plugins included, in the ``kebab-case`` specs use."""
        self._load_builtins()
        load_plugins()
        return sorted(k.replace("_", "-") for k in self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        self._load_builtins()
        load_plugins()
        yield from sorted(self._entries.items())

    def aliases_of(self, name: str) -> list[str]:
        key = normalise(name)
        return sorted(a for a, k in self._aliases.items() if k == key)

    def call(
        self, text: str, factory: Callable[[T], Callable[..., R]], *args: Any, **kwargs: Any
    ) -> R:
        """Parse ``name(k=v, ...)``, look the name up, and call ``factory(entry)`` with
        ``args``, the parsed parameters and ``kwargs``. Parameters the callable does not
        take are this registry's error, naming them, not a bare ``TypeError``."""
        name, params = parse_call(text, self.what, self.error)
        fn = factory(self.get(name))
        return self.invoke(text, fn, *args, **params, **kwargs)

    def invoke(self, text: str, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        try:
            problem = _bind_error(fn, args, kwargs)
        except ValueError:  # no signature to check (a builtin): let the call decide
            problem = None
        if problem is None and any(type(v) is bool for v in kwargs.values()):
            problem = _bool_for_number(fn, kwargs)
        if problem is None and kwargs:
            problem = _mistyped(fn, kwargs)
        if problem is not None:
            raise self.error(f"bad parameters for {self.what} {text!r}: {problem}")
        try:
            return fn(*args, **kwargs)
        except StagbenchError:
            raise
        except (TypeError, ValueError) as exc:  # e.g. p="high" where a number is needed
            raise self.error(f"bad parameters for {self.what} {text!r}: {exc}") from exc
