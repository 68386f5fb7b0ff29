"""Typed errors. Each message says what went wrong and what to do about it."""

from __future__ import annotations


class StagbenchError(Exception):
    """Base of every error stagbench raises on purpose."""


class GameError(StagbenchError):
    """An invalid game configuration or an illegal move."""


class TopologyError(StagbenchError):
    """A topology string that does not parse, or a graph that does not fit the players."""


class SpecError(StagbenchError):
    """An experiment spec that is malformed or inconsistent."""


class StrategyError(StagbenchError):
    """An unknown scripted strategy or adversary, or bad parameters for one."""


class ModelNotFoundError(StagbenchError):
    """A model string whose provider is not registered."""


class MissingExtraError(StagbenchError):
    """An optional dependency is needed; the message names the pip extra."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the optional package '{package}'. "
            f"Install it with: pip install 'stagbench[{extra}]'"
        )
        self.package = package
        self.extra = extra


class ModelError(StagbenchError):
    """A model call failed. ``retryable`` tells the retry wrapper whether to try again."""

    def __init__(
        self, message: str, *, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class BudgetExceededError(StagbenchError):
    """A cost limit was reached; the run stops cleanly before spending more."""


class TranscriptError(StagbenchError):
    """A transcript file that is truncated, corrupt, or of an unknown version."""


class StoreError(StagbenchError):
    """The results folder cannot be used (another spec's run, no space, no permission)."""


class PluginError(StagbenchError):
    """A package of the ``stagbench`` entry-point group could not be loaded."""
