"""Callbacks and checkpoint I/O that make a run folder trustworthy and resumable."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, RichProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO

from medclf.atomic import atomic_path, write_text

log = logging.getLogger("medclf")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temp file and renamed: a kill mid-save never truncates one."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


class RNGState(L.Callback):
    """Saves the Python, NumPy and torch (CPU and CUDA) random states with every checkpoint and
    restores them on resume, so the epochs after a resume draw the same shuffles, augmentations
    and dropout masks as an uninterrupted run (Lightning 2 does not checkpoint them). Stored as
    plain types and tensors so checkpoints still load with ``weights_only=True``."""

    def state_dict(self) -> dict[str, Any]:
        import random

        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        import random

        import numpy as np

        if "python" not in state_dict:
            return
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class StageEarlyStopping(EarlyStopping):
    """Early stopping that respects stages: off in stages that disable it, patience counted
    within the stage, and in a stage that is not the last it ends the stage, not the run."""

    def _run_early_stopping_check(self, trainer: L.Trainer) -> None:
        module = trainer.lightning_module
        if not module.stage.early_stopping:
            return
        was_stopping = trainer.should_stop
        super()._run_early_stopping_check(trainer)
        if trainer.should_stop and not was_stopping and not module.is_last_stage:
            trainer.should_stop = False
            module.advance_requested = True
            log.info(
                "early stopping ends stage '%s' at epoch %d",
                module.stage.name,
                trainer.current_epoch,
            )

    def on_stage_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.wait_count = 0
        self.stopped_epoch = 0
        inf = torch.tensor(torch.inf)
        self.best_score = inf if self.mode == "min" else -inf


class EpochMetricsCSV(L.Callback):
    """One row per epoch in ``metrics.csv`` and every logger: losses, metrics, stage, learning
    rate(s), speed (images/s, epoch time) and machine load (CPU, RAM, GPU when used)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self._t0 = 0.0
        self._train_seconds = 0.0
        self._images = 0
        self._lrs: dict[str, float] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # On resume keep the rows of the epochs the checkpoint covers (a killed run may have
        # written one more row after its last checkpoint; that epoch runs again).
        if trainer.current_epoch > 0 and self.path.is_file():
            with self.path.open(newline="", encoding="utf-8") as fh:
                self.rows = [
                    {k: _number(v) for k, v in row.items() if v != ""}
                    for row in csv.DictReader(fh)
                    if int(row["epoch"]) < trainer.current_epoch
                ]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import psutil

        psutil.cpu_percent(interval=None)  # starts the CPU-usage interval for this epoch
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._t0 = time.perf_counter()
        self._train_seconds = 0.0
        self._images = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:  # the rates this epoch starts with (a new stage's optimizer is set)
            self._lrs = {
                f"lr/{g.get('name', 'all')}": float(g["lr"])
                for g in trainer.optimizers[0].param_groups
            }

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
        perf: dict[str, float] = {
            "perf/train_images_per_s": round(self._images / max(train_seconds, 1e-9), 1),
            "perf/epoch_seconds": round(epoch_seconds, 3),
            "perf/train_seconds": round(train_seconds, 3),
            **_machine_load(pl_module.device),
        }
        perf.update(self._lrs)
        # this process's own speed and load: rank 0's under DDP, which alone writes the row
        pl_module.log_dict(perf, on_step=False, on_epoch=True, rank_zero_only=True)
        row: dict[str, Any] = {"epoch": trainer.current_epoch, "stage": pl_module.stage.name}
        for key, value in sorted(trainer.callback_metrics.items()):
            row[key] = round(float(value), 6)
        row.update(perf)
        self.rows.append(row)
        if not trainer.is_global_zero:
            return
        fields = list(dict.fromkeys(k for r in self.rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.path, buf.getvalue())


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text else value


def _machine_load(device: torch.device) -> dict[str, float]:
    import psutil

    load = {
        "sys/cpu_percent": float(psutil.cpu_percent(interval=None)),
        "sys/ram_percent": float(psutil.virtual_memory().percent),
        "sys/process_rss_gb": round(psutil.Process().memory_info().rss / 1e9, 3),
    }
    if device.type == "cuda":
        load["sys/gpu_mem_peak_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
        # Utilization needs nvidia-ml-py; memory alone is still reported without it.
        with contextlib.suppress(Exception):
            load["sys/gpu_util_percent"] = float(torch.cuda.utilization(device))
    return load


class ProgressBar(RichProgressBar):
    """Lightning's rich bar without "v_num" (the tail of a tracker's run id, noise here)."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
