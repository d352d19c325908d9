"""The fold ensemble: the mean of its folds' probabilities, each fold fed the normalization
it was trained with, one fold alone on request, and a checkpoint that loads it back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medclf.config import compose
from medclf.errors import MedclfError
from medclf.models import build_model
from medclf.models.checkpoint import model_from_checkpoint
from medclf.models.embedding import WithEmbedding
from medclf.models.ensemble import FoldEnsemble

STATS = [((0.2, 0.4), (0.1, 0.3)), ((0.3, 0.5), (0.2, 0.25)), ((0.25, 0.45), (0.15, 0.2))]
ENSEMBLE_STATS = ((0.5, 0.5), (0.25, 0.25))


def _networks(n: int = 3) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    cfg = compose([]).model
    return [build_model(cfg, num_classes=3, in_chans=2).eval() for _ in range(n)]


def _ensemble() -> tuple[FoldEnsemble, list[torch.nn.Module]]:
    networks = _networks()
    model = FoldEnsemble(networks, channels=2).eval()
    model.set_normalization(ENSEMBLE_STATS, STATS)
    return model, networks


def _normalized(raw: torch.Tensor, stats) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in stats)
    return (raw - mean) / std


def test_the_output_is_the_mean_probability_of_folds_fed_their_own_normalization():
    model, networks = _ensemble()
    raw = torch.rand(5, 2, 32, 32)
    with torch.inference_mode():
        got = torch.softmax(model(_normalized(raw, ENSEMBLE_STATS)), dim=1)
        each = [
            torch.softmax(f(_normalized(raw, s)), 1) for f, s in zip(networks, STATS, strict=True)
        ]
    torch.testing.assert_close(got, torch.stack(each).mean(0), rtol=1e-5, atol=1e-6)
    with torch.inference_mode(), model.single_fold(1):
        alone = torch.softmax(model(_normalized(raw, ENSEMBLE_STATS)), dim=1)
    torch.testing.assert_close(alone, each[1], rtol=1e-5, atol=1e-6)
    assert model.only is None  # back to the ensemble after the block
    with pytest.raises(MedclfError, match="3 folds"), model.single_fold(3):
        pass


def test_the_embedding_is_the_first_folds_and_the_checkpoint_round_trips(tmp_path: Path):
    model, networks = _ensemble()
    x = torch.rand(2, 2, 32, 32)
    _, embedding = WithEmbedding(model, (2, 32, 32))(x)
    fold_input = x * model.input_scale[0].view(1, -1, 1, 1) + model.input_shift[0].view(1, -1, 1, 1)
    _, first = WithEmbedding(networks[0], (2, 32, 32))(fold_input)
    torch.testing.assert_close(embedding, first, rtol=1e-5, atol=1e-5)

    meta = {
        "model": {"name": "custom_cnn"},
        "num_classes": 3,
        "in_chans": 2,
        "preprocessing": {"image_size": 32},
        "ensemble": {"folds": 3},
    }
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": state, "medclf": meta}, path)
    loaded, _ = model_from_checkpoint(path)
    assert isinstance(loaded, FoldEnsemble) and len(loaded.folds) == 3
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x))
    torch.save({"state_dict": state, "medclf": {**meta, "ensemble": {"folds": 500}}}, path)
    with pytest.raises(MedclfError, match="500 folds"):
        model_from_checkpoint(path)


def test_grad_cam_explains_the_ensemble_through_every_fold():
    from medclf.inference.explain import gradcam_maps

    model, _ = _ensemble()
    maps = gradcam_maps(model, torch.rand(2, 2, 32, 32).numpy(), [0, 2])
    assert maps.shape == (2, 32, 32)
    assert maps.min() >= 0 and maps.max() <= 1 and maps.max() > 0
