from pathlib import Path

import lightning as L
import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from medclf.config import compose
from medclf.data.datamodule import CachedBatches, ImageDataModule
from medclf.models import build_model
from medclf.models.checkpoint import model_from_checkpoint
from medclf.training.losses import build_loss
from medclf.training.module import Classifier
from medclf.training.stages import resolve_stages


def _module(cfg, **kw) -> Classifier:
    model = build_model(cfg.model, num_classes=3, in_chans=1)
    meta = {
        "model": OmegaConf.to_container(cfg.model),
        "num_classes": 3,
        "in_chans": 1,
        "preprocessing": {"image_size": 32},
    }
    return Classifier(
        model,
        3,
        resolve_stages(cfg.train),
        build_loss(cfg.train.loss, [1, 1, 1]),
        image_size=32,
        checkpoint_meta=meta,
        **kw,
    )


def _fit(module: Classifier, epochs: int = 2) -> L.Trainer:
    x, y = torch.rand(20, 1, 32, 32), torch.arange(20) % 3
    loader = DataLoader(TensorDataset(x, y), batch_size=5)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, loader, loader)
    return trainer


def test_ema_weights_are_the_ones_checkpointed_for_inference(tmp_path: Path):
    cfg = compose(["model.hidden_dims=[8]", "model.fc_hidden=0", "train.max_epochs=2"])
    module = _module(cfg, ema_decay=0.5)
    trainer = _fit(module)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded, meta = model_from_checkpoint(path)
    assert meta["ema"] is True
    ema = module.ema.module.state_dict()
    live = module.model.state_dict()
    got = loaded.state_dict()
    assert all(torch.equal(got[k], ema[k]) for k in got)
    assert any(not torch.equal(ema[k], live[k]) for k in live if live[k].is_floating_point())


def test_mixup_trains_with_an_odd_batch():
    cfg = compose(["model.hidden_dims=[8]", "model.fc_hidden=0"])
    module = _module(
        cfg,
        mixup={
            "mixup_alpha": 0.4,
            "cutmix_alpha": 1.0,
            "prob": 1.0,
            "switch_prob": 0.5,
            "label_smoothing": 0.0,
        },
    )
    assert module.mixup is not None
    loss = module.training_step((torch.rand(5, 1, 32, 32), torch.tensor([0, 1, 2, 0, 1])), 0)
    assert torch.isfinite(loss) and loss.requires_grad


def test_weighted_sampler_balances_classes(tmp_path: Path):
    labels = np.array([0] * 90 + [1] * 10)
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((100, 1, 4, 4), dtype=np.uint8))
    ds = CachedBatches(str(images), np.arange(100), labels)
    counts = np.bincount(labels)
    torch.manual_seed(0)
    dm = ImageDataModule(
        {"train": ds}, batch_size=10, train_weights=[1.0 / counts[c] for c in labels]
    )
    drawn = np.concatenate([y.numpy() for _ in range(20) for _, y in dm.train_dataloader()])
    assert 0.4 < drawn.mean() < 0.6  # class 1 is 10% of the data, about half of the draws
    plain = ImageDataModule({"train": ds}, batch_size=10)
    drawn = np.concatenate([y.numpy() for _, y in plain.train_dataloader()])
    assert drawn.mean() == 0.1
