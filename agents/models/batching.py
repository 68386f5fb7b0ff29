"""Gather concurrent requests into batches for engines that run many prompts in one call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Requests submitted while a batch runs (or within ``window_s``) go into the next one.

    ``run`` is blocking (an inference engine) and runs in a worker thread; it gets a
    list of requests and returns one result per request, in order.
    """

    def __init__(
        self, run: Callable[[list[T]], list[R]], max_batch: int = 256, window_s: float = 0.005
    ) -> None:
        self.run = run
        self.max_batch = max_batch
        self.window_s = window_s
        self.pending: list[tuple[T, asyncio.Future[R]]] = []
        self.batch_sizes: list[int] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self.pending.append((item, fut))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self.pending:
            await asyncio.sleep(self.window_s)  # let the rest of the round arrive
            batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
            self.batch_sizes.append(len(batch))
            try:
                results = await asyncio.to_thread(self.run, [item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"engine returned {len(results)} results for {len(batch)}")
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), res in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(res)
