"""Shared helpers for HTTP providers: Retry-After parsing and API key lookup."""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Mapping
from types import ModuleType

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


def sdk_error(model: str, exc: Exception, sdk: ModuleType) -> ModelError:
    """Map an error of the openai or anthropic SDK (same exception layout) to ``ModelError``."""
    if isinstance(exc, sdk.APIStatusError):
        return ModelError(
            f"{model}: HTTP {exc.status_code}: {short(exc.message)}",
            retryable=status_retryable(exc.status_code),
            retry_after=retry_after(exc.response.headers),
        )
    if isinstance(exc, sdk.APITimeoutError | sdk.APIConnectionError):
        return ModelError(f"{model}: {type(exc).__name__}: {exc}", retryable=True)
    return ModelError(f"{model}: malformed response: {short(str(exc))}", retryable=True)


def short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
