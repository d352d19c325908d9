"""Callbacks and checkpoint I/O that make a run folder trustworthy."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from medclf.atomic import atomic_path, write_text


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temp file and renamed: a kill mid-save never truncates one."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


class EpochMetricsCSV(L.Callback):
    """One row per epoch in ``metrics.csv``: losses, metrics, learning rate, speed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self._t0 = 0.0
        self._train_seconds = 0.0
        self._images = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()
        self._train_seconds = 0.0
        self._images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += len(batch[1])

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Validation inside fit runs before on_train_epoch_end: stop the training clock here
        # so images/s measures training alone.
        if not self._train_seconds:
            self._train_seconds = time.perf_counter() - self._t0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch_seconds = time.perf_counter() - self._t0
        train_seconds = self._train_seconds or epoch_seconds
        row: dict[str, Any] = {"epoch": trainer.current_epoch}
        for key, value in sorted(trainer.callback_metrics.items()):
            row[key] = round(float(value), 6)
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        row["epoch_seconds"] = round(epoch_seconds, 3)
        row["train_seconds"] = round(train_seconds, 3)
        row["train_images_per_s"] = round(self._images / max(train_seconds, 1e-9), 1)
        self.rows.append(row)
        fields = list(dict.fromkeys(k for r in self.rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.path, buf.getvalue())
