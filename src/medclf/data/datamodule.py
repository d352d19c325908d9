"""Datasets that yield whole batches, and the Lightning DataModule around them.

With the cache (default), a batch is one fancy-index into the memory-mapped uint8/uint16 array
(rows sorted for locality) plus the labels: no per-image Python work at all, and the batch
travels to the device in its compact integer form. Scaling to [0, 1], augmentation and
normalization then happen on the device (``Classifier.on_after_batch_transfer``).

Without the cache (``data.cache=false``), every epoch decodes every file again through the
same ``Preprocessing.load``; this is the baseline the cache benchmark compares against.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    WeightedRandomSampler,
)

from medclf.data.parallel import map_images
from medclf.data.transform import load
from medclf.errors import MedclfError
from medclf.preprocessing import Preprocessing


def decode_all(
    paths: Sequence[str], prep: Preprocessing, desc: str = "decoding", progress: bool = True
) -> tuple[list[np.ndarray | None], list[str]]:
    """``prep.load`` for every path; failures come back as None plus one message each."""

    def one(path: str) -> tuple[np.ndarray | None, str | None]:
        try:
            return load(prep, path), None
        except MedclfError as exc:
            return None, str(exc)

    results = map_images(one, paths, desc, progress)
    arrays = [a for a, _ in results]
    errors = [e for _, e in results if e is not None]
    return arrays, errors


class CachedBatches(Dataset):
    """``dataset[list_of_indices]`` -> (uint8/uint16 NCHW tensor, int64 labels)."""

    def __init__(self, images_path: str, rows: np.ndarray, labels: Sequence[int]) -> None:
        self.images_path = str(images_path)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self._images: np.ndarray | None = None  # mapped lazily, once per worker process

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if self._images is None:
            self._images = np.load(self.images_path, mmap_mode="r")
        idx = np.sort(np.asarray(idx, dtype=np.int64))
        x = np.ascontiguousarray(self._images[self.rows[idx]])
        return torch.from_numpy(x), torch.from_numpy(self.labels[idx])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}  # never pickle the mapped array


class DecodedBatches(Dataset):
    """The uncached path: decode every image of the batch from its file, every epoch."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int], prep: Preprocessing) -> None:
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.prep = prep

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = list(idx)
        x = np.stack([load(self.prep, self.paths[i]) for i in idx])
        return torch.from_numpy(x), torch.from_numpy(self.labels[idx])


class RankBatches(Sampler[list[int]]):
    """One process's share of an epoch under DDP (``train.devices=N``): every rank draws the
    same order from a generator seeded by (seed, epoch) and takes every N-th image, so the
    ranks see disjoint images. Training orders are padded (wrapping around) to a multiple of
    N, so every rank takes the same number of optimizer steps (a rank with one step fewer
    would hang the others' gradient all-reduce); validation is split exactly, unpadded, and
    its metrics are gathered across ranks by torchmetrics and ``sync_dist``. Lightning's own
    DistributedSampler wrapper would re-draw our batch sampler per rank from each rank's
    global RNG state, which differs between ranks, so the shares could overlap."""

    def __init__(
        self,
        size: int,
        batch_size: int,
        rank: int,
        world: int,
        seed: int,
        shuffle: bool,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.size, self.batch_size, self.rank, self.world = size, batch_size, rank, world
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)

    def set_epoch(self, epoch: int) -> None:  # called by Lightning at each epoch start
        self.epoch = epoch

    def _share(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.rank, self.size, self.world))
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.weights is not None:  # class-balanced draws, as WeightedRandomSampler
            order = torch.multinomial(self.weights, self.size, True, generator=g).tolist()
        else:
            order = torch.randperm(self.size, generator=g).tolist()
        order += order[: -len(order) % self.world]
        return order[self.rank :: self.world]

    def _batches(self) -> list[list[int]]:
        share = self._share()
        batches = [share[i : i + self.batch_size] for i in range(0, len(share), self.batch_size)]
        if self.shuffle and len(batches) > 1 and len(batches[-1]) == 1:
            batches.pop()  # a training batch of one breaks BatchNorm (as below)
        return batches

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


class ImageDataModule(L.LightningDataModule):
    def __init__(
        self,
        datasets: dict[str, Dataset],
        batch_size: int,
        num_workers: int = 0,
        train_weights: Sequence[float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.datasets = datasets
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_weights = train_weights
        self.seed = seed

    def _sampler(self, split: str, shuffle: bool) -> Sampler:
        """Batches of indices: this rank's share under DDP, else one process's draws."""
        ds = self.datasets[split]
        trainer = self.trainer
        world = trainer.world_size if trainer is not None else 1
        if world > 1:
            weights = self.train_weights if shuffle else None
            rank = trainer.global_rank
            return RankBatches(len(ds), self.batch_size, rank, world, self.seed, shuffle, weights)
        base: Sampler
        if shuffle and self.train_weights is not None:
            # Class-balanced draws (with replacement), one epoch = as many draws as images.
            base = WeightedRandomSampler(self.train_weights, num_samples=len(ds), replacement=True)
        else:
            base = RandomSampler(ds) if shuffle else SequentialSampler(ds)
        # A training batch of one breaks BatchNorm; drop a last batch only in that case.
        drop_last = shuffle and len(ds) > self.batch_size and len(ds) % self.batch_size == 1
        return BatchSampler(base, batch_size=self.batch_size, drop_last=drop_last)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=None,  # the dataset returns whole batches
            sampler=self._sampler(split, shuffle),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Integer cache batches to float32 in [0, 1]; float batches pass through."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if x.dtype == torch.uint16:
        return x.float().div_(65535.0)
    return x.float()
