"""Shared helpers for HTTP providers: Retry-After parsing, API key lookup, error text."""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Iterable, Mapping
from types import ModuleType

import pydantic

from stagbench.agents.models.safety import cut, redact
from stagbench.errors import ModelError


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def api_key(env: str, required: bool, what: str) -> str | None:
    key = os.environ.get(env)
    if required and not key:
        raise ModelError(f"{what} needs the environment variable {env} to hold an API key")
    return key


def status_retryable(status: int) -> bool:
    return status in (408, 409, 425, 429) or status >= 500


def env_prefix(name: str) -> str:
    """``my-server`` -> ``MY_SERVER`` for ``MY_SERVER_BASE_URL`` / ``MY_SERVER_API_KEY``."""
    return "".join(c if c.isalnum() else "_" for c in name).upper()


def sdk_error(
    model: str, exc: Exception, sdk: ModuleType, secrets: Iterable[str | None] = ()
) -> ModelError:
    """Map an error of the openai or anthropic SDK (same exception layout) to ``ModelError``,
    its text redacted of ``secrets`` before it is cut."""
    if isinstance(exc, sdk.APIStatusError):
        return ModelError(
            f"{model}: HTTP {exc.status_code}: {short(exc.message, secrets)}",
            retryable=status_retryable(exc.status_code),
            retry_after=retry_after(exc.response.headers),
        )
    if isinstance(exc, sdk.APITimeoutError | sdk.APIConnectionError):
        text = short(f"{type(exc).__name__}: {exc}", secrets)
        return ModelError(f"{model}: {text}", retryable=True)
    return ModelError(f"{model}: malformed response: {short(_what(exc), secrets)}", retryable=True)


def _what(exc: Exception) -> str:
    """What is wrong with a reply, in a line: a validation error's fields and messages
    (its text is several lines and a link), else the error's own text."""
    if isinstance(exc, pydantic.ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'reply'}: {e['msg']}" for e in exc.errors()
        )
    return str(exc) or type(exc).__name__


def short(text: str, secrets: Iterable[str | None] = (), limit: int = 300) -> str:
    """Error text for a message: keys redacted first, then cut to ``limit`` characters (a
    cut first could leave a piece of a key that redaction no longer recognises)."""
    return cut(redact(text, secrets), limit)
