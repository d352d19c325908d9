"""Decode-once image cache: a memory-mapped (N, C, H, W) array plus an index.

Each distinct image content is decoded, windowed, channel-converted and resized once
(``Preprocessing.load``, the same function predict and serve use) and stored quantized:
uint8 when every source has 8 bits per sample or fewer (the quantization step, 1/510 at
most, is below the source's own precision), uint16 otherwise (16-bit PNG/TIFF, DICOM).

The cache folder name is a hash of the content hashes of all images and of the settings that
change the pixels (image size, channels, window, resize, trim, format version), so a changed file or
setting builds a new cache and an unchanged one is reused by every run and every DataLoader
worker process (each maps the same file read-only). A new cache copies the rows an earlier
cache of the same settings already holds (the data set before files were added) and decodes
only the images that are new. A cache is built in a temporary folder
and renamed into place when complete: a killed build leaves nothing that looks valid.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medclf.atomic import staging_dir, sweep_stale, write_json
from medclf.data.parallel import map_images
from medclf.data.transform import load
from medclf.errors import MedclfError
from medclf.image_settings import window_key
from medclf.preprocessing import Preprocessing

CACHE_VERSION = 1
IMAGES_FILE = "images.npy"
INDEX_FILE = "index.csv"
META_FILE = "meta.json"


def pixel_settings(prep: Preprocessing) -> dict[str, object]:
    """Everything in the record that changes cached pixels (not normalization or classes)."""
    return {
        "version": CACHE_VERSION,
        "image_size": prep.image_size,
        "channels": prep.channels,
        "window": window_key(prep.window),
        "resize": prep.resize,
        "trim": prep.trim,
    }


def cache_key(shas: Sequence[str], prep: Preprocessing) -> str:
    h = hashlib.sha256(json.dumps(pixel_settings(prep), sort_keys=True).encode())
    for sha in sorted(set(shas)):
        h.update(sha.encode())
    return h.hexdigest()[:24]


@dataclass
class ImageCache:
    """An opened cache: ``rows(shas)`` maps content hashes to rows of ``images``."""

    root: Path
    dtype: np.dtype
    scale: float
    row_of: dict[str, int]
    shape: tuple[int, ...]

    @property
    def images_path(self) -> Path:
        return self.root / IMAGES_FILE

    def images(self) -> np.ndarray:
        """The read-only memory map; cheap to call in every process."""
        return np.load(self.images_path, mmap_mode="r")

    def rows(self, shas: Sequence[str]) -> np.ndarray:
        try:
            return np.array([self.row_of[s] for s in shas], dtype=np.int64)
        except KeyError as exc:
            raise MedclfError(f"cache {self.root}: image {exc} is not in this cache") from exc

    def unit_images(self, shas: Sequence[str]) -> Iterator[np.ndarray]:
        """Float32 [0, 1] CHW arrays for ``shas``, one at a time (O(1) memory)."""
        arr = self.images()
        for r in self.rows(shas):
            yield arr[r].astype(np.float32) / self.scale

    @classmethod
    def open(cls, root: Path) -> ImageCache:
        meta = json.loads((root / META_FILE).read_text(encoding="utf-8"))
        index = pd.read_csv(root / INDEX_FILE, dtype={"sha256": str, "row": int})
        return cls(
            root=root,
            dtype=np.dtype(meta["dtype"]),
            scale=float(meta["scale"]),
            row_of=dict(zip(index["sha256"], index["row"], strict=True)),
            shape=tuple(meta["shape"]),
        )


def _is_complete(root: Path) -> bool:
    return all((root / f).is_file() for f in (IMAGES_FILE, INDEX_FILE, META_FILE))


def build_cache(
    cache_dir: str | Path,
    paths: Sequence[str],
    shas: Sequence[str],
    bits: Sequence[int],
    prep: Preprocessing,
    progress: bool = True,
) -> tuple[ImageCache, bool]:
    """Open the cache for these images and settings, building it if needed.

    Returns the cache and whether it was built now (False: reused).
    """
    if len(paths) != len(shas) or len(paths) != len(bits):
        raise ValueError("paths, shas and bits must have the same length")
    root = Path(cache_dir).expanduser() / cache_key(shas, prep)
    if _is_complete(root):
        return ImageCache.open(root), False

    first_path = dict(zip(shas, paths, strict=True))  # duplicates: one decode per content
    unique = sorted(first_path)
    wide = any(int(b) > 8 for b in bits)
    dtype = np.dtype(np.uint16 if wide else np.uint8)
    scale = 65535.0 if wide else 255.0
    shape = (len(unique), *prep.input_shape)

    sweep_stale(root.parent, recursive=False)  # builds killed mid-way
    donor = _donor(root, pixel_settings(prep), dtype, unique)
    tmp = staging_dir(root)
    try:
        images = np.lib.format.open_memmap(tmp / IMAGES_FILE, mode="w+", dtype=dtype, shape=shape)
        missing = _copy_known(images, unique, donor)

        def fill(i: int) -> None:
            arr = load(prep, first_path[unique[i]])
            images[i] = np.round(np.clip(arr, 0.0, 1.0) * scale).astype(dtype)

        map_images(fill, missing, "caching images", progress)
        images.flush()
        pd.DataFrame({"sha256": unique, "row": range(len(unique))}).to_csv(
            tmp / INDEX_FILE, index=False
        )
        write_json(
            tmp / META_FILE,
            {
                **pixel_settings(prep),
                "dtype": dtype.name,
                "scale": scale,
                "shape": list(shape),
                "images": len(unique),
            },
        )
        try:
            tmp.rename(root)
        except OSError:
            if not _is_complete(root):  # another process won the race with a complete cache
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ImageCache.open(root), True


# Earlier caches looked at for rows to reuse (newest first): bounds the index files read.
MAX_DONORS = 8


def _donor(root: Path, settings: dict[str, object], dtype: np.dtype, unique: list[str]):
    """The newest complete cache of the same pixel settings and dtype that shares images
    with this one (the data set before files were added or removed), or None."""
    if not root.parent.is_dir():
        return None
    wanted = set(unique)
    candidates = [d for d in root.parent.iterdir() if d != root and _is_complete(d)]
    candidates.sort(key=lambda d: d.stat().st_mtime, reverse=True)
    best, best_shared = None, 0
    for folder in candidates[:MAX_DONORS]:
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            same = all(meta.get(k) == v for k, v in settings.items())
            if not same or meta.get("dtype") != dtype.name:
                continue
            cache = ImageCache.open(folder)
        except (OSError, ValueError, KeyError):
            continue  # a damaged cache is no donor
        shared = len(wanted.intersection(cache.row_of))
        if shared > best_shared:
            best, best_shared = cache, shared
    return best


def _copy_known(images: np.ndarray, unique: list[str], donor: ImageCache | None) -> list[int]:
    """Copy the rows ``donor`` already decoded (same settings, same content hash) into the
    new array; returns the indices still to decode. A data set that grew by a few files
    decodes only those."""
    if donor is None:
        return list(range(len(unique)))
    source = donor.images()
    if tuple(source.shape[1:]) != tuple(images.shape[1:]):
        return list(range(len(unique)))
    known = [(i, donor.row_of[s]) for i, s in enumerate(unique) if s in donor.row_of]
    for start in range(0, len(known), 1024):  # bounded memory: 1024 rows at a time
        part = known[start : start + 1024]
        rows = np.array([r for _, r in part])
        order = np.argsort(rows)  # sequential reads of the donor's memory map
        images[np.array([i for i, _ in part])[order]] = source[rows[order]]
    done = {i for i, _ in known}
    return [i for i in range(len(unique)) if i not in done]
