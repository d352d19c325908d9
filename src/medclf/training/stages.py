"""Fine-tuning stages: which parameters train, with which optimizer, learning rates and schedule.

``train.stages`` is a list of overrides of the ``train.*`` optimization keys (a stage without a
key inherits it), so the single-stage default and the seeds' two-stage recipe are the same code
path. Each stage builds its own optimizer and scheduler when it starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from medclf import choices
from medclf.errors import MedclfError

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "adamax": torch.optim.Adamax,
    "sgd": torch.optim.SGD,
}
assert tuple(OPTIMIZERS) == choices.OPTIMIZERS, "medclf.choices names the optimizers"
STAGE_KEYS = (
    "name",
    "epochs",
    "trainable",
    "optimizer",
    "lr",
    "backbone_lr",
    "head_lr",
    "weight_decay",
    "momentum",
    "nesterov",
    "scheduler",
    "early_stopping",
)


@dataclass(frozen=True)
class Stage:
    name: str
    epochs: int
    trainable: str | int  # "all" | "head" | N = the last N backbone blocks and the head
    optimizer: str
    lr: float
    backbone_lr: float | None
    head_lr: float | None
    weight_decay: float
    momentum: float
    nesterov: bool
    scheduler: dict[str, Any] = field(default_factory=dict)
    early_stopping: bool = True


def _plain(value: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def resolve_stages(train_cfg: Any, freeze_backbone: bool = False) -> list[Stage]:
    """``train.stages`` (or one stage from ``train.*``) as validated ``Stage`` records."""
    base = {k: _plain(train_cfg.get(k)) for k in STAGE_KEYS if k in train_cfg}
    base["epochs"] = train_cfg.get("max_epochs")
    base["early_stopping"] = bool(train_cfg.early_stopping.enabled)
    if base.get("trainable") is None:
        base["trainable"] = "head" if freeze_backbone else "all"
    # the list and each stage's keys and values were checked at compose (medclf.schema.Stage)
    raw = _plain(train_cfg.get("stages")) or [{"name": "train"}]
    stages = []
    for i, item in enumerate(raw, start=1):
        merged = {**base, **item}
        sched = dict(base.get("scheduler") or {})
        if isinstance(item.get("scheduler"), str):
            sched["name"] = item["scheduler"]
        elif isinstance(item.get("scheduler"), Mapping):
            sched.update(item["scheduler"])
        merged["scheduler"] = sched
        stages.append(_record(merged, i))
    return stages


def _record(d: dict[str, Any], index: int) -> Stage:
    """The merged stage as a record. Each value was checked at compose (``medclf.schema``:
    ``train.*`` and every ``train.stages`` item), so a merge of them is valid too."""
    return Stage(
        name=str(d.get("name") or f"stage{index}"),
        epochs=int(d["epochs"]),
        trainable=d["trainable"],
        optimizer=str(d["optimizer"]),
        lr=float(d["lr"]),
        backbone_lr=None if d.get("backbone_lr") is None else float(d["backbone_lr"]),
        head_lr=None if d.get("head_lr") is None else float(d["head_lr"]),
        weight_decay=float(d["weight_decay"]),
        momentum=float(d["momentum"]),
        nesterov=bool(d["nesterov"]),
        scheduler=d["scheduler"],
        early_stopping=bool(d["early_stopping"]),
    )


# --- what trains -----------------------------------------------------------------------------
def apply_trainable(
    model: nn.Module, stage: Stage
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Set ``requires_grad`` for the stage; returns the (backbone, head) parameters that train.

    Batch-norm layers whose parameters are all frozen are also put in eval mode by
    ``freeze_frozen_norms``: a frozen layer must not keep updating its running statistics.
    """
    from medclf.models.factory import backbone_blocks, head_module

    head = list(head_module(model).parameters())
    head_ids = {id(p) for p in head}
    if stage.trainable == "all":
        backbone = [p for p in model.parameters() if id(p) not in head_ids]
    elif stage.trainable == "head":
        backbone = []
    else:
        blocks = backbone_blocks(model)
        n = int(stage.trainable)
        backbone = [p for b in blocks[len(blocks) - n :] for p in b] if n else []
    train_ids = head_ids | {id(p) for p in backbone}
    for p in model.parameters():
        p.requires_grad_(id(p) in train_ids)
    return backbone, head


def freeze_frozen_norms(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


# --- how it trains ---------------------------------------------------------------------------
def build_optimizer(
    backbone: list[nn.Parameter], head: list[nn.Parameter], stage: Stage
) -> torch.optim.Optimizer:
    groups = []
    if backbone:
        groups.append({"params": backbone, "lr": stage.backbone_lr or stage.lr, "name": "backbone"})
    groups.append({"params": head, "lr": stage.head_lr or stage.lr, "name": "head"})
    kwargs: dict[str, Any] = {"lr": stage.lr, "weight_decay": stage.weight_decay}
    if stage.optimizer == "sgd":
        kwargs.update(momentum=stage.momentum, nesterov=stage.nesterov)
        if stage.nesterov and stage.momentum <= 0:
            raise MedclfError("train.nesterov=true needs train.momentum > 0")
    return OPTIMIZERS[stage.optimizer](groups, **kwargs)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    stage: Stage,
    steps_per_epoch: int,
    monitor: str,
    monitor_mode: str = "min",
) -> dict[str, Any] | None:
    """A Lightning ``lr_scheduler`` config for the stage, or None for a constant rate.
    ``stage.scheduler`` holds every ``train.scheduler`` key (a stage's own merged on top)."""
    s = stage.scheduler
    name = str(s["name"])
    total_steps = max(1, steps_per_epoch * stage.epochs)
    if name == "none":
        return None
    if name == "cosine":
        # Per optimizer step: linear warmup, then cosine down to min_lr.
        warmup = round(float(s["warmup_epochs"]) * steps_per_epoch)
        warmup = min(warmup, total_steps - 1)
        min_lr = float(s["min_lr"])
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, total_steps - warmup), eta_min=min_lr
        )
        sched: Any = cosine
        if warmup > 0:
            ramp = torch.optim.lr_scheduler.LinearLR(
                optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup
            )
            sched = torch.optim.lr_scheduler.SequentialLR(
                optimizer, [ramp, cosine], milestones=[warmup]
            )
        return {"scheduler": sched, "interval": "step"}
    if name == "onecycle":
        max_lr = [g["lr"] for g in optimizer.param_groups]
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, total_steps=total_steps
        )
        return {"scheduler": sched, "interval": "step"}
    if name == "step":
        sched = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=int(s["step_size"]), gamma=float(s["gamma"])
        )
        return {"scheduler": sched, "interval": "epoch"}
    if name == "multistep":
        milestones = [int(m) for m in s["milestones"]]
        if not milestones:
            raise MedclfError("train.scheduler.milestones must list epochs for multistep")
        sched = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=milestones, gamma=float(s["gamma"])
        )
        return {"scheduler": sched, "interval": "epoch"}
    # plateau
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode=monitor_mode,
        factor=float(s["factor"]),
        patience=int(s["patience"]),
        min_lr=float(s["min_lr"]),
    )
    return {"scheduler": sched, "interval": "epoch", "monitor": monitor, "strict": True}


def steps_per_epoch(train_batches: int, accumulate: int) -> int:
    return max(1, math.ceil(train_batches / max(1, accumulate)))
