"""Starting weights: local files load like hub weights; offline pretrained fails fast."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from medclf.config import compose
from medclf.errors import MedclfError
from medclf.models import build_model
from tests.conftest import medclf, printed_run


def _cfg(**kw):
    """The packaged resnet18 model settings (every key the schema requires), changed by kw."""
    cfg = compose(["model=resnet18", "model.pretrained=false"]).model
    for key, value in kw.items():
        cfg[key] = value
    return cfg


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 1000-class, 3-channel resnet18 state dict saved the ways users bring them."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    sd = timm.create_model("resnet18", num_classes=1000).state_dict()
    folder = tmp_path_factory.mktemp("weights")
    save_file(sd, folder / "resnet18.safetensors")
    torch.save(sd, folder / "resnet18.pth")
    # A training checkpoint as DDP scripts save it: wrapped, with "module." prefixes.
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}
    torch.save(wrapped, folder / "resnet18-ddp.pt")
    return {
        "sd": sd,
        "safetensors": folder / "resnet18.safetensors",
        "pth": folder / "resnet18.pth",
        "wrapped": folder / "resnet18-ddp.pt",
    }


@pytest.mark.parametrize("kind", ["safetensors", "pth", "wrapped"])
def test_local_weights_load_backbone_reinit_head_and_adapt_one_channel(imagenet_like, kind):
    sd = imagenet_like["sd"]
    torch.manual_seed(1)
    model = build_model(_cfg(weights=str(imagenet_like[kind])), num_classes=4, in_chans=1)
    got = model.state_dict()
    assert torch.equal(got["layer3.0.conv1.weight"], sd["layer3.0.conv1.weight"])
    # One input channel: timm sums the RGB filters, as it does for hub weights.
    assert torch.allclose(got["conv1.weight"], sd["conv1.weight"].sum(dim=1, keepdim=True))
    assert got["fc.weight"].shape == (4, 512)
    assert not torch.equal(got["fc.weight"], sd["fc.weight"][:4])  # fresh head


def test_weights_of_another_architecture_are_a_clear_error(imagenet_like):
    with pytest.raises(
        MedclfError, match=r"model.weights=.*does not fit 'resnet34'.*backbone tensors are missing"
    ):
        build_model(
            _cfg(name="resnet34", weights=str(imagenet_like["pth"])), num_classes=4, in_chans=3
        )


def test_missing_or_odd_weights_files_are_named(tmp_path: Path):
    with pytest.raises(MedclfError, match=r"model.weights=.*nope.pth: file not found"):
        build_model(_cfg(weights=str(tmp_path / "nope.pth")), num_classes=2, in_chans=1)
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(MedclfError, match=r"expected a \.safetensors"):
        build_model(_cfg(weights=str(tmp_path / "w.txt")), num_classes=2, in_chans=1)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
        ({"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}, "is not reachable"),
    ],
)
def test_offline_pretrained_fails_fast_with_a_way_out(monkeypatch, tmp_path, env, needle):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    start = time.perf_counter()
    with pytest.raises(MedclfError) as err:
        build_model(_cfg(pretrained=True), num_classes=2, in_chans=3)
    assert time.perf_counter() - start < 10
    assert needle in str(err.value) and "model.weights=FILE" in str(err.value)


@pytest.mark.parametrize("word", ["model.pretrained=true", "+model.weights=w.safetensors"])
def test_custom_cnn_refuses_pretrained_weights_at_compose(word):
    with pytest.raises(MedclfError) as err:
        compose([word])  # the packaged model is custom_cnn
    assert "custom_cnn has no pretrained weights" in str(err.value)


@pytest.mark.heavy  # about a minute on 2 cores; CI runs it with make test-heavy
def test_run_from_local_weights_evaluates_without_the_file(imagenet_like, tiny_synth, tmp_path):
    weights = tmp_path / "start.safetensors"
    weights.write_bytes(imagenet_like["safetensors"].read_bytes())
    proc = medclf(
        "train",
        f"data.path={tiny_synth}",
        "data.image_size=32",
        "model=resnet18",
        f"model.weights={weights}",
        "train.max_epochs=1",
        "train.progress_bar=false",
        "runs_root=runs",
        cwd=tmp_path,
        check=True,
    )
    run = printed_run(proc, tmp_path)
    weights.unlink()  # the checkpoint holds every weight; nothing may re-read the start file
    medclf("evaluate", f"model={run}", cwd=tmp_path, check=True)
    # nor may a resume (as after a kill between the last checkpoint and the summary)
    (run / "train_summary.json").unlink()
    medclf("train", f"resume={run}", cwd=tmp_path, check=True)
    assert (run / "train_summary.json").is_file()
