"""Decoded images in memory, the Lightning DataModule, and batched augmentation.

Each image is decoded, channel-converted and resized once (``Preprocessing.load``) before
training, in a thread pool with a progress bar; epochs then only normalize and batch. This is
the same function predict and serve call, so training sees exactly what deployment sees.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from medclf.errors import MedclfError
from medclf.preprocessing import Preprocessing


def decode_all(
    paths: Sequence[str], prep: Preprocessing, desc: str = "decoding", progress: bool = True
) -> tuple[list[np.ndarray | None], list[str]]:
    """``prep.load`` for every path; failures come back as None plus one message each."""

    def one(path: str) -> tuple[np.ndarray | None, str | None]:
        try:
            return prep.load(path), None
        except MedclfError as exc:
            return None, str(exc)

    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(
            tqdm(
                pool.map(one, paths),
                total=len(paths),
                desc=desc,
                unit="img",
                disable=None if progress else True,
                leave=False,
            )
        )
    arrays = [a for a, _ in results]
    errors = [e for _, e in results if e is not None]
    return arrays, errors


class ArrayDataset(Dataset):
    """Pre-decoded CHW float32 images in [0,1]; normalized on access."""

    def __init__(self, arrays: Sequence[np.ndarray], labels: Sequence[int], prep: Preprocessing):
        self.arrays = list(arrays)
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.mean = torch.tensor(prep.mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(prep.std, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = (torch.from_numpy(self.arrays[i]) - self.mean) / self.std
        return x, self.labels[i]


class ImageDataModule(L.LightningDataModule):
    def __init__(
        self,
        datasets: dict[str, ArrayDataset],
        batch_size: int,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.datasets = datasets
        self.batch_size = batch_size
        self.num_workers = num_workers

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def augment_batch(x: torch.Tensor, hflip: float, rotate_degrees: float) -> torch.Tensor:
    """Per-sample random horizontal flip and rotation of a whole batch, on its device.

    torchvision.transforms.v2 draws one set of random parameters per call, i.e. per batch;
    per-sample parameters on batched tensors need the affine-grid form below (one fused
    ``grid_sample``), which is also what runs on the GPU without a host round trip.
    Border padding repeats edge pixels, so rotated corners look like background, not a new
    intensity the model could key on.
    """
    n = x.shape[0]
    if n == 0 or (hflip <= 0 and rotate_degrees <= 0):
        return x
    angle = (torch.rand(n, device=x.device) * 2 - 1) * math.radians(rotate_degrees)
    flip = torch.where(torch.rand(n, device=x.device) < hflip, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = cos * flip
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * flip
    theta[:, 1, 1] = cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
