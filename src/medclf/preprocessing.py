"""The one preprocessing definition shared by training, evaluation, export, predict and serve.

A ``Preprocessing`` record is built once at training time (config + training-split statistics),
saved as ``preprocessing.json`` in the run directory and embedded in every export. Nothing
downstream hard-codes an image size, normalization or class list: it reads the record.

The record is a plain description: it imports no decoder. ``medclf.data.transform`` runs the
pipeline it describes (decode -> channels -> trim -> resize -> ``(x - mean) / std``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medclf.atomic import write_json
from medclf.errors import MedclfError
from medclf.geometry import LEGACY_RESIZE, RESIZE_MODES, TRIM_MODES
from medclf.image_settings import DEFAULT_MAX_PIXELS, FILE_WINDOW, normalize_window, window_key

# 2: trim and the letterbox/crop resize modes (an older medclf would silently ignore them)
RECORD_VERSION = 2


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
    window: str | tuple[float, float] = FILE_WINDOW
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
    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One model input, C x H x W."""
        return (self.channels, self.image_size, self.image_size)

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
        # an older record leaves out what it predates: the field defaults above say what it meant
        kinds = {"resize": str, "trim": str, "normalize": str, "max_pixels": int}
        optional = {k: kinds.get(k, lambda v: v)(d[k]) for k in (*kinds, "window") if k in d}
        try:
            return cls(
                image_size=int(d["image_size"]),
                channels=int(d["channels"]),
                class_names=tuple(str(c) for c in d["class_names"]),
                mean=tuple(float(m) for m in d["mean"]),
                std=tuple(float(s) for s in d["std"]),
                version=version,
                extra=dict(d.get("extra", {})),
                **optional,
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
