"""One background task on the event loop that hands blocking work to one dedicated thread:
the shape of the micro-batcher (model calls) and of the audit log (database commits)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class ThreadWorker:
    def __init__(self, thread_name: str) -> None:
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)

    def _launch(self, loop_body: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.create_task(loop_body)

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the dedicated thread, one call at a time."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._pool.shutdown(wait=True)
