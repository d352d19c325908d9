from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from medclf.config import compose
from medclf.models import build_model
from medclf.models.architectures import resolve_input_config, timm_name
from medclf.models.factory import MLPHead, backbone_blocks, head_module
from medclf.training.stages import apply_trainable, resolve_stages

# Every name the training-engine issue lists, as users type it. The large ones take 30-90 s
# each to export on 2 CPU cores: their export runs under the `heavy` marker (.ci/run runs it;
# `make test` does not), while every one of them still trains a step in `make test`.
HEAVY = {
    "regnety_006",  # regnety_004 exports the same family in make test
    "resnet50",
    "tf_efficientnetv2_s",
    "convnextv2_tiny",
    "xception",
    "densenet121",
    "tf_efficientnetv2_m",
    "tf_efficientnetv2_l",
    "convnextv2_base",
    "swin_t",
    "swin_s",
    "RegNetY-4GF",
    "RegNetY-8GF",
    "vit_b_16",
}
ARCHITECTURES = [
    "custom_cnn",
    "medical_cnn",
    "resnet18",
    "resnet50",
    "efficientnet_b0",
    "tf_efficientnetv2_s",
    "tf_efficientnetv2_m",
    "tf_efficientnetv2_l",
    "convnextv2_tiny",
    "convnextv2_base",
    "regnety_004",
    "regnety_006",
    "RegNetY-4GF",
    "RegNetY-8GF",
    "swin_t",
    "swin_s",
    "vit_b_16",
    "xception",
    "densenet121",
]


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("alias", "arch", "cls"),
    [
        ("swin_t", "swin_tiny_patch4_window7_224", "SwinTransformer"),
        ("swin_s", "swin_small_patch4_window7_224", "SwinTransformer"),
        ("vit_b_16", "vit_base_patch16_224", "VisionTransformer"),
        ("RegNetY-4GF", "regnety_040", "RegNet"),
        ("RegNetY-8GF", "regnety_080", "RegNet"),
        ("regnet_y_400mf", "regnety_004", "RegNet"),
        ("efficientnet_v2_s", "tf_efficientnetv2_s", "EfficientNet"),
        ("xception", "legacy_xception", "Xception"),
        ("medical_cnn", "efficientnet_b0", "EfficientNet"),
    ],
)
def test_aliases_build_the_architecture_they_name(alias: str, arch: str, cls: str):
    assert timm_name(alias) == arch
    model = build_model(compose([f"model={alias}"]).model, num_classes=3, in_chans=3)
    reference = timm.create_model(arch, num_classes=3)
    assert type(model).__name__ == cls
    if alias != "medical_cnn":  # medical_cnn swaps in the MLP head
        assert _n_params(model) == _n_params(reference)


def test_xception_is_chollets_xception_not_an_efficientnet():
    model = build_model(compose(["model=xception"]).model, num_classes=2, in_chans=1)
    names = [type(m).__name__ for m in model.modules()]
    assert "SeparableConv2d" in names and "Block" in names
    assert not any("Efficient" in n or "DepthwiseSeparable" in n for n in names)
    assert 20e6 < _n_params(model) < 22e6  # Xception: 22.9M with the 1000-class head


@pytest.mark.parametrize(
    ("model", "size", "mean0", "normalize"),
    [
        ("resnet18", 224, 0.485, "model"),
        ("xception", 299, 0.5, "model"),
        ("tf_efficientnetv2_s", 300, 0.5, "model"),
        ("custom_cnn", 64, None, "dataset"),
    ],
)
def test_input_size_and_normalization_default_to_the_models(
    model: str, size: int, mean0: float | None, normalize: str
):
    cfg = compose([f"model={model}"])
    defaults = resolve_input_config(cfg)
    assert cfg.data.image_size == size and cfg.data.normalize == normalize
    assert (defaults.mean[0] if defaults else None) == mean0


def test_explicit_input_settings_win_over_model_defaults():
    cfg = compose(["model=resnet18", "data.image_size=96", "data.normalize=dataset"])
    resolve_input_config(cfg)
    assert cfg.data.image_size == 96 and cfg.data.normalize == "dataset"


def test_fixed_size_transformers_build_for_another_input_size():
    model = build_model(compose(["model=vit_b_16"]).model, 2, 1, image_size=64).eval()
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 2)


def test_mlp_head_is_the_seeds_head_on_timm_features():
    cfg = compose(["model=resnet18", "model.head=mlp", "model.head_hidden=32"])
    model = build_model(cfg.model, num_classes=4, in_chans=1).eval()
    head = head_module(model)
    assert isinstance(head, MLPHead)
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["LayerNorm", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert head[0].normalized_shape == (512,) and head[2].out_features == 32
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 4)


def test_medical_cnn_trains_only_its_head_by_default():
    cfg = compose(["model=medical_cnn"])
    model = build_model(cfg.model, num_classes=3, in_chans=1)
    (stage,) = resolve_stages(cfg.train, bool(cfg.model.freeze_backbone))
    backbone, _ = apply_trainable(model, stage)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert backbone == [] and trainable == {id(p) for p in head_module(model).parameters()}
    assert isinstance(head_module(model), MLPHead)


def test_last_n_blocks_unfreezes_the_deepest_blocks():
    model = build_model(compose(["model=resnet18"]).model, num_classes=2, in_chans=1)
    (stage,) = resolve_stages(compose(["model=resnet18", "train.trainable=1"]).train)
    backbone, _ = apply_trainable(model, stage)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(n.startswith(("layer4.", "fc.")) for n in names)
    assert {id(p) for p in backbone} == {id(p) for p in backbone_blocks(model)[-1]}


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_architecture_trains_a_step(name: str):
    from medclf.training.losses import build_loss
    from medclf.training.module import Classifier

    cfg = compose([f"model={name}"])
    stages = resolve_stages(cfg.train, bool(cfg.model.get("freeze_backbone")))
    model = build_model(cfg.model, num_classes=3, in_chans=1, image_size=64)
    module = Classifier(model, 3, stages, build_loss(cfg.train.loss, [1, 1, 1]), image_size=64)
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    optimizer = torch.optim.SGD(trainable, lr=0.1)
    module.train()
    loss = module.training_step((torch.rand(4, 1, 64, 64), torch.tensor([0, 1, 2, 0])), 0)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainable, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.heavy) if n in HEAVY else n for n in ARCHITECTURES]
)
def test_every_architecture_trains_and_exports(name: str, tmp_path: Path, tiny_synth: Path):
    from medclf.export.onnx import export_onnx
    from medclf.training.run import train

    # The deep models get a whole epoch (about 9 steps): after a single step their batch-norm
    # running statistics are still near init and, in eval mode, tf_efficientnetv2_l's logits
    # reach 1e6 and differ by 50% between float32 and float64 in PyTorch itself, so no export
    # could match it. After an epoch its ONNX parity is 2e-7.
    steps = [] if name in HEAVY else ["train.limit_train_batches=1"]
    cfg = compose(
        [
            f"model={name}",
            f"data.path={tiny_synth}",
            "data.image_size=64",
            "data.batch_size=4",
            "train.max_epochs=1",
            *steps,
            "train.progress_bar=false",
            "logger=[]",
            f"runs_root={tmp_path}",
        ]
    )
    result = train(cfg)
    ckpt = torch.load(result.run.best_ckpt, weights_only=True)
    assert ckpt["medclf"]["model"]["name"] == name
    exported = export_onnx(result.run.root)
    assert exported.parity["passed"] and exported.parity["top1_agreement"] == 1.0
