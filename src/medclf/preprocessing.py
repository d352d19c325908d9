"""The one preprocessing definition shared by training, evaluation, export, predict and serve.

A ``Preprocessing`` record is built once at training time (config + training-split statistics),
saved as ``preprocessing.json`` in the run directory and embedded in every export. Nothing
downstream hard-codes an image size, normalization or class list: it reads the record.

The record is a plain description: it imports no decoder. ``medclf.data.transform`` runs the
pipeline it describes (decode -> channels -> trim -> resize -> ``(x - mean) / std``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medclf.atomic import write_json
from medclf.errors import MedclfError
from medclf.geometry import LEGACY_RESIZE, RESIZE_MODES, TRIM_MODES
from medclf.image_settings import DEFAULT_MAX_PIXELS, normalize_window, window_key

# 2: trim and the letterbox/crop resize modes (an older medclf would silently ignore them)
RECORD_VERSION = 2
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ITU-R 601 luma weights, the same ones PIL uses for RGB -> L (images and statistics alike).
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Preprocessing:
    image_size: int
    channels: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str = "squash"
    trim: str = "none"
    normalize: str = "dataset"
    window: str | tuple[float, float] = "dicom"
    max_pixels: int = DEFAULT_MAX_PIXELS  # decoding budget (``data.max_pixels``)
    version: int = RECORD_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise MedclfError(f"data.channels must be 1 or 3, got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise MedclfError("preprocessing mean/std must have one value per channel")
        if self.image_size < 8:
            raise MedclfError(f"data.image_size must be at least 8, got {self.image_size}")
        object.__setattr__(self, "window", normalize_window(self.window))
        object.__setattr__(self, "resize", LEGACY_RESIZE.get(self.resize, self.resize))
        if self.resize not in RESIZE_MODES:
            raise MedclfError(f"data.resize must be one of {', '.join(RESIZE_MODES)}")
        if self.trim not in TRIM_MODES:
            raise MedclfError(f"data.trim must be one of {', '.join(TRIM_MODES)}")

    # --- the arithmetic of the record (the file -> array path is medclf.data.transform) -------
    def normalize_array(self, chw: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return ((chw - mean) / std).astype(np.float32)

    # --- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["mean"] = [float(m) for m in self.mean]
        d["std"] = [float(s) for s in self.std]
        d["window"] = window_key(self.window)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        version = int(d.get("version", 0))
        if version > RECORD_VERSION:
            raise MedclfError(
                f"preprocessing record version {version} is newer than this medclf "
                f"understands ({RECORD_VERSION}); upgrade medclf"
            )
        try:
            return cls(
                image_size=int(d["image_size"]),
                channels=int(d["channels"]),
                class_names=tuple(str(c) for c in d["class_names"]),
                mean=tuple(float(m) for m in d["mean"]),
                std=tuple(float(s) for s in d["std"]),
                resize=str(d.get("resize", "squash")),
                trim=str(d.get("trim", "none")),
                normalize=str(d.get("normalize", "dataset")),
                window=d.get("window", "dicom"),
                max_pixels=int(d.get("max_pixels", DEFAULT_MAX_PIXELS)),
                version=version,
                extra=dict(d.get("extra", {})),
            )
        except KeyError as exc:
            raise MedclfError(f"preprocessing record is missing field {exc}") from exc

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load_file(cls, path: Path) -> Preprocessing:
        if not path.is_file():
            raise MedclfError(f"{path}: preprocessing record not found")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _for_channels(
    mean: tuple[float, ...], std: tuple[float, ...], channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """RGB statistics for 1-channel input collapse with the luma weights, matching how a
    grayscale image relates to the RGB image it would be (and timm's summed first conv)."""
    if len(mean) == channels:
        return tuple(mean), tuple(std)
    if channels == 1 and len(mean) == 3:
        return (float(np.dot(LUMA, mean)),), (float(np.dot(LUMA, std)),)
    if len(mean) == 1:
        return (float(mean[0]),) * channels, (float(std[0]),) * channels
    raise MedclfError(f"normalization has {len(mean)} channels, the model input has {channels}")


def normalization_stats(
    mode: str,
    channels: int,
    train_images: Iterable[np.ndarray],
    model_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std per channel for ``data.normalize``; "dataset" uses the training split only,
    "model" the architecture's pretrained statistics (``model_stats``)."""
    if mode == "none":
        return (0.0,) * channels, (1.0,) * channels
    if mode == "imagenet":
        return _for_channels(IMAGENET_MEAN, IMAGENET_STD, channels)
    if mode == "model":
        if model_stats is None:
            raise MedclfError(
                "data.normalize=model needs a timm architecture with a pretrained config; "
                "use data.normalize=dataset for this model"
            )
        return _for_channels(model_stats[0], model_stats[1], channels)
    if mode != "dataset":
        raise MedclfError(
            f"data.normalize must be auto, model, dataset, imagenet or none, got '{mode}'"
        )
    # Streaming sums in float64: exact enough and O(1) memory in the number of images.
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    count = 0
    for img in train_images:
        flat = img.reshape(channels, -1).astype(np.float64)
        total += flat.sum(axis=1)
        total_sq += (flat**2).sum(axis=1)
        count += flat.shape[1]
    if count == 0:
        raise MedclfError("cannot compute normalization statistics: the training split is empty")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.where(std < 1e-6, 1.0, std)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
