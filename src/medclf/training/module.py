"""The LightningModule: loss, metrics, optimizer and scheduler around any backbone."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from medclf.data.augment import build_augmentation
from medclf.data.datamodule import to_unit
from medclf.errors import MedclfError

OPTIMIZERS = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}


class Classifier(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        scheduler: str = "cosine",
        max_epochs: int = 10,
        augment: dict[str, Any] | None = None,
        mean: tuple[float, ...] = (0.0,),
        std: tuple[float, ...] = (1.0,),
        image_size: int = 64,
        checkpoint_meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise MedclfError(
                f"train.optimizer='{optimizer}' is not supported; use one of {sorted(OPTIMIZERS)}"
            )
        if scheduler not in ("cosine", "none"):
            raise MedclfError(f"train.scheduler='{scheduler}' is not supported; use cosine or none")
        self.model = model
        self.loss = nn.CrossEntropyLoss()
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.scheduler_name = scheduler
        self.max_epochs = max_epochs
        self.augment = build_augmentation(augment, image_size)
        # Not persistent: the checkpoint's state_dict stays the model's weights only; the
        # statistics live in the preprocessing record.
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.checkpoint_meta = dict(checkpoint_meta or {})
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_f1 = MulticlassF1Score(num_classes=num_classes, average="macro")
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Batches arrive as compact [0, 1]-scaled integers (or floats); on the device they
        are scaled, augmented (training only) and normalized, all as whole-batch ops."""
        x, y = batch
        x = to_unit(x)
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            x = self.augment(x)
        return (x - self.mean) / self.std, y

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        self.train_acc(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        self.val_acc(logits, y)
        self.val_f1(logits, y)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("val/f1_macro", self.val_f1, on_epoch=True, batch_size=len(y))

    def configure_optimizers(self) -> Any:
        opt_cls = OPTIMIZERS[self.optimizer_name]
        opt = opt_cls(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.scheduler_name == "none":
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.max_epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Makes a checkpoint self-describing (architecture, classes, preprocessing) with plain
        # types only, so it loads with torch.load(weights_only=True).
        checkpoint["medclf"] = self.checkpoint_meta
