"""Training images/s: medclf vs a plain PyTorch loop in the seeds' style, same run.

Both train timm's resnet18 from scratch at 128 px (3 channels) on the chest_ct training split
with batch 32, AdamW and cross-entropy, with a horizontal flip and a 10 degree rotation as
augmentation, on this machine's CPU (or GPU when --device cuda).

- plain: torchvision ImageFolder + PIL decode + torchvision transforms per image in a
  DataLoader (the seeds' pipeline), a hand-written loop; timed over its second epoch. Both
  num_workers=0 and num_workers=2 are measured and the faster one is the baseline.
- medclf: ``medclf train`` through its real entry point (decode-once cache, on-device
  augmentation, Lightning loop); ``perf/train_images_per_s`` of its second epoch, which
  excludes validation exactly as the plain loop does.

Each measurement runs in its own process (no shared thread pools or allocator state), the
variants alternate, and each variant's best of ``--repeats`` is compared: on a shared 2-core
machine single runs of the same code vary by about 10%. Both train ``--batches`` batches per
epoch.

    .venv/bin/python benchmarks/train_throughput.py [--data ../shared/datasets/chest_ct/Data]
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "chest_ct" / "Data"


def plain_images_per_s(
    data: Path, size: int, batch: int, workers: int, device: str, batches: int
) -> float:
    import timm
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    torch.manual_seed(0)
    tf = transforms.Compose(
        [
            transforms.Resize((size, size)),
            transforms.RandomHorizontalFlip(),
            transforms.RandomRotation(10),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    ds = datasets.ImageFolder(str(data / "train"), transform=tf)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers)
    model = timm.create_model("resnet18", num_classes=len(ds.classes)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    rate = 0.0
    for _epoch in range(2):
        seen, start = 0, time.perf_counter()
        for step, (x, y) in enumerate(loader):
            if step == batches:
                break
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
            seen += len(y)
        if device == "cuda":
            torch.cuda.synchronize()
        rate = seen / (time.perf_counter() - start)
    return rate


def medclf_images_per_s(data: Path, size: int, batch: int, accelerator: str, batches: int) -> float:
    import pandas as pd

    from medclf.config import compose
    from medclf.training.run import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(
            [
                f"data.path={data}",
                "model=resnet18",
                f"data.image_size={size}",
                "data.channels=3",
                f"data.batch_size={batch}",
                "data.augment.hflip=0.5",
                "data.augment.rotate_degrees=10",
                "train.max_epochs=2",
                f"train.limit_train_batches={batches}",
                "train.early_stopping.enabled=false",
                f"train.accelerator={accelerator}",
                "train.progress_bar=false",
                "logger=[]",
                f"runs_root={tmp}",
            ]
        )
        result = train(cfg)
        epochs = pd.read_csv(result.run.metrics_csv)
        return float(epochs["perf/train_images_per_s"].iloc[-1])


def measure(args: argparse.Namespace) -> float:
    logging.getLogger("medclf").setLevel(logging.ERROR)
    from medclf.training.run import quiet_lightning

    quiet_lightning()
    data, size, batch = Path(args.data), args.image_size, args.batch_size
    if args.variant == "medclf":
        accelerator = "gpu" if args.device == "cuda" else "cpu"
        return medclf_images_per_s(data, size, batch, accelerator, args.batches)
    workers = int(args.variant.removeprefix("plain"))
    return plain_images_per_s(data, size, batch, workers, args.device, args.batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=10, help="training batches per epoch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(f"RATE {measure(args)}")
        return

    variants = ["plain0", "medclf", "plain2"]
    rates: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for variant in variants:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--variant", variant]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rates[variant].append(float(out.split("RATE ")[-1]))
    best = {v: max(r) for v, r in rates.items()}
    baseline_variant = max(["plain0", "plain2"], key=best.get)
    print(
        f"resnet18, {args.image_size}px x3ch, batch {args.batch_size}, {args.batches} batches "
        f"per epoch, chest_ct train split, {args.device}, best of {args.repeats}"
    )
    labels = {
        "plain0": "plain PyTorch loop (ImageFolder+PIL, num_workers=0)",
        "plain2": "plain PyTorch loop (ImageFolder+PIL, num_workers=2)",
        "medclf": "medclf train (cache + on-device augmentation)",
    }
    for v in variants:
        runs = ", ".join(f"{r:.1f}" for r in rates[v])
        print(f"{labels[v]:<54s} {best[v]:7.1f} images/s  (runs: {runs})")
    ratio = best["medclf"] / best[baseline_variant]
    verdict = "PASS" if ratio >= 1.0 else "FAIL"
    print(f"ratio medclf / best plain: {ratio:.2f}x  (target >= 1.0x: {verdict})")


if __name__ == "__main__":
    main()
