"""Load the weights a run chose (``weights/best.ckpt``) into a ready-to-infer model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from medclf.data.io import sample_sha256
from medclf.errors import MedclfError


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise MedclfError(f"{path}: cannot read checkpoint ({exc}); it may be truncated") from exc


def model_from_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model in eval mode with the checkpoint's weights, and the checkpoint's medclf meta."""
    from medclf.models import build_model

    ckpt = load_checkpoint(path)
    meta = ckpt.get("medclf")
    if not meta:
        raise MedclfError(f"{path}: not a medclf checkpoint (no 'medclf' metadata)")
    # The checkpoint holds every weight: never re-read model.weights or contact the hub here.
    model_cfg = OmegaConf.create({**meta["model"], "pretrained": False, "weights": None})
    model = build_model(
        model_cfg,
        num_classes=int(meta["num_classes"]),
        in_chans=int(meta["in_chans"]),
        image_size=int(meta["preprocessing"]["image_size"]),
    )
    # With train.ema the averaged weights are the ones validated, selected and deployed.
    prefix = "ema.module." if meta.get("ema") else "model."
    state = {
        k.removeprefix(prefix): v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)
    }
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, meta


def file_digest(path: Path, length: int = 12) -> str:
    """Short content hash of a weights file: the model version reported by predict and serve."""
    return sample_sha256(path)[:length]
