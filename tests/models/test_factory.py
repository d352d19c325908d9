import pytest
import torch
from omegaconf import OmegaConf

from medclf.config import compose
from medclf.errors import MedclfError
from medclf.models import build_model


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("pool", ["avg", "catavgmax"])
def test_custom_cnn_shapes(in_chans: int, pool: str):
    cfg = compose([f"model.global_pool={pool}", "model.hidden_dims=[8,16]", "model.fc_hidden=0"])
    model = build_model(cfg.model, num_classes=5, in_chans=in_chans).eval()
    assert model(torch.zeros(2, in_chans, 40, 40)).shape == (2, 5)


def test_custom_cnn_validates_its_config():
    cfg = compose(["model.kernel_size=4"])
    with pytest.raises(MedclfError, match="kernel_size"):
        build_model(cfg.model, num_classes=2, in_chans=1)


def test_timm_model_by_name():
    cfg = compose(["model=resnet18"])
    model = build_model(cfg.model, num_classes=3, in_chans=1).eval()
    assert model(torch.zeros(1, 1, 64, 64)).shape == (1, 3)


def test_unknown_model_suggests_close_names():
    with pytest.raises(MedclfError, match="resnet18"):
        build_model(OmegaConf.create({"name": "resnet_18"}), num_classes=2, in_chans=1)
