"""Batched training augmentation with kornia, run on the training device.

Why kornia: it draws *per-sample* parameters for a whole (B, C, H, W) batch and applies them
in one fused op on whatever device the batch is on. torchvision.transforms.v2 draws one set of
parameters per call (per batch, when given a batch), so per-sample variety would need a Python
loop; albumentations works on single numpy images on the CPU, which is exactly the per-image
host work the decode-once cache removes. The input is the [0, 1] image, before normalization,
so brightness/contrast/gamma have their usual meaning. Geometry pads with the border pixels
(zero padding invents an intensity the model can key on; measured as a train/eval drift).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn


def _pair(cfg: Mapping[str, Any], key: str) -> tuple[float, float] | None:
    value = cfg.get(key)
    return None if value is None else (float(value[0]), float(value[1]))


def _prob(cfg: Mapping[str, Any], key: str) -> float:
    return float(cfg.get(key) or 0.0)


def build_augmentation(cfg: Mapping[str, Any] | None, image_size: int) -> nn.Module | None:
    """A kornia pipeline for ``data.augment``, or None when every op is off."""
    cfg = dict(cfg or {})  # keys and ranges were checked at compose (medclf.schema.Augment)
    import kornia.augmentation as K

    p = _prob(cfg, "p") if cfg.get("p") is not None else 0.5
    ops: list[nn.Module] = []
    if (hflip := _prob(cfg, "hflip")) > 0:
        ops.append(K.RandomHorizontalFlip(p=hflip))
    if (vflip := _prob(cfg, "vflip")) > 0:
        ops.append(K.RandomVerticalFlip(p=vflip))
    degrees = float(cfg.get("rotate_degrees") or 0.0)
    translate = float(cfg.get("translate") or 0.0)
    scale = _pair(cfg, "scale")
    if degrees > 0 or translate > 0 or scale is not None:
        ops.append(
            K.RandomAffine(
                degrees=degrees,
                translate=(translate, translate) if translate > 0 else None,
                scale=scale,
                padding_mode="border",
                p=1.0,
            )
        )
    if (crop := _pair(cfg, "resized_crop")) is not None:
        ops.append(K.RandomResizedCrop((image_size, image_size), scale=crop, p=p))
    if (brightness := float(cfg.get("brightness") or 0.0)) > 0:
        ops.append(K.RandomBrightness((1 - brightness, 1 + brightness), p=p))
    if (contrast := float(cfg.get("contrast") or 0.0)) > 0:
        ops.append(K.RandomContrast((max(0.0, 1 - contrast), 1 + contrast), p=p))
    if (gamma := _pair(cfg, "gamma")) is not None:
        ops.append(K.RandomGamma(gamma, p=p))
    if (sigma := _pair(cfg, "blur_sigma")) is not None:
        kernel = 2 * round(3 * sigma[1]) + 1
        ops.append(K.RandomGaussianBlur((kernel, kernel), sigma, p=p))
    if (noise := float(cfg.get("noise_std") or 0.0)) > 0:
        ops.append(K.RandomGaussianNoise(mean=0.0, std=noise, p=p))
    if not ops:
        return None
    return K.AugmentationSequential(*ops, data_keys=["input"])
