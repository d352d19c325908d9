"""A small configurable CNN for CPU-sized problems (and the demo).

Conv blocks of conv -> [batch norm] -> ReLU -> 2x2 max-pool, one block per entry of
``hidden_dims``, then global pooling (any input size works) and an MLP head.

The global pool is timm's ``SelectAdaptivePool2d``. The default, ``catavgmax``, concatenates
average and max pooling. A finding that covers a few pixels (a nodule, a cavity) barely moves
a global average but sets the maximum, and in the synthetic demo data average pooling alone
stays at chance level while ``catavgmax`` learns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models import register_model
from torch import nn


class CustomCNN(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_chans: int = 1,
        hidden_dims: Sequence[int] = (16, 32, 64),
        kernel_size: int = 3,
        batch_norm: bool = True,
        fc_hidden: int = 64,
        dropout: float = 0.2,
        global_pool: str = "catavgmax",
    ) -> None:
        super().__init__()
        if not hidden_dims:
            raise ValueError("custom_cnn needs at least one entry in model.hidden_dims")
        if kernel_size % 2 == 0:
            raise ValueError("custom_cnn model.kernel_size must be odd (keeps spatial alignment)")
        layers: list[nn.Module] = []
        prev = in_chans
        for width in hidden_dims:
            layers.append(
                nn.Conv2d(prev, width, kernel_size, padding=kernel_size // 2, bias=not batch_norm)
            )
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            prev = width
        self.features = nn.Sequential(*layers)
        self.pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        prev *= self.pool.feat_mult()
        head: list[nn.Module] = []
        if fc_hidden:
            head += [nn.Dropout(dropout), nn.Linear(prev, fc_hidden), nn.ReLU(inplace=True)]
            prev = fc_hidden
        head += [nn.Dropout(dropout), nn.Linear(prev, num_classes)]
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))

    def get_classifier(self) -> nn.Module:
        """timm's name for the head (what ``trainable: head`` trains)."""
        return self.head


@register_model
def custom_cnn(pretrained: bool = False, **kwargs: Any) -> CustomCNN:
    """medclf's small CNN in timm's registry, so every architecture is built by the same
    ``timm.create_model`` call. It has no pretrained weights."""
    if pretrained:
        raise ValueError("custom_cnn has no pretrained weights")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)  # timm's factory passes these to every entry point
    return CustomCNN(**kwargs)
