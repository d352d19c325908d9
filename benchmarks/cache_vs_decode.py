"""Data time per epoch: the decode-once cache vs decoding every file every epoch.

Same run, same images (the training split of chest_ct), same 224 px settings, same model,
same Lightning trainer; only the dataset differs. "Data time" is what Lightning's
SimpleProfiler records for fetching training batches (``train_dataloader_next``); the epoch
time includes the model. The one-time cache build is reported separately. Each side runs
``--repeats`` epochs, alternating, after one warm-up epoch of each; min and median are printed
(the cached side is tens of milliseconds per epoch, so one timing of it says little).

    .venv/bin/python benchmarks/cache_vs_decode.py [--data ../shared/datasets/chest_ct/Data]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import Timing, alternate, ratio_text

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "chest_ct" / "Data"
DATA_KEY = "[_TrainingEpochLoop].train_dataloader_next"


def one_epoch(dataset, prep, cfg, batch_size: int, workers: int, out: str) -> tuple[float, float]:
    """(data seconds, epoch seconds) for one training epoch over ``dataset``."""
    import lightning as L
    from lightning.pytorch.profilers import SimpleProfiler

    from medclf.data.datamodule import ImageDataModule
    from medclf.models import build_model
    from medclf.training.losses import build_loss
    from medclf.training.module import Classifier
    from medclf.training.stages import resolve_stages

    L.seed_everything(0, verbose=False)
    k = len(prep.class_names)
    model = build_model(cfg.model, num_classes=k, in_chans=prep.channels)
    module = Classifier(
        model,
        num_classes=k,
        stages=resolve_stages(cfg.train),
        loss=build_loss(cfg.train.loss, [1] * k),
        augment={"hflip": 0.5, "rotate_degrees": 10},
        mean=prep.mean,
        std=prep.std,
        image_size=prep.image_size,
    )
    dm = ImageDataModule({"train": dataset, "val": dataset}, batch_size, workers)
    profiler = SimpleProfiler(dirpath=out, filename="profile")  # report to a file, not stdout
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        profiler=profiler,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    epoch = time.perf_counter() - start
    return float(sum(profiler.recorded_durations[DATA_KEY])), epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--model", default="custom_cnn")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("medclf").setLevel(logging.ERROR)

    from medclf.config import compose
    from medclf.data.datamodule import CachedBatches, DecodedBatches
    from medclf.data.prepare import prepare_data, provisional_preprocessing
    from medclf.training.run import quiet_lightning

    quiet_lightning()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(
            [
                f"data.path={args.data}",
                f"data.image_size={args.image_size}",
                f"data.channels={args.channels}",
                f"model={args.model}",
                f"runs_root={tmp}",
            ]
        )
        prepared = prepare_data(cfg.data, progress=False)
        table = prepared.table
        prep = provisional_preprocessing(cfg.data, table)
        train = table[table["split"] == "train"]
        labels = [prep.class_names.index(c) for c in train["label"]]

        start = time.perf_counter()
        cache, _ = prepared.build_cache(cfg.data.cache_dir, prep, progress=False)
        build_s = time.perf_counter() - start
        cached = CachedBatches(str(cache.images_path), cache.rows(list(train["sha256"])), labels)
        decoded = DecodedBatches(list(train["path"]), labels, prep)

        # One warm-up epoch of each (page cache, allocator), then the sides alternate.
        run = (cfg, args.batch_size, args.workers, tmp)
        one_epoch(decoded, prep, *run)
        one_epoch(cached, prep, *run)
        epochs: dict[str, Timing] = {"decode": Timing(), "cache": Timing()}

        def side(name: str, dataset):
            def measure() -> float:
                data_s, epoch_s = one_epoch(dataset, prep, *run)
                epochs[name].values.append(epoch_s)
                return data_s

            return measure

        data = alternate(
            {"decode": side("decode", decoded), "cache": side("cache", cached)}, args.repeats
        )

    n = len(train)
    print(
        f"chest_ct train split: {n} images at {args.image_size}px x{args.channels}ch, "
        f"batch {args.batch_size}, workers {args.workers}, model {args.model}, cpu"
    )
    print(f"cache build (once): {build_s:.1f} s for {len(table)} images ({cache.dtype.name})")
    for name, label in (("decode", "decode each epoch"), ("cache", "decode-once cache")):
        print(f"{label:18s} data/epoch {data[name].text(digits=3)}")
        print(f"{'':18s} epoch      {epochs[name].text()}")
    worst = data["decode"].min / max(d for d in data["cache"].values)
    verdict = "PASS" if worst >= 5 else "FAIL"
    print(f"data time ratio (decode / cache): {ratio_text(data['decode'], data['cache'])}")
    print(f"  slowest cache epoch vs fastest decode epoch: {worst:.1f}x (target >= 5x: {verdict})")
    print(f"epoch time ratio (decode / cache): {ratio_text(epochs['decode'], epochs['cache'], 2)}")


if __name__ == "__main__":
    main()
