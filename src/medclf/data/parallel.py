"""Per-image work on a thread pool with one progress bar (tqdm's ``thread_map``).

Threads, not processes: decoding (Pillow, pydicom, numpy) and hashing release the GIL, and
threads share the memory-mapped cache being filled without pickling anything."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def map_images(
    fn: Callable[[Any], T], items: Sequence[Any], desc: str, progress: bool = True
) -> list[T]:
    """``[fn(x) for x in items]`` on up to 8 threads, in order, with a transient progress bar
    on a terminal (``progress=False`` hides it)."""
    from tqdm.contrib.concurrent import thread_map

    return thread_map(
        fn,
        items,
        max_workers=min(8, os.cpu_count() or 1),
        total=len(items),
        desc=desc,
        unit="img",
        disable=None if progress else True,
        leave=False,
    )
