from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from PIL import Image

from medclf.config import compose, compose_for_training
from medclf.errors import MedclfError
from medclf.schema_kinds import parse_duration
from medclf.training.recipe import (
    DataProfile,
    apply,
    choose_numerics,
    fit_budget,
    fit_epochs,
    plan,
    profile_data,
    wanted_epochs,
)
from medclf.words import keys as override_keys
from tests.conftest import medclf


def _profile(**kw) -> DataProfile:
    base = dict(
        n_train=600,
        n_val=70,
        class_counts={"a": 200, "b": 150, "c": 130, "d": 120},
        short_side=260,
        aspect_spread=0.9,
        grayscale=True,
        framed=True,
    )
    return DataProfile(**{**base, **kw})


def test_small_framed_grayscale_set_on_a_cpu():
    v = plan(_profile(), on_gpu=False, pretrained=False).values
    # 224 px planned on any hardware; fit_budget lowers it when the epochs would be too few
    assert (v["data.image_size"], v["data.channels"]) == (224, 1)
    assert (v["data.trim"], v["data.resize"]) == ("foreground", "letterbox")
    assert v["train.loss.class_weights"] == "balanced" and v["train.sampler"] is None
    assert v["data.augment"]["scale"] == [0.85, 1.15]  # strong: few images
    assert v["data.normalize"] == "dataset" and v["train.lr"] == 2e-3
    assert v["train.monitor"] == "val/auc_macro" and v["train.ema.enabled"]


def test_choices_follow_size_balance_colour_framing_and_hardware():
    big = plan(
        _profile(
            n_train=20000,
            class_counts={"a": 18000, "b": 2000},
            short_side=1024,
            aspect_spread=0.0,
            grayscale=False,
            framed=False,
        ),
        on_gpu=True,
        pretrained=True,
    ).values
    assert (big["data.image_size"], big["data.channels"], big["data.batch_size"]) == (224, 3, 64)
    assert (big["data.trim"], big["data.resize"]) == ("none", "squash")
    assert big["train.sampler"] == "weighted" and big["train.loss.class_weights"] is None
    assert big["data.augment"]["scale"] == [0.95, 1.05]  # light: many images
    assert big["data.normalize"] == "model" and big["train.lr"] == 5e-4
    balanced = plan(_profile(class_counts={"a": 50, "b": 55}), False, False).values
    assert balanced["train.loss.class_weights"] is None and balanced["train.sampler"] is None
    small_images = plan(_profile(short_side=70), False, False)
    assert small_images.values["data.image_size"] == 64 and small_images.notes
    # the EMA averages over about two epochs of steps
    assert plan(_profile(n_train=64), False, False).values["train.ema.decay"] == 0.9375
    assert plan(_profile(n_train=16), False, False).values["train.ema.decay"] == 0.9


def test_epochs_fill_the_budget_within_bounds():
    r = plan(_profile(), False, False)
    fit_epochs(r, seconds_per_epoch=30.0, budget_s=900)
    assert r.values["train.max_epochs"] == 27  # 0.9 * 900 / 30
    assert r.values["train.min_epochs"] == 13 and r.values["train.early_stopping.patience"] == 6
    slow = plan(_profile(), False, False)
    fit_epochs(slow, seconds_per_epoch=600.0, budget_s=900)
    assert slow.values["train.max_epochs"] == 5 and "budget allows 1 epochs" in slow.notes[-1]
    fast = plan(_profile(), False, False)
    fit_epochs(fast, seconds_per_epoch=0.01, budget_s=3600)
    assert fast.values["train.max_epochs"] == 200


def test_keys_on_the_command_line_are_kept():
    overrides = [
        "data.image_size=96",
        "data.augment.hflip=0",
        "train=two_stage",
        "model.dropout=0.1",
    ]
    keep = override_keys(overrides)
    cfg = compose_for_training(overrides)
    assert cfg.recipe == "auto" and cfg.model.name == "custom_cnn"  # a model key was named
    r = plan(_profile(), False, False)
    fit_epochs(r, 30.0, 900)
    changed = apply(cfg, r, keep)
    assert cfg.data.image_size == 96 and "data.image_size" not in changed
    assert cfg.data.augment.scale is None and r.augment == "custom"  # the user's augmentation
    assert cfg.train.stages is not None and not any(k.startswith("train.") for k in changed)
    assert cfg.data.trim == "foreground" and "data.trim" in changed
    assert compose_for_training([]).model.name == "resnet18"
    assert compose_for_training(["recipe=none"]).model.name == "custom_cnn"
    assert compose([]).recipe == "none"  # the Python API's default


@pytest.mark.parametrize(
    ("value", "seconds"), [(900, 900.0), ("15m", 900.0), ("1.5h", 5400.0), ("30 s", 30.0)]
)
def test_time_budget_durations(value, seconds):
    assert parse_duration(value) == seconds


def test_bad_time_budget_and_recipe_are_refused_at_compose():
    with pytest.raises(MedclfError, match=r"train\.time_budget=fortnight"):
        compose(["train.time_budget=fortnight"])
    with pytest.raises(MedclfError, match="recipe=fast"):
        compose(["recipe=fast"])
    with pytest.raises(MedclfError, match=r"model\.pretrained"):
        compose(["model=resnet18", "model.pretrained=maybe"])


def _framed_png(path: Path, w: int, h: int) -> None:
    arr = np.zeros((h, w), np.uint8)
    arr[h // 4 : 3 * h // 4, w // 5 : 4 * w // 5] = 160
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_profile_reads_sizes_framing_and_colour(tmp_path: Path):
    rows = []
    for i in range(8):
        p = tmp_path / f"{i}.png"
        _framed_png(p, 300, 200)
        rows.append({"path": str(p), "label": "ab"[i % 2], "split": "train" if i < 6 else "val"})
    table = pd.DataFrame(rows)
    scanned = pd.DataFrame({"width": [300] * 8, "height": [200] * 8, "mode": ["L"] * 8})

    def images(n):
        for p in table["path"][:n]:
            yield np.asarray(Image.open(p), np.float32) / 255

    prof = profile_data(table, scanned, images)
    assert (prof.n_train, prof.n_val, prof.short_side) == (6, 2, 200)
    assert prof.framed and prof.grayscale and prof.aspect_spread == 1.0
    assert prof.class_counts == {"a": 3, "b": 3}


def test_dry_run_prints_the_recipe_and_writes_no_run(tiny_synth: Path, tmp_path: Path):
    proc = medclf(
        "train",
        "--dry-run",
        "recipe=auto",  # train's default; named because the test runner adds recipe=none
        f"data.path={tiny_synth}",
        "train.time_budget=60",
        "data.batch_size=8",
        "runs_root=runs",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1]
    # the 48 px phantoms are thumbnails: 64 px, not trimmed
    assert line.startswith("recipe: resnet18 from scratch, 64 px 1-channel"), line
    assert "trim none" in line and "48 px thumbnails" in line
    assert "batch 8" in line and "epochs (~" in line
    cfg = OmegaConf.create(proc.stdout.rsplit("recipe: ", 1)[0])
    assert cfg.data.batch_size == 8 and cfg.model.name == "resnet18"
    assert cfg.model.pretrained is False  # auto, offline, nothing cached: from scratch
    assert 5 <= cfg.train.max_epochs <= 200
    assert not any((tmp_path / "runs").glob("*/*/config.yaml"))
    assert "training from scratch" in proc.stderr


def test_named_epochs_keep_a_schedule_scaled_to_them(tiny_synth: Path, tmp_path: Path):
    """train.max_epochs=40 on the command line: the budget does not choose the epochs, but
    warm-up, patience and minimum epochs still fit 40 (not the packaged 0 and 5)."""
    proc = medclf("train", "--dry-run", "recipe=auto", f"data.path={tiny_synth}",
                  "train.max_epochs=40", "train.early_stopping.patience=7", "data.batch_size=8",
                  "runs_root=runs", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = OmegaConf.create(proc.stdout.rsplit("recipe: ", 1)[0]).train
    assert (cfg.max_epochs, cfg.scheduler.warmup_epochs, cfg.min_epochs) == (40, 2, 20)
    assert cfg.early_stopping.patience == 7  # named: kept


def test_input_shrinks_until_the_budget_affords_enough_epochs():
    cfg = compose(["data.path=x"])
    recipe = plan(_profile(), on_gpu=False, pretrained=False)
    apply(cfg, recipe, ())
    per_epoch = {224: 14.0, 192: 10.0, 160: 8.5, 128: 6.5, 96: 4.0, 64: 2.0}  # bf16, 2 cores
    probed = []

    def probe() -> float:
        probed.append(int(cfg.data.image_size))
        return per_epoch[int(cfg.data.image_size)]

    fit_budget(cfg, recipe, (), 900, probe, n_train=600)
    # 0.9 * 900 / 8.5 = 95 epochs at 160 px is too few for 600 images; 124 at 128 px is enough
    assert probed == [224, 192, 160, 128]
    assert cfg.data.image_size == 128 and cfg.train.max_epochs == 124
    assert any("lowered to 128 px" in n for n in recipe.notes)

    named = compose(["data.path=x", "data.image_size=224"])
    kept = plan(_profile(), on_gpu=False, pretrained=False)
    apply(named, kept, ("data.image_size",))
    fit_budget(named, kept, ("data.image_size",), 900, lambda: per_epoch[224], n_train=600)
    assert named.data.image_size == 224 and named.train.max_epochs == 57

    # a large set needs fewer epochs for as many updates: 5000 images want 15 epochs; 70 s
    # per epoch at 224 px affords 11, too few; 192 px (52 s) affords 15, enough
    large = compose(["data.path=x"])
    big = plan(_profile(n_train=5000), on_gpu=False, pretrained=False)
    apply(large, big, ())
    seconds = {224: 70.0, 192: 52.0, 160: 38.0, 128: 27.0, 96: 15.0, 64: 7.0}
    fit_budget(large, big, (), 900, lambda: seconds[int(large.data.image_size)], n_train=5000)
    assert wanted_epochs(5000) == 15 and wanted_epochs(600) == 100
    assert wanted_epochs(100) == 100 and wanted_epochs(50_000) == 5
    assert large.data.image_size == 192 and large.train.max_epochs == 15


def _numerics_probe(cfg, plain_s: float, fast_s: float):
    return lambda: fast_s if cfg.train.precision == "bf16-mixed" else plain_s


@pytest.mark.parametrize(
    ("plain_s", "fast_s", "precision", "channels_last"),
    [(14.0, 6.5, "bf16-mixed", True), (14.0, 13.0, "32", False), (9.0, 30.0, "32", False)],
)
def test_bf16_and_channels_last_only_where_the_probe_finds_them_faster(
    plain_s, fast_s, precision, channels_last
):
    cfg = compose(["data.path=x"])
    recipe = plan(_profile(), on_gpu=False, pretrained=False)
    apply(cfg, recipe, ())
    choose_numerics(cfg, recipe, (), _numerics_probe(cfg, plain_s, fast_s))
    assert (cfg.train.precision, cfg.train.channels_last) == (precision, channels_last)
    faster = precision == "bf16-mixed"
    assert any("2.2x faster than 32-bit" in n for n in recipe.notes) is faster
    assert ("bf16 mixed precision" in recipe.line(cfg)) is faster


def test_named_precision_is_kept_by_the_numerics_choice():
    cfg = compose(["data.path=x", "train.precision=32"])
    recipe = plan(_profile(), on_gpu=False, pretrained=False)
    choose_numerics(cfg, recipe, ("train.precision",), _numerics_probe(cfg, 14.0, 6.5))
    assert str(cfg.train.precision) == "32" and cfg.train.channels_last is False
    assert not recipe.notes


def test_fast_probe_times_bf16_channels_last_steps():
    import torch

    from medclf.training.hardware import epoch_seconds, probe_step_seconds

    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    fast = probe_step_seconds(model, None, 4, (1, 16, 16), fast=True)
    assert fast > 0 and model[0].weight.dtype == torch.float32  # autocast, weights stay fp32
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    # 2 training steps of 4 images, one validation batch at a third of a step plus the EMA
    assert epoch_seconds(1.0, 4, 8, 4) == pytest.approx(2 + 2 / 3)


# Recipe decisions on the data profiles of the development suite's kinds of data.


def test_28_px_thumbnails_train_at_64_px_untrimmed():
    thumbs = _profile(
        n_train=4708,
        class_counts={"normal": 1214, "pneumonia": 3494},
        short_side=28,
        aspect_spread=0.0,
        framed=True,  # a dark border on a thumbnail is no scanner frame
    )
    for pretrained in (False, True):
        v = plan(thumbs, on_gpu=False, pretrained=pretrained).values
        assert (v["data.image_size"], v["data.trim"]) == (64, "none")
        assert "model.stem" not in v  # it lost on 28 px chest_ct (docs/guides/training.md)


def test_224_px_xrays_trade_pixels_for_epochs_down_to_64_px():
    """5000 X-rays on a slow machine: the input shrinks until the budget affords the epochs
    such a set wants (15). A 128 px floor was measured on chest_ct and lost
    (docs/benchmarks.md)."""
    cfg = compose(["data.path=x"])
    xrays = _profile(
        n_train=5000,
        short_side=224,
        aspect_spread=0.0,
        framed=False,
        class_counts={"normal": 1300, "pneumonia": 3700},
    )
    recipe = plan(xrays, on_gpu=False, pretrained=False)
    assert recipe.values["data.image_size"] == 224
    apply(cfg, recipe, ())
    seconds = {224: 300.0, 192: 220.0, 160: 150.0, 128: 100.0, 96: 60.0, 64: 30.0}
    fit_budget(cfg, recipe, (), 900, lambda: seconds[int(cfg.data.image_size)], n_train=5000)
    assert cfg.data.image_size == 64 and cfg.train.max_epochs == 27


def test_512_px_mri_and_rgb_microscopy():
    mri = plan(
        _profile(n_train=2870, short_side=512, aspect_spread=0.3, framed=True, grayscale=True),
        on_gpu=False,
        pretrained=False,
    ).values
    assert (mri["data.image_size"], mri["data.channels"]) == (224, 1)
    assert (mri["data.trim"], mri["data.resize"]) == ("foreground", "letterbox")
    cells = plan(
        _profile(
            n_train=12000,
            short_side=360,
            aspect_spread=0.0,
            framed=False,
            grayscale=False,
            class_counts={c: 3000 for c in "abcd"},
        ),
        on_gpu=False,
        pretrained=False,
    ).values
    assert (cells["data.image_size"], cells["data.channels"], cells["data.trim"]) == (
        224,
        3,
        "none",
    )
    assert cells["data.augment"]["scale"] == [0.95, 1.05]  # light: many images


def test_the_small_stem_keeps_a_4x4_map_at_32_px_and_only_fits_resnets(tmp_path: Path):
    """model.stem=small (a setting; the recipe does not choose it, see docs/guides/training.md)."""
    from medclf.models.factory import build_model

    small = compose(["data.path=x", "model=resnet18", "model.stem=small"]).model
    model = build_model(small, num_classes=2, in_chans=1)
    import torch

    assert model.conv1.stride == (1, 1) and isinstance(model.maxpool, torch.nn.Identity)
    out = model.forward_features(torch.zeros(1, 1, 32, 32))
    assert out.shape[-2:] == (4, 4)  # the standard stem leaves 1x1 at 32 px
    effnet = compose(
        ["data.path=x", "model=timm", "model.name=efficientnet_b0", "model.stem=small"]
    )
    effnet = effnet.model
    with pytest.raises(MedclfError, match="no ResNet stem"):
        build_model(effnet, num_classes=2, in_chans=1)


def test_the_probe_is_measured_once_per_kind_of_hardware(tmp_path: Path):
    """The same key gives the same seconds an hour later, however loaded the machine is."""
    from medclf.training.probe_cache import ProbeCache

    key = {"hardware": "cpu x", "shape": [32, 1, 128, 128], "fast": True}
    first = ProbeCache(tmp_path).step_seconds(key, lambda: 0.25)
    again = ProbeCache(tmp_path).step_seconds(key, lambda: 0.75)  # a busier hour
    assert first == again == 0.25
    other = ProbeCache(tmp_path).step_seconds({**key, "fast": False}, lambda: 0.5)
    assert other == 0.5
    (tmp_path / "probe.json").write_text('{"' + ProbeCache.digest(key) + '": -1, "x": "y"}')
    assert ProbeCache(tmp_path).step_seconds(key, lambda: 0.3) == 0.3  # bad values re-measured
    (tmp_path / "probe.json").write_text("[not json")
    assert ProbeCache(tmp_path).step_seconds(key, lambda: 0.4) == 0.4
