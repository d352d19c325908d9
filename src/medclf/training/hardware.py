"""What the training hardware can do, and how fast: asked once, or timed on the real model."""

from __future__ import annotations

import contextlib
import functools
import math
import time
from pathlib import Path
from typing import Any


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


def probe_step_seconds(
    model: Any, augment: Any, batch: int, shape: tuple[int, int, int], fast: bool = False
) -> float:
    """Seconds of one optimizer step on ``batch`` random tensors of ``shape`` (no image
    decoded): the fastest of five timed steps after one untimed, since other work on the
    machine only ever adds time (the recipe keeps this number: ``probe_cache``). ``fast``:
    bf16 autocast and channels_last memory, as the recipe's fast numerics train."""
    import torch

    device = next(model.parameters()).device
    x = torch.rand(batch, *shape, device=device)
    y = torch.arange(batch, device=device) % 2
    if fast:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    model.train()
    timings = []
    for i in range(6):
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
    model.zero_grad(set_to_none=True)
    return float(min(timings))


def epoch_seconds(step_seconds: float, batch: int, n_train: int, n_val: int) -> float:
    """One epoch of ``n_train`` training and ``n_val`` validation images: validation runs
    forward only (about a third of a training step), plus the EMA copy."""
    return step_seconds * (math.ceil(n_train / batch) + math.ceil(n_val / batch) / 3 * 2)


@functools.cache
def hardware_id(on_gpu: bool) -> str:
    """The kind of hardware a timing belongs to: the CPU model and core count (and the GPU's
    name), with the torch version that ran it."""
    import os
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        cpu = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                    if ln.startswith("model name")), cpu)  # fmt: skip
    threads = torch.get_num_threads()
    gpu = torch.cuda.get_device_name() if on_gpu else "cpu"
    return f"{cpu} | {os.cpu_count()} cores, {threads} threads | {gpu} | torch {torch.__version__}"
