"""Training losses: cross-entropy (label smoothing, class weights) and focal loss.

Plain cross-entropy with hard labels is torch's ``CrossEntropyLoss``. Soft targets (mixup,
cutmix) and focal loss have no multi-class, class-weighted implementation in torch, timm or
torchvision (torchvision's ``sigmoid_focal_loss`` is binary/multi-label), so ``SoftTargetLoss``
covers them in a few lines: per sample ``-sum_c w_c t_c (1 - p_c)^gamma log p_c``, averaged
with the same weight normalization ``CrossEntropyLoss`` uses (``sum_i sum_c w_c t_ic``), so
gamma=0 with hard one-hot targets equals weighted cross-entropy exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medclf.errors import MedclfError


def class_weights(spec: Any, class_counts: Sequence[int]) -> torch.Tensor | None:
    """``null`` | ``balanced`` (n / (k * count_c), sklearn's rule) | explicit list."""
    if spec is None or spec is False:
        return None
    counts = np.asarray(class_counts, dtype=np.float64)
    if spec == "balanced":
        if (counts == 0).any():
            raise MedclfError("train.loss.class_weights=balanced: a class has no training images")
        return torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)
    values = [float(v) for v in spec]
    if len(values) != len(counts) or min(values) <= 0:
        raise MedclfError(
            f"train.loss.class_weights needs {len(counts)} positive numbers (one per class, in "
            f"class order), got {values}"
        )
    return torch.tensor(values, dtype=torch.float32)


class SoftTargetLoss(nn.Module):
    def __init__(
        self, weight: torch.Tensor | None = None, gamma: float = 0.0, smoothing: float = 0.0
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)
        self.gamma = gamma
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k = logits.shape[1]
        if target.ndim == 1:
            target = F.one_hot(target, k).to(logits.dtype)
            if self.smoothing:
                target = target * (1 - self.smoothing) + self.smoothing / k
        logp = F.log_softmax(logits.float(), dim=1)
        per_class = -target * logp
        if self.gamma:
            per_class = per_class * (1 - logp.exp()).pow(self.gamma)
        if self.weight is not None:
            per_class = per_class * self.weight
            return per_class.sum() / (target * self.weight).sum()
        return per_class.sum(dim=1).mean()


def build_loss(loss_cfg: Any, class_counts: Sequence[int]) -> nn.Module:
    """``train.loss`` (its values checked at compose, ``medclf.schema.Loss``) for these counts."""
    weight = class_weights(loss_cfg.class_weights, class_counts)
    gamma = float(loss_cfg.focal_gamma) if loss_cfg.name == "focal" else 0.0
    smoothing = float(loss_cfg.label_smoothing)
    return SoftTargetLoss(weight=weight, gamma=gamma, smoothing=smoothing)


def hard_target_ce(loss: nn.Module) -> nn.Module | None:
    """torch's own CrossEntropyLoss when the configured loss is exactly that (hard labels)."""
    if isinstance(loss, SoftTargetLoss) and loss.gamma == 0:
        return nn.CrossEntropyLoss(weight=loss.weight, label_smoothing=loss.smoothing)
    return None
