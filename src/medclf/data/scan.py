"""One pass over the files of a dataset: content hash, decodability, format facts, pHash.

Every later step relies on it: unreadable files are excluded before splitting (a run never
dies at epoch N because of image M), content hashes key the cache and group duplicates into
one split, and the data check reports the facts. Results are memoized per file (path, size,
mtime and window) in ``scan.csv`` under the cache folder, so a second run re-reads nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from medclf.atomic import atomic_path
from medclf.data.io import decode, sample_sha256
from medclf.data.parallel import map_images
from medclf.errors import MedclfError
from medclf.image_settings import FILE_WINDOW, window_key

SCAN_COLUMNS = [
    "path",
    "stamp",
    "sha256",
    "error",
    "kind",
    "mode",
    "bits",
    "width",
    "height",
    "phash",
    "phash_orbit",  # the pHashes of the 7 flips and right-angle rotations, concatenated
    "intensity_mean",  # of the decoded, windowed [0, 1] image (gray), for split shift
    "intensity_std",
]
# Part of every memo stamp: a new column or meaning invalidates older memo rows.
SCAN_VERSION = 3


PHASH_SIZE = 16  # 16x16 = 256-bit pHash


def dihedral_hashes(array: np.ndarray) -> tuple[str, str]:
    """(pHash, the pHashes of the image's 7 other dihedral views concatenated): the image
    flipped and rotated by right angles, as augmented releases copy images across splits.

    The pHash is imagehash's DCT pHash (256 bits, 64 hex digits: the 16x16 lowest DCT
    frequencies of the image resized to 64x64, thresholded at their median), with the resize
    done in floating point: PIL's 8-bit resize rounds between its horizontal and vertical
    passes, so a rotated copy of a non-square image hashed 16-22 bits away from the rotated
    hash; in floating point the views agree exactly (tested).

    256 rather than imagehash's default 64 bits: medical images share their layout (a body
    outline on black), and on synthetic CT phantoms 33 pairs of *different* images had
    identical 64-bit hashes while no pair came within 6 bits of 256 (measured).

    One DCT serves all eight views: mirroring an axis multiplies DCT-II coefficient k by
    (-1)^k and a transpose swaps the axes, so each view's block is a signed or transposed copy
    of the image's, thresholded at its own median."""
    import imagehash
    from scipy.fftpack import dct

    gray = array if array.ndim == 2 else array.mean(axis=-1)
    img = Image.fromarray(np.round(np.clip(gray, 0, 1) * 255).astype(np.uint8), mode="L")
    side = PHASH_SIZE * 4  # imagehash's highfreq_factor
    small = img.convert("F").resize((side, side), Image.Resampling.LANCZOS)
    block = dct(dct(np.asarray(small, np.float64), axis=0), axis=1)[:PHASH_SIZE, :PHASH_SIZE]
    sign = (-1.0) ** np.arange(PHASH_SIZE)
    views = []
    for base in (block, block.T):
        for rows, cols in ((False, False), (True, False), (False, True), (True, True)):
            view = base * (sign[:, None] if rows else 1.0) * (sign[None, :] if cols else 1.0)
            views.append(str(imagehash.ImageHash(view > np.median(view))))
    return views[0], "".join(views[1:])


def _stamp(path: str, window: Any, max_pixels: int | None) -> str:
    """What must not change for a memoized scan row to stay valid."""
    file = path.split("::", 1)[0]
    try:
        st = Path(file).stat()
    except OSError:
        return ""
    settings = json.dumps([window_key(window), PHASH_SIZE, max_pixels, SCAN_VERSION])
    return f"{st.st_size}:{st.st_mtime_ns}:{settings}:{path}"


def _scan_one(path: str, stamp: str, window: Any, max_pixels: int | None) -> dict[str, Any]:
    row: dict[str, Any] = {"path": path, "stamp": stamp, "error": ""}
    try:
        row["sha256"] = sample_sha256(path)
    except OSError as exc:
        row.update(sha256="", error=f"{path}: cannot read file ({exc})")
        return row
    try:
        d = decode(path, window=window, max_pixels=max_pixels)
    except MedclfError as exc:
        row["error"] = str(exc)
        return row
    row.update(
        kind=d.kind,
        mode=d.mode,
        bits=d.bits,
        width=d.width,
        height=d.height,
        **dict(zip(("phash", "phash_orbit"), dihedral_hashes(d.array), strict=True)),
        intensity_mean=round(float(d.array.mean()), 5),
        intensity_std=round(float(d.array.std()), 5),
    )
    return row


def _load_memo(memo: Path | None) -> pd.DataFrame:
    if memo is None or not memo.is_file():
        return pd.DataFrame(columns=SCAN_COLUMNS)
    try:
        return pd.read_csv(memo, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return pd.DataFrame(columns=SCAN_COLUMNS)  # a damaged memo is only a cache miss


def scan(
    paths: Sequence[str],
    window: Any = FILE_WINDOW,
    memo: Path | None = None,
    progress: bool = True,
    max_pixels: int | None = None,
) -> pd.DataFrame:
    """One row per path (same order): sha256, error ("" when readable) and format facts."""
    known = _load_memo(memo)
    by_stamp = {r["stamp"]: r for r in known.to_dict("records") if r.get("stamp")}
    rows: dict[str, dict[str, Any]] = {}
    todo: list[tuple[str, str]] = []
    for p in dict.fromkeys(paths):
        stamp = _stamp(p, window, max_pixels)
        hit = by_stamp.get(stamp)
        if hit is not None:
            rows[p] = hit
        else:
            todo.append((p, stamp))
    if todo:
        results = map_images(
            lambda item: _scan_one(*item, window, max_pixels), todo, "checking images", progress
        )
        for r in results:
            rows[r["path"]] = r
    out = pd.DataFrame([rows[p] for p in paths]).reindex(columns=SCAN_COLUMNS).fillna("")
    for col in ("bits", "width", "height"):
        out[col] = pd.to_numeric(out[col], errors="coerce").fillna(0).astype(int)
    for col in ("intensity_mean", "intensity_std"):
        out[col] = pd.to_numeric(out[col], errors="coerce")
    out.attrs["fresh"] = len(todo)
    return out


def update_memo(memo: Path, scanned: pd.DataFrame) -> None:
    """Merge fresh scan rows into the memo. Called only once the data was accepted, so bad
    input leaves nothing behind."""
    if not scanned.attrs.get("fresh"):
        return
    known = _load_memo(memo)
    kept = known[~known["path"].isin(set(scanned["path"]))]
    merged = pd.concat([kept, scanned]) if len(kept) else scanned
    memo.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(memo) as tmp:
        merged.to_csv(tmp, index=False)
