"""Synthetic chest-CT phantoms: a built-in dataset that needs no download.

Each image is an axial "slice": a body ellipse of soft tissue with two darker lung fields,
vessel-like bright dots in the lungs, smooth intensity drift and noise. The class decides the
finding placed in a random lung: ``normal`` (none), ``nodule`` (small solid round lesion),
``ground_glass`` (faint hazy patch) or ``cavity`` (ring lesion with an air-filled centre).
Sizes, positions and intensities vary, and vessels resemble tiny nodules, so the task is
learnable but not trivially separable. Each patient has one anatomy and one finding, seen in
1-4 slices with small shifts, so ``patient_id`` matters for leakage-safe splits.

Images are 16-bit grayscale PNG in an ImageFolder tree, plus ``manifest.csv``
(path, label, patient_id, and per-patient metadata sex, age and site for subgroup analysis;
drawn from their own random stream, unrelated to the images). Output is a pure function of
the seed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from medclf.atomic import atomic_path
from medclf.errors import MedclfError

CLASSES = ("normal", "nodule", "ground_glass", "cavity")
MAX_SLICES_PER_PATIENT = 4


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2


def _patient(rng: np.random.Generator, size: int) -> dict:
    s = float(size)
    return {
        "body": (
            s * rng.uniform(0.47, 0.53),
            s * rng.uniform(0.47, 0.53),
            s * rng.uniform(0.33, 0.40),
            s * rng.uniform(0.42, 0.47),
        ),
        "lung_r": (s * rng.uniform(0.20, 0.26), s * rng.uniform(0.11, 0.14)),
        "lung_dx": s * rng.uniform(0.17, 0.21),
        "tissue": rng.uniform(0.50, 0.62),
        "lung": rng.uniform(0.10, 0.18),
        "side": int(rng.integers(0, 2)),
        "lesion_pos": (rng.uniform(-0.45, 0.45), rng.uniform(-0.35, 0.35)),
        "lesion_r": s * rng.uniform(0.030, 0.055),
        "lesion_i": rng.uniform(0.30, 0.50),
    }


def render_slice(cls: str, p: dict, size: int, rng: np.random.Generator) -> np.ndarray:
    """One phantom slice as float32 in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shift = rng.normal(0, size * 0.015, size=2)
    cy, cx, ry, rx = p["body"]
    cy, cx = cy + shift[0], cx + shift[1]
    img = np.zeros((size, size), np.float32) + 0.02
    img[_ellipse(yy, xx, cy, cx, ry, rx) <= 1] = p["tissue"]
    lry, lrx = p["lung_r"]
    lungs = []
    for sign in (-1, 1):
        lcx = cx + sign * p["lung_dx"]
        mask = _ellipse(yy, xx, cy - size * 0.02, lcx, lry, lrx) <= 1
        img[mask] = p["lung"]
        lungs.append((cy - size * 0.02, lcx))
    # vessels: tiny bright dots in both lungs, in every class
    for lcy, lcx in lungs:
        for _ in range(int(rng.integers(3, 7))):
            vy = lcy + rng.uniform(-0.7, 0.7) * lry
            vx = lcx + rng.uniform(-0.6, 0.6) * lrx
            vr = size * rng.uniform(0.008, 0.016)
            img[_ellipse(yy, xx, vy, vx, vr, vr) <= 1] = p["lung"] + rng.uniform(0.15, 0.3)
    lcy, lcx = lungs[p["side"]]
    ly = lcy + (p["lesion_pos"][0] + rng.normal(0, 0.04)) * lry
    lx = lcx + (p["lesion_pos"][1] + rng.normal(0, 0.04)) * lrx
    r = p["lesion_r"] * rng.uniform(0.9, 1.1)
    d = np.sqrt(_ellipse(yy, xx, ly, lx, 1.0, 1.0))
    if cls == "nodule":
        img[d <= r] = p["lung"] + p["lesion_i"]
    elif cls == "ground_glass":
        sigma = r * rng.uniform(1.4, 2.0)
        img += (0.5 * p["lesion_i"]) * np.exp(-(d**2) / (2 * sigma**2)) * (img < p["lung"] + 0.05)
    elif cls == "cavity":
        ring = (d <= r * 1.25) & (d >= r * 0.65)
        img[ring] = p["lung"] + p["lesion_i"]
        img[d < r * 0.65] = 0.03
    elif cls != "normal":
        raise ValueError(f"unknown phantom class {cls}")
    # smooth intensity drift (scanner inhomogeneity) and noise
    gy, gx = rng.normal(0, 0.03, size=2)
    img += gy * (yy / size - 0.5) + gx * (xx / size - 0.5)
    img += rng.normal(0, rng.uniform(0.02, 0.04), size=img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def generate(out: Path, per_class: int = 150, size: int = 128, seed: int = 0) -> pd.DataFrame:
    """Write the dataset to ``out`` (replacing it whole, atomically); return its manifest."""
    if per_class < 3:
        raise MedclfError("--per-class must be at least 3 (one image each for train/val/test)")
    if size < 32:
        raise MedclfError("--size must be at least 32 pixels")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "manifest.csv").is_file():
        raise MedclfError(f"{out} exists and is not a medclf synthetic dataset; choose another OUT")
    rng = np.random.default_rng(seed)
    meta_rng = np.random.default_rng([seed, 1])
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    rows = []
    patient = 0
    for cls in CLASSES:
        (staging / cls).mkdir(parents=True)
        made = 0
        while made < per_class:
            p = _patient(rng, size)
            n = min(int(rng.integers(1, MAX_SLICES_PER_PATIENT + 1)), per_class - made)
            pid = f"P{patient:05d}"
            meta = (
                str(meta_rng.choice(["F", "M"])),
                int(meta_rng.integers(25, 90)),
                str(meta_rng.choice(["site_a", "site_b", "site_c"])),
            )
            for k in range(n):
                img = render_slice(cls, p, size, rng)
                rel = f"{cls}/{pid}_s{k}.png"
                Image.fromarray(np.round(img * 65535).astype(np.uint16)).save(staging / rel)
                rows.append((rel, cls, pid, *meta))
            made += n
            patient += 1
    manifest = pd.DataFrame(rows, columns=["path", "label", "patient_id", "sex", "age", "site"])
    with atomic_path(staging / "manifest.csv") as tmp:
        manifest.to_csv(tmp, index=False)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return manifest
