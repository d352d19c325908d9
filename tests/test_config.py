import pytest

from medclf.config import compose
from medclf.errors import MedclfError


def test_defaults_compose():
    cfg = compose([])
    assert cfg.model.name == "custom_cnn" and cfg.data.split_ratios == [0.7, 0.15, 0.15]
    assert cfg.train.monitor == "val/loss"


def test_any_timm_name_and_value_overrides():
    cfg = compose(["model=efficientnet_b0", "train.lr=0.01", "data.image_size=96"])
    assert cfg.model.name == "efficientnet_b0" and cfg.model.pretrained == "auto"
    assert cfg.train.lr == 0.01 and cfg.data.image_size == 96
    assert compose(["model=resnet18"]).model.name == "resnet18"


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(MedclfError, match=r"unknown config key 'train\.lrr'.*train\.lr"):
        compose(["train.lrr=0.1"])
    with pytest.raises(MedclfError, match="not a key=value"):
        compose(["train.lr"])


def test_values_hydra_cannot_parse_are_taken_literally():
    cfg = compose([r"data.label_pattern=CONTRAST_(\d)", "data.image_root=/x/it's (copy)"])
    assert cfg.data.label_pattern == r"CONTRAST_(\d)"
    assert cfg.data.image_root == "/x/it's (copy)"


def test_a_config_from_an_earlier_medclf_gets_the_keys_added_since():
    from omegaconf import OmegaConf

    from medclf.config import upgraded

    saved = OmegaConf.create(
        {
            "seed": 7,
            "data": {"path": "/old", "channels": 3, "retired": 1},  # no trim/resize/patient_pattern
            "model": {"name": "resnet18", "pretrained": False},  # no head, head_hidden, weights
        }
    )
    cfg = upgraded(saved)
    assert cfg.seed == 7 and cfg.data.path == "/old" and cfg.data.channels == 3
    assert cfg.data.retired == 1  # kept, unused
    packaged = compose(["model=resnet18"])
    assert (cfg.data.trim, cfg.data.resize) == (packaged.data.trim, packaged.data.resize)
    assert cfg.data.patient_pattern == packaged.data.patient_pattern
    assert cfg.model.head == "linear" and cfg.model.pretrained is False
    assert "hidden_dims" not in cfg.model  # the saved architecture's family, not custom_cnn's
