"""The fold ensemble of a k-fold cross-validation (``medclf train cv=K``): one network whose
output is the mean of its fold networks' probabilities, so evaluate, export, predict and
serve take it like any single model.

Each fold normalized its images with its own training split's statistics; the ensemble has
one preprocessing record, so every fold receives its input re-normalized inside the graph
(``x * scale + shift`` per channel, exact). The output is ``log(mean softmax)``: its softmax
is the mean probability, and the temperature fitted on the out-of-fold predictions scales it
as it would scale a single model's logits.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from medclf.errors import MedclfError

MAX_FOLDS = 20  # the schema's bound on cv; a checkpoint claiming more is refused


class FoldEnsemble(nn.Module):
    """``K`` networks of one architecture -> log of their mean probability."""

    def __init__(self, folds: Sequence[nn.Module], channels: int) -> None:
        super().__init__()
        if not 2 <= len(folds) <= MAX_FOLDS:
            raise MedclfError(f"a fold ensemble needs 2 to {MAX_FOLDS} networks, not {len(folds)}")
        self.folds = nn.ModuleList(folds)
        self.register_buffer("input_scale", torch.ones(len(folds), channels))
        self.register_buffer("input_shift", torch.zeros(len(folds), channels))
        self.only: int | None = None  # one fold's output alone (out-of-fold predictions)

    def set_normalization(
        self, ensemble: tuple[Sequence[float], Sequence[float]], per_fold: list[tuple[Any, Any]]
    ) -> None:
        """Input normalized with ``ensemble`` (mean, std) -> what fold ``k`` was trained on,
        normalized with ``per_fold[k]``: ``(x * s0 + m0 - mk) / sk``."""
        m0, s0 = (torch.tensor(v, dtype=torch.float64) for v in ensemble)
        for k, (mean, std) in enumerate(per_fold):
            mk, sk = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
            self.input_scale[k] = (s0 / sk).float()
            self.input_shift[k] = ((m0 - mk) / sk).float()

    def get_classifier(self) -> nn.Module:
        """The first fold's head: where the monitoring embedding is read
        (``factory.head_module``); every fold's head input has the same size."""
        return self.folds[0].get_classifier()

    def _fold_log_probs(self, k: int, x: torch.Tensor) -> torch.Tensor:
        scale = self.input_scale[k].to(x.dtype).view(1, -1, 1, 1)
        shift = self.input_shift[k].to(x.dtype).view(1, -1, 1, 1)
        return torch.log_softmax(self.folds[k](x * scale + shift).float(), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.only is not None:
            return self._fold_log_probs(self.only, x)
        stacked = torch.stack([self._fold_log_probs(k, x) for k in range(len(self.folds))])
        return torch.logsumexp(stacked, dim=0) - math.log(len(self.folds))

    @contextlib.contextmanager
    def single_fold(self, k: int) -> Iterator[None]:
        """Within the block the ensemble answers with fold ``k`` alone (0-based)."""
        if not 0 <= k < len(self.folds):
            raise MedclfError(f"fold {k + 1}: the ensemble has {len(self.folds)} folds")
        self.only = k
        try:
            yield
        finally:
            self.only = None
