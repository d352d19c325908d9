"""Normalization statistics: the one module that computes them, for training
(``data.normalize``) and for ``medclf data stats``.

The training split's statistics are computed after decoding, windowing, channel conversion
and resizing (from the decode-once cache when enabled), on training images only, so
validation and test never inform the model. ``medclf data stats`` shows them, saves them, or
verifies a saved copy: the record a paper or a regulator can check against.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medclf.atomic import write_json
from medclf.data.cache import ImageCache
from medclf.data.prepare import prepare_data, provisional_preprocessing
from medclf.data.transform import LUMA, load
from medclf.errors import MedclfError
from medclf.image_settings import window_key
from medclf.preprocessing import Preprocessing

STATS_TOLERANCE = 1e-6
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def train_images(
    cache: ImageCache | None, table: pd.DataFrame, prep: Preprocessing
) -> Iterator[np.ndarray]:
    """Training-split images in [0, 1] (CHW float32), from the cache or decoded."""
    train = table[table["split"] == "train"]
    if cache is not None:
        yield from cache.unit_images(list(train["sha256"]))
    else:
        for p in train["path"]:
            yield load(prep, p)


def compute_stats(data: Any, progress: bool = True) -> dict[str, Any]:
    prepared = prepare_data(data, progress=progress)
    table = prepared.table
    prep = provisional_preprocessing(data, table)
    cache = None
    if data.get("cache"):
        cache, _ = prepared.build_cache(data.get("cache_dir"), prep, progress=progress)
    mean, std = normalization_stats("dataset", prep.channels, train_images(cache, table, prep))
    train_shas = sorted(table.loc[table["split"] == "train", "sha256"])
    return {
        "mean": list(mean),
        "std": list(std),
        "train_images": len(train_shas),
        "train_fingerprint": hashlib.sha256("".join(train_shas).encode()).hexdigest()[:16],
        "image_size": prep.image_size,
        "channels": prep.channels,
        "window": window_key(prep.window),
        "dataset": prepared.dataset,
    }


def save_stats(path: Path, stats: dict[str, Any]) -> None:
    write_json(path, stats)


def load_stats(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MedclfError(f"{path}: statistics file not found; create it with --save") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MedclfError(f"{path}: not a JSON statistics file ({exc})") from exc
    missing = {"mean", "std", "image_size", "channels"} - set(data)
    if missing:
        raise MedclfError(f"{path}: statistics file is missing {', '.join(sorted(missing))}")
    return data


def compare_stats(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Human-readable differences; empty when the saved statistics still hold."""
    problems = []
    for key in ("image_size", "channels", "window", "train_images", "train_fingerprint"):
        if key in saved and saved[key] != now[key]:
            problems.append(f"{key}: saved {saved[key]!r}, now {now[key]!r}")
    for key in ("mean", "std"):
        a, b = np.asarray(saved[key], dtype=float), np.asarray(now[key], dtype=float)
        if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=STATS_TOLERANCE):
            problems.append(f"{key}: saved {saved[key]}, now {now[key]}")
    return problems
