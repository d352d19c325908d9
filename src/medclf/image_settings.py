"""How an image is read, as the preprocessing record and the decoders both name it: the DICOM
VOI window (``data.window``) and the decoding pixel budget (``data.max_pixels``). Kept apart
from ``medclf.data`` so the record stays a plain description that imports no decoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medclf.errors import MedclfError

DEFAULT_MAX_PIXELS = 100_000_000
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "brain": (40.0, 80.0),
    "bone": (300.0, 2000.0),
    "abdomen": (40.0, 400.0),
}
WINDOW_MODES = ("dicom", "minmax")
# What a decoder applies when no window is named: the file's own VOI window (the record's and
# the decoders' default; the config's is data.window in conf/data/default.yaml).
FILE_WINDOW = "dicom"


def normalize_window(spec: Any) -> str | tuple[float, float]:
    """Validate ``data.window``; returns a mode/preset name or a (center, width) pair."""
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in WINDOW_MODES or key in WINDOW_PRESETS:
            return key
    elif isinstance(spec, Sequence) and len(spec) == 2:
        try:
            center, width = float(spec[0]), float(spec[1])
        except (TypeError, ValueError):
            pass
        else:
            if width >= 1:
                return (center, width)
    choices = ", ".join([*WINDOW_MODES, *WINDOW_PRESETS])
    raise MedclfError(
        f"data.window={spec!r} is not valid; use one of {choices} or [center,width] with width >= 1"
    )


def window_key(spec: Any) -> str | list[float]:
    """The JSON form of a window spec, for records and cache keys."""
    norm = normalize_window(spec)
    return list(norm) if isinstance(norm, tuple) else norm


class ImageTooLargeError(MedclfError):
    """The header claims more pixels than ``data.max_pixels`` (the server answers 413)."""


def check_pixel_budget(
    label: str, width: int, height: int, frames: int, samples: int, max_pixels: int | None
) -> None:
    """Refuse, from header facts alone, an image whose decoded size exceeds the budget."""
    budget = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    total = max(width, 0) * max(height, 0) * max(frames, 1) * max(samples, 1)
    if total > budget:
        shape = f"{width}x{height}" + (f"x{frames} frames" if frames > 1 else "")
        raise ImageTooLargeError(
            f"{label}: image too large to decode ({shape}, {samples} sample(s) per pixel = "
            f"{total / 1e6:,.0f} million values > data.max_pixels={budget:,}); raise "
            "data.max_pixels if the image is genuine"
        )
