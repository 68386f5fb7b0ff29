"""``Slots``: a first-come, first-served concurrency cap with constant-time hand-over.

``asyncio.Semaphore`` (CPython 3.11 and 3.12) wakes a waiter by scanning its queue past
every waiter already woken but not yet run; with a thousand calls queued behind a model's
limit that scan took more CPU than the calls themselves. Here a released slot is handed
straight to the oldest live waiter, so nobody can barge ahead of the queue and a release
costs O(1) (amortised over cancelled waiters, which are skipped once).
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class Slots:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._free = capacity
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_use(self) -> int:
        return self.capacity - self._free

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    def try_acquire(self) -> bool:
        """Take a free slot now if one is free and nobody waits for one (no await)."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            # Cancelled after the slot was handed over but before running: give it on.
            if fut.done() and not fut.cancelled():
                self.release()
            raise

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():  # a cancelled waiter is skipped
                fut.set_result(None)
                return
        if self._free >= self.capacity:
            raise RuntimeError("Slots.release() called more often than acquire()")
        self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
