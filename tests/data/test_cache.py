"""The decode-once cache: same pixels as the live path, reuse, invalidation, atomicity."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from medclf.data.cache import build_cache
from medclf.data.datamodule import CachedBatches, ImageDataModule
from medclf.data.io import sample_sha256
from medclf.data.transform import load
from medclf.errors import MedclfError
from medclf.preprocessing import Preprocessing


def _prep(size: int = 16, window="dicom") -> Preprocessing:
    return Preprocessing(size, 1, ("a", "b"), (0.0,), (1.0,), window=window)


def _images(folder: Path, n: int = 6, mode: str = "L") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        if mode == "I;16":
            arr = rng.integers(0, 65535, (20, 24), dtype=np.uint16)
        else:
            arr = rng.integers(0, 255, (20, 24), dtype=np.uint8)
        p = folder / f"{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(str(p))
    return paths


def _build(cache_dir: Path, paths: list[str], prep: Preprocessing, bits: int = 8):
    shas = [sample_sha256(p) for p in paths]
    return build_cache(cache_dir, paths, shas, [bits] * len(paths), prep, progress=False), shas


def test_cached_pixels_equal_the_live_preprocessing_within_quantization(tmp_path: Path):
    paths = _images(tmp_path / "img")
    prep = _prep()
    (cache, built), shas = _build(tmp_path / "cache", paths, prep)
    assert built and cache.dtype == np.uint8 and cache.shape == (6, 1, 16, 16)
    for path, cached in zip(paths, cache.unit_images(shas), strict=True):
        np.testing.assert_allclose(cached, load(prep, path), atol=0.5 / 255 + 1e-7)


def test_sixteen_bit_sources_are_cached_as_uint16(tmp_path: Path):
    paths = _images(tmp_path / "img16", mode="I;16")
    prep = _prep()
    (cache, _), shas = _build(tmp_path / "cache", paths, prep, bits=16)
    assert cache.dtype == np.uint16
    for path, cached in zip(paths, cache.unit_images(shas), strict=True):
        np.testing.assert_allclose(cached, load(prep, path), atol=0.5 / 65535 + 1e-7)


def test_reused_when_unchanged_rebuilt_when_files_or_settings_change(tmp_path: Path):
    paths = _images(tmp_path / "img")
    (first, built1), _ = _build(tmp_path / "cache", paths, _prep())
    (again, built2), _ = _build(tmp_path / "cache", paths, _prep())
    assert built1 and not built2 and again.root == first.root
    (resized, built3), _ = _build(tmp_path / "cache", paths, _prep(size=24))
    assert built3 and resized.root != first.root
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(paths[0])  # a file changed
    (changed, built4), _ = _build(tmp_path / "cache", paths, _prep())
    assert built4 and changed.root not in (first.root, resized.root)


def test_added_files_are_the_only_ones_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A data set that grew: the new cache copies the earlier one's rows and decodes only
    the new files; its pixels equal a cache built from nothing."""
    import medclf.data.cache as cache_module

    paths = _images(tmp_path / "img", n=8)
    _build(tmp_path / "cache", paths[:6], _prep())
    _build(tmp_path / "cache", paths[:6], _prep(size=24))  # other settings: never a donor
    decoded: list[str] = []
    monkeypatch.setattr(cache_module, "load", lambda p, path: decoded.append(path) or load(p, path))
    (grown, built), shas = _build(tmp_path / "cache", paths, _prep())
    assert built and sorted(decoded) == sorted(paths[6:])
    monkeypatch.setattr(cache_module, "load", load)
    (fresh, _), _ = _build(tmp_path / "fresh", paths, _prep())
    assert np.array_equal(grown.images()[grown.rows(shas)], fresh.images()[fresh.rows(shas)])


def test_duplicate_contents_are_decoded_and_stored_once(tmp_path: Path):
    paths = _images(tmp_path / "img", n=3)
    copy = tmp_path / "img" / "copy.png"
    copy.write_bytes(Path(paths[0]).read_bytes())
    (cache, _), shas = _build(tmp_path / "cache", [*paths, str(copy)], _prep())
    assert cache.shape[0] == 3
    assert cache.rows([shas[0]])[0] == cache.rows([shas[3]])[0]


def test_a_failed_build_leaves_no_cache_and_no_temp_folder(tmp_path: Path):
    paths = _images(tmp_path / "img")
    Path(paths[3]).write_bytes(b"broken")
    with pytest.raises(MedclfError, match=r"3\.png"):
        _build(tmp_path / "cache", paths, _prep())
    assert list((tmp_path / "cache").iterdir()) == []


def test_batches_come_from_the_memory_map_in_worker_processes(tmp_path: Path):
    paths = _images(tmp_path / "img", n=10)
    (cache, _), shas = _build(tmp_path / "cache", paths, _prep())
    labels = [i % 2 for i in range(10)]
    ds = CachedBatches(str(cache.images_path), cache.rows(shas), labels)
    ds[[0, 1]]  # maps the array in this process ...
    assert len(pickle.dumps(ds)) < 2000  # ... but never ships it to workers
    dm = ImageDataModule({"train": ds, "val": ds, "test": ds}, batch_size=4, num_workers=2)
    loader: DataLoader = dm.val_dataloader()
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.dtype == torch.uint8 and x.shape == (10, 1, 16, 16)
    expected = np.stack(list(cache.unit_images(shas))) * 255
    np.testing.assert_array_equal(x.numpy(), expected.round().astype(np.uint8))
    assert y.tolist() == labels
