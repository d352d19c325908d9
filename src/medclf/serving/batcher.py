"""Micro-batching: concurrent requests share one model call.

Each request hands its preprocessed image (C x H x W, normalized) to ``submit`` and awaits its
row of probabilities. One collector task takes the first waiting image, then more until
``max_batch`` are gathered or ``max_wait_ms`` has passed since the first, and runs the model
on the stacked batch in a single inference thread (the runtime's own intra-op threads use
the cores; two model calls at once would only contend for them). The event loop never runs
the model, so ``/health`` answers at full load. Written here because neither uvicorn nor
FastAPI batches; Triton/TorchServe do, but would replace the whole service.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from medclf.serving.worker import ThreadWorker


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future
    queued_at: float


@dataclass(frozen=True)
class Answer:
    probabilities: np.ndarray
    queue_s: float  # waiting for the batch to form and the previous batch to finish
    inference_s: float  # the model call of the batch this image was in
    batch_size: int
    embedding: np.ndarray | None = None  # the monitoring embedding, when the model gives one


class MicroBatcher(ThreadWorker):
    def __init__(
        self,
        # N x C x H x W -> (probabilities, embeddings or None): Predictor.predict_embedded
        run_batch: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]],
        max_batch: int,
        max_wait_ms: float,
        on_batch: Callable[[int, float], None] | None = None,
        coming: Callable[[], int] = lambda: 1,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.on_batch = on_batch  # (batch size, seconds) after each model call, for metrics
        # how many images are on their way (being read or decoded): with none coming, waiting
        # for the batch to fill would only add max_wait_ms to a lone request's latency
        self.coming = coming
        self._queue: asyncio.Queue[_Item] | None = None
        super().__init__("medclf-inference")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._launch(self._collect())

    async def exclusive(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` in the inference thread, between batches (Grad-CAM runs the model too)."""
        return await self.in_thread(fn)

    async def submit(self, x: np.ndarray) -> Answer:
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(x, future, time.perf_counter()))
        return await future

    async def _gather(self) -> list[_Item]:
        """The first waiting image, then more until the batch is full or the wait is over."""
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or self.coming() <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _collect(self) -> None:
        while True:
            batch = [item for item in await self._gather() if not item.future.cancelled()]
            if not batch:
                continue
            started = time.perf_counter()
            try:
                probs, embeddings = await self.in_thread(
                    self.run_batch, np.stack([item.x for item in batch])
                )
            except Exception as exc:  # the model's own error reaches each waiting request
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            took = time.perf_counter() - started
            if self.on_batch:
                self.on_batch(len(batch), took)
            for i, item in enumerate(batch):
                if not item.future.done():
                    embedded = None if embeddings is None else embeddings[i]
                    answer = Answer(probs[i], started - item.queued_at, took, len(batch), embedded)
                    item.future.set_result(answer)
