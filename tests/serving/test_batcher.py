"""MicroBatcher: how requests are grouped into model calls, and what a failing call does."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from medclf.serving.batcher import MicroBatcher


def _run(coro):
    return asyncio.run(coro)


def test_concurrent_images_share_calls_up_to_max_batch_and_keep_their_rows():
    calls: list[int] = []
    threads: set[str] = set()

    def model(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(x))
        threads.add(threading.current_thread().name)
        flat = x.reshape(len(x), -1)[:, :1]  # each row depends on its own image only
        return flat * 2, flat + 100  # (probabilities, embeddings)

    async def main() -> list:
        batcher = MicroBatcher(model, max_batch=4, max_wait_ms=100)
        await batcher.start()
        try:
            images = [np.full((1, 2, 2), i, np.float32) for i in range(10)]
            return await asyncio.gather(*(batcher.submit(x) for x in images))
        finally:
            await batcher.stop()

    answers = _run(main())
    assert [float(a.probabilities[0]) for a in answers] == [2.0 * i for i in range(10)]
    assert [float(a.embedding[0]) for a in answers] == [100.0 + i for i in range(10)]
    assert calls == [4, 4, 2] and sum(a.batch_size == 4 for a in answers) == 8
    assert len(threads) == 1 and next(iter(threads)).startswith("medclf-inference")
    assert all(a.queue_s >= 0 and a.inference_s >= 0 for a in answers)


def test_a_lone_image_waits_at_most_max_wait_ms():
    async def main():
        batcher = MicroBatcher(lambda x: (x[:, 0, 0], None), max_batch=64, max_wait_ms=20)
        await batcher.start()
        try:
            return await asyncio.wait_for(batcher.submit(np.zeros((1, 1, 1), np.float32)), 2)
        finally:
            await batcher.stop()

    answer = _run(main())
    assert answer.batch_size == 1 and 0.015 <= answer.queue_s < 1.0


def test_a_failing_model_call_reaches_every_waiting_request_and_the_next_batch_runs():
    fail = [True]

    def model(x: np.ndarray) -> tuple[np.ndarray, None]:
        if fail.pop(0) if fail else False:
            raise RuntimeError("runtime fell over")
        return x[:, 0, 0], None

    async def main():
        batcher = MicroBatcher(model, max_batch=8, max_wait_ms=50)
        await batcher.start()
        try:
            first = await asyncio.gather(
                *(batcher.submit(np.ones((1, 1, 1), np.float32)) for _ in range(3)),
                return_exceptions=True,
            )
            second = await batcher.submit(np.ones((1, 1, 1), np.float32))
            return first, second
        finally:
            await batcher.stop()

    first, second = _run(main())
    assert all(isinstance(e, RuntimeError) for e in first)
    assert second.probabilities.ravel().tolist() == pytest.approx([1.0])


def test_with_nothing_else_coming_a_lone_image_does_not_wait():
    async def main():
        batcher = MicroBatcher(lambda x: (x[:, 0, 0], None), 64, max_wait_ms=500, coming=lambda: 0)
        await batcher.start()
        try:
            return await batcher.submit(np.zeros((1, 1, 1), np.float32))
        finally:
            await batcher.stop()

    assert _run(main()).queue_s < 0.25  # not the 0.5 s max_wait_ms
