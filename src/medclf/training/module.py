"""The LightningModule: loss, metrics, stages (optimizer + scheduler each) around any backbone."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score

from medclf.data.augment import build_augmentation
from medclf.data.datamodule import to_unit
from medclf.training.losses import SoftTargetLoss, hard_target_ce
from medclf.training.stages import (
    Stage,
    apply_trainable,
    build_optimizer,
    build_scheduler,
    freeze_frozen_norms,
    steps_per_epoch,
)


class Classifier(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        stages: list[Stage],
        loss: SoftTargetLoss,
        augment: dict[str, Any] | None = None,
        mean: tuple[float, ...] = (0.0,),
        std: tuple[float, ...] = (1.0,),
        image_size: int = 64,
        monitor: str = "val/loss",
        monitor_mode: str = "min",
        mixup: dict[str, Any] | None = None,
        ema_decay: float | None = None,
        channels_last: bool = False,
        checkpoint_meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.stages = stages
        self.stage_index = 0
        self.stage_start_epoch = 0
        self.advance_requested = False  # set by stage-aware early stopping
        self.soft_loss = loss
        self.hard_loss = hard_target_ce(loss) or loss
        # Validation loss is plain cross-entropy whatever the training loss: it is the
        # negative log-likelihood of the probabilities evaluate/serve will report, so model
        # selection and calibration judge the same thing.
        self.val_loss = nn.CrossEntropyLoss()
        self.monitor, self.monitor_mode = monitor, monitor_mode
        self.augment = build_augmentation(augment, image_size)
        self.mixup = _build_mixup(mixup, num_classes)
        self.channels_last = channels_last
        # Not persistent: the checkpoint's state_dict stays the model's weights only; the
        # statistics live in the preprocessing record.
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.ema: nn.Module | None = None
        if ema_decay:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(model, decay=float(ema_decay))
            self.ema.requires_grad_(False)
        self.checkpoint_meta = dict(checkpoint_meta or {})
        self.checkpoint_meta["ema"] = self.ema is not None
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_f1 = MulticlassF1Score(num_classes=num_classes, average="macro")
        self.val_auc = MulticlassAUROC(num_classes=num_classes, average="macro")
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        apply_trainable(self.model, self.stage)

    # --- stages ---------------------------------------------------------------------------
    @property
    def stage(self) -> Stage:
        return self.stages[self.stage_index]

    @property
    def is_last_stage(self) -> bool:
        return self.stage_index == len(self.stages) - 1

    def stage_done(self, epochs_completed: int) -> bool:
        return self.advance_requested or (
            epochs_completed - self.stage_start_epoch >= self.stage.epochs
        )

    def on_train_epoch_start(self) -> None:
        epoch = self.current_epoch
        if not self.is_last_stage and self.stage_done(epoch):
            self.stage_index += 1
            self.stage_start_epoch = epoch
            self.advance_requested = False
            # A new stage means new parameter groups: Lightning rebuilds the optimizer and
            # scheduler from configure_optimizers (which also sets what trains).
            self.trainer.strategy.setup_optimizers(self.trainer)
            for cb in self.trainer.callbacks:
                if hasattr(cb, "on_stage_start"):
                    cb.on_stage_start(self.trainer, self)

    def on_train_epoch_end(self) -> None:
        if self.is_last_stage and self.stage_done(self.current_epoch + 1):
            self.trainer.should_stop = True

    # --- forward / steps ------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Batches arrive as compact [0, 1]-scaled integers (or floats); on the device they
        are scaled, augmented (training only) and normalized, all as whole-batch ops."""
        x, y = batch
        x = to_unit(x)
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            x = self.augment(x)
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.mixup is not None:
            if len(y) % 2:  # timm's batch mixup pairs images; drop one from an odd batch
                x, y = x[:-1], y[:-1]
            mixed, soft = self.mixup(x, y)
            logits = self(mixed)
            loss = self.soft_loss(logits, soft)
        else:
            logits = self(x)
            loss = self.hard_loss(logits, y)
        self.train_acc(logits, y)
        self.log(
            "train/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(y),
            sync_dist=True,  # the mean over every DDP rank's images (a no-op in one process)
        )
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Lightning restores each submodule's train/eval flag around validation by itself, so
        # frozen batch-norm layers are put back in eval mode before every training batch.
        if self.stage.trainable != "all":
            freeze_frozen_norms(self.model)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self.ema(x) if self.ema is not None else self(x)
        loss = self.val_loss(logits.float(), y)
        # update(), not forward(): a per-batch value is wasted work, and AUC on a batch that
        # lacks a class is undefined (torchmetrics warns).
        self.val_acc.update(logits, y)
        self.val_f1.update(logits, y)
        self.val_auc.update(logits.float().softmax(1), y)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("val/f1_macro", self.val_f1, on_epoch=True, batch_size=len(y))
        self.log("val/auc_macro", self.val_auc, on_epoch=True, batch_size=len(y))

    # --- optimization ---------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        backbone, head = apply_trainable(self.model, self.stage)
        optimizer = build_optimizer(backbone, head, self.stage)
        accumulate = self.trainer.accumulate_grad_batches if self._trainer else 1
        batches = _train_batches(self.trainer) if self._trainer else 1
        sched = build_scheduler(
            optimizer,
            self.stage,
            steps_per_epoch(batches, accumulate),
            self.monitor,
            self.monitor_mode,
        )
        if sched is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": sched}

    # --- checkpoints ----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Makes a checkpoint self-describing (architecture, classes, preprocessing) with plain
        # types only, so it loads with torch.load(weights_only=True).
        checkpoint["medclf"] = self.checkpoint_meta
        checkpoint["medclf_stage"] = {
            "index": self.stage_index,
            "start_epoch": self.stage_start_epoch,
            "advance_requested": self.advance_requested,
            "stages": [asdict(s) for s in self.stages],
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Runs before configure_optimizers on resume, so the optimizer state saved for this
        # stage's parameter groups loads into an optimizer with the same groups.
        state = checkpoint.get("medclf_stage")
        if state:
            self.stage_index = int(state["index"])
            self.stage_start_epoch = int(state["start_epoch"])
            self.advance_requested = bool(state["advance_requested"])


def _train_batches(trainer: L.Trainer) -> int:
    """Training batches per epoch as the trainer will run them (after limit_train_batches)."""
    trainer.estimated_stepping_batches  # noqa: B018 - sets up the train loader if needed
    batches = trainer.num_training_batches  # inf before set-up, 0 with limit_train_batches=0
    return int(batches) if 0 < batches < float("inf") else 1


def _build_mixup(cfg: dict[str, Any] | None, num_classes: int) -> Any:
    if not cfg:
        return None
    mixup_alpha = float(cfg["mixup_alpha"])
    cutmix_alpha = float(cfg["cutmix_alpha"])
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        prob=float(cfg["prob"]),
        switch_prob=float(cfg["switch_prob"]),
        label_smoothing=float(cfg["label_smoothing"]),
        num_classes=num_classes,
    )
