"""What the training hardware can do, and how fast: asked once, or timed on the real model."""

from __future__ import annotations

import contextlib
import functools
import math
import time
from typing import Any

import numpy as np


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX512-BF16 or AMX tiles).

    Elsewhere PyTorch emulates bf16 on the CPU and mixed precision is slower than 32-bit, so
    it is only worth asking for here. torch exposes the check only as private helpers; a
    torch without them answers no (32-bit, the safe choice)."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(bool(getattr(torch.cpu, name)()) for name in checks if hasattr(torch.cpu, name))
    except RuntimeError:
        return False


def probe_seconds_per_epoch(
    model: Any,
    augment: Any,
    batch: int,
    shape: tuple[int, int, int],
    n_train: int,
    n_val: int,
    fast: bool = False,
) -> float:
    """Seconds for one epoch of ``n_train`` training and ``n_val`` validation images, from a
    few timed optimizer steps on random tensors of the planned shape (no image decoded).
    ``fast``: bf16 autocast and channels_last memory, as the recipe's fast numerics train."""
    import torch

    device = next(model.parameters()).device
    x = torch.rand(batch, *shape, device=device)
    y = torch.arange(batch, device=device) % 2
    if fast:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    model.train()
    timings = []
    for i in range(6):  # five timed steps: their median is stable to a few percent
        start = time.perf_counter()
        inp = augment(x) if augment is not None else x
        if fast:
            inp = inp.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16) if fast else contextlib.nullcontext()
        )
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(inp), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step pays for allocations and kernel selection
            timings.append(time.perf_counter() - start)
    step = float(np.median(timings))
    model.zero_grad(set_to_none=True)
    # validation runs forward only (about a third of a training step), plus the EMA copy
    return step * (math.ceil(n_train / batch) + math.ceil(n_val / batch) / 3 * 2)
