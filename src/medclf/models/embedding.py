"""A network that also returns its monitoring embedding (``medclf.embedding``).

The embedding is taken where the classifier head starts (``factory.head_module``), so it is
the same layer for every timm architecture, the MLP head and medclf's own CNN, and the
logits come from the very same forward pass (no second run of the backbone).
"""

from __future__ import annotations

import torch
from torch import nn

from medclf.embedding import projection
from medclf.models.factory import head_module


class WithEmbedding(nn.Module):
    """``model`` -> (logits, embedding); the projection matrix is a buffer sized by one
    probe forward of an ``input_shape`` (C, H, W) image, so an ONNX export holds it as a
    constant."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.model = model
        self.head = head_module(model)
        param = next(model.parameters())
        probe = torch.zeros(1, *input_shape, dtype=param.dtype, device=param.device)
        with torch.inference_mode():
            _, pooled = self._forward(probe)
        matrix = torch.from_numpy(projection(pooled.shape[1]))
        self.register_buffer("projection", matrix.to(param.device), persistent=False)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        captured: list[torch.Tensor] = []
        handle = self.head.register_forward_pre_hook(lambda _, args: captured.append(args[0]))
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        if len(captured) != 1:  # a head called twice (or never) has no single input
            raise RuntimeError(f"the classifier head ran {len(captured)} times in one forward")
        return logits, torch.flatten(captured[0], 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, pooled = self._forward(x)
        return logits, pooled.float() @ self.projection
