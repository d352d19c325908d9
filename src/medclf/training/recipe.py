"""``recipe=auto``: training settings chosen from the data, the hardware and a time budget.

A new user runs ``medclf train data.path=FOLDER`` and expects a classifier worth evaluating.
The recipe looks at what the data check already measured (image count, class balance, sizes,
aspect ratios, framing, colour) and at the machine, picks every setting below, and writes
them into the run's config as ordinary values: a key the user named on the command line is
never changed, and ``medclf train --dry-run`` prints the result without training.

Why these choices (measured on the public chest-CT set's validation split, 2 CPU cores; see
docs/benchmarks.md (the default recipe's table) and ``benchmarks/recipes.py``):

- resnet18 from timm: the smallest standard residual network that learned the small real
  sets from scratch; ImageNet weights when ``model.pretrained=auto`` finds them.
- The input size comes from the images first: 224 px, never above the typical image's short
  side. The budget then lowers it by 32 px steps (not under 64) while it affords fewer than
  ``wanted_epochs``. A floor at 128 px (epochs giving way before pixels) was measured and
  dropped: on chest_ct, 32-bit on 2 cores, 128 px x 29 epochs reached test accuracy 0.689
  and macro AUC 0.911 where 64 px x 71 epochs reached 0.921 and 0.986 (same machine, hour).
- Thumbnails (short side under 64 px, MedMNIST's 28 px) train at 64 px and are never
  trimmed (trimming a 28 px "frame" cut into the image). Their own size with a small ResNet
  stem (``model.stem=small``, still a setting) was measured and not made the default: on
  chest_ct reduced to 28 px, 3-minute budget, 32 px with the small stem costs 34 s an epoch
  (5 epochs) and reached test accuracy 0.302 / macro AUC 0.742, where 64 px with the standard
  stem (14 epochs) reached 0.797 / 0.937 (``benchmarks/thumbnails.py``).
- The timing that sizes the run is measured once per kind of hardware and reused
  (``probe.json`` in the data cache folder): the same data, budget and hardware give the same
  recipe line, whatever the machine's load of the hour.
- bf16 autocast with channels_last where the hardware has bf16 units and the probe finds it
  faster (``FAST_NUMERICS``): on an AMX Xeon that doubles the epochs the budget affords.
- ``trim=foreground`` when most images sit in a uniform frame, ``resize=letterbox`` when
  aspect ratios vary: size and framing then cannot stand in for the class.
- Epochs from a timed probe of the real model (random tensors of the planned shape, so no
  image is decoded) and ``train.time_budget``; Lightning's ``max_time`` guards the estimate.
- Model selection by validation macro AUC on an exponential moving average of the weights,
  with early stopping only after half the planned epochs: on a 72-image validation split the
  loss of the raw weights jumps by +-0.3 between epochs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict

from medclf.schema_kinds import parse_duration

log = logging.getLogger("medclf")

RECIPES = ("auto", "none")
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "P"})
MIN_EPOCHS, MAX_EPOCHS = 5, 200
# Below this many affordable epochs the input shrinks by 32 px (not under 64). Measured on the
# chest-CT validation split (72 images), 15 minutes each, from scratch: 32-bit, 96 px x 40
# epochs beat 128 px x 24; bf16, 128 px x 117 epochs (val accuracy 0.861, macro AUC 0.978)
# beat 224 px x 64 (0.708, 0.889, still rising). From scratch, epochs matter more than pixels.
# What a set needs is enough optimizer updates, so a large set wants fewer epochs: about as
# many image presentations as the 122 epochs of chest-CT's 613 training images that won, and
# at least MIN_EPOCHS.
WANT_EPOCHS, WANT_PRESENTATIONS, SMALLEST_SIZE = 100, 75_000, 64
# Short side below which images are thumbnails: 64 px and never trimmed.
THUMBNAIL = 64
# Share of the budget the epochs are planned to fill; validation and logging take the rest.
BUDGET_FILL = 0.9
# bf16 autocast with channels_last memory: on a Xeon with AMX, resnet18 trains 2.1x faster
# end to end than 32-bit NCHW (chest CT, 128 px: 6.5 s vs 13.9 s per epoch) with the same
# validation metrics after 3 epochs. Taken when the probe finds it FAST_GAIN times faster;
# where bf16 is emulated it is slower, and the probe says so.
FAST_NUMERICS = {"train.precision": "bf16-mixed", "train.channels_last": True}
PLAIN_NUMERICS = {"train.precision": "32", "train.channels_last": False}
FAST_GAIN = 1.2


@dataclass(frozen=True)
class DataProfile:
    """What the recipe needs to know about the training data, read from the scan."""

    n_train: int
    n_val: int
    class_counts: dict[str, int]
    short_side: int  # median of min(width, height) over training images
    aspect_spread: float  # share of training images whose aspect is outside [0.9, 1.1]
    grayscale: bool
    # a quarter or more of the sampled images (every split: the frame may differ between them,
    # as on chest CT) sit in a uniform frame that trim=foreground removes
    framed: bool

    @property
    def thumbnail(self) -> bool:
        return 0 < self.short_side < THUMBNAIL

    @property
    def imbalance(self) -> float:
        counts = [c for c in self.class_counts.values() if c > 0]
        return max(counts) / min(counts) if counts else 1.0


def profile_data(table: pd.DataFrame, scanned: pd.DataFrame, sample_images: Any) -> DataProfile:
    """``sample_images(n)`` yields up to n decoded images of each split (HxW[x3] in [0, 1]);
    pixels only, never labels, so looking at the test split here leaks nothing."""
    from medclf.geometry import foreground_box

    train = (table["split"] == "train").to_numpy()
    sizes = scanned.loc[train, ["width", "height"]].astype(float).to_numpy()
    sizes = sizes[(sizes > 0).all(axis=1)]
    short = int(np.median(sizes.min(axis=1))) if len(sizes) else 0
    aspect = sizes[:, 0] / sizes[:, 1] if len(sizes) else np.ones(1)
    modes = scanned.loc[train, "mode"].astype(str)
    framed = color = 0
    sample = list(sample_images(16))
    for img in sample:
        chw = img[None] if img.ndim == 2 else np.moveaxis(img, -1, 0)
        box = foreground_box(chw)
        if box is not None:
            top, bottom, left, right = box
            framed += (bottom - top) * (right - left) < 0.9 * chw.shape[1] * chw.shape[2]
        # JPEG chroma noise is not colour: count pixels whose channels really differ
        color += chw.shape[0] > 1 and float((np.ptp(chw, axis=0) > 0.05).mean()) > 0.01
    labels = table.loc[train, "label"]
    return DataProfile(
        n_train=int(train.sum()),
        n_val=int((table["split"] == "val").sum()),
        class_counts={str(k): int(v) for k, v in labels.value_counts().sort_index().items()},
        short_side=short,
        aspect_spread=float(np.mean((aspect < 0.9) | (aspect > 1.1))),
        grayscale=bool(modes.isin(GRAYSCALE_MODES).all()) or (sample != [] and color == 0),
        framed=bool(sample) and framed >= len(sample) / 4,
    )


@dataclass
class Recipe:
    """The chosen values (dotted config keys) and why, for the one printed line."""

    values: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds_per_epoch: float | None = None
    augment: str = "custom"  # the AUGMENT preset written, or "custom" when the user set it

    def line(self, cfg: DictConfig) -> str:
        get = lambda key: OmegaConf.select(cfg, key)  # noqa: E731 - read the final values
        weights = "ImageNet weights" if get("model.pretrained") is True else "from scratch"
        parts = [
            f"{get('model.name')} {weights}",
            f"{get('data.image_size')} px {get('data.channels')}-channel "
            f"({get('data.resize')}, trim {get('data.trim')})",
            f"batch {get('data.batch_size')}",
            "bf16 mixed precision" if str(get("train.precision")) == "bf16-mixed" else "32-bit",
            f"{get('train.max_epochs')} epochs"
            + (f" (~{self.seconds_per_epoch:.0f} s each)" if self.seconds_per_epoch else ""),
            f"augment {self.augment}",
            _imbalance_text(cfg),
            f"{get('train.optimizer')} lr {get('train.lr'):g} {get('train.scheduler.name')}",
            f"best by {get('train.monitor')}"
            + (" on EMA weights" if get("train.ema.enabled") else ""),
        ]
        return "recipe: " + ", ".join(parts) + (f" [{'; '.join(self.notes)}]" if self.notes else "")


def _imbalance_text(cfg: DictConfig) -> str:
    weights = OmegaConf.select(cfg, "train.loss.class_weights")
    sampler = OmegaConf.select(cfg, "train.sampler")
    if sampler:
        return "balanced sampler"
    return "balanced loss weights" if weights else "no class weighting"


AUGMENT = {
    # fewer than ~2000 training images: every image is seen many times, vary it more
    "strong": {
        "hflip": 0.5,
        "rotate_degrees": 10,
        "scale": [0.85, 1.15],
        "translate": 0.05,
        "brightness": 0.1,
        "contrast": 0.1,
        "p": 0.5,
    },
    "light": {"hflip": 0.5, "rotate_degrees": 5, "scale": [0.95, 1.05], "p": 0.5},
}


def plan(profile: DataProfile, on_gpu: bool, pretrained: bool) -> Recipe:
    """Every choice that does not need a timing; epochs come from ``fit_epochs``."""
    r = Recipe()
    v = r.values
    v["model"] = "resnet18"
    v["data.image_size"] = input_size(profile)
    v["data.channels"] = 3 if (pretrained or not profile.grayscale) else 1
    v["data.normalize"] = "model" if pretrained else "dataset"
    v["data.trim"] = "foreground" if profile.framed and not profile.thumbnail else "none"
    v["data.resize"] = "letterbox" if profile.aspect_spread > 0.2 else "squash"
    v["data.batch_size"] = int(min(64 if on_gpu else 32, max(8, profile.n_train // 16)))
    strength = "strong" if profile.n_train < 2000 else "light"
    r.augment = strength
    v["data.augment"] = dict(AUGMENT[strength])
    if profile.imbalance > 4:
        v["train.sampler"], v["train.loss.class_weights"] = "weighted", None
    elif profile.imbalance > 1.5:
        v["train.sampler"], v["train.loss.class_weights"] = None, "balanced"
    else:
        v["train.sampler"], v["train.loss.class_weights"] = None, None
    v["train.optimizer"] = "adamw"
    v["train.lr"] = 5e-4 if pretrained else 2e-3
    v["train.weight_decay"] = 0.05
    v["train.scheduler.name"] = "cosine"
    v["train.loss.label_smoothing"] = 0.1
    v["train.monitor"], v["train.monitor_mode"] = "val/auc_macro", "max"
    v["train.ema.enabled"] = True
    steps = max(1, math.ceil(profile.n_train / v["data.batch_size"]))
    # an average over about two epochs of steps, whatever the data size
    v["train.ema.decay"] = round(min(0.9995, max(0.9, 1 - 1 / (2 * steps))), 4)
    v["train.early_stopping.enabled"] = True
    if profile.thumbnail:
        r.notes.append(
            f"{profile.short_side} px thumbnails: trained at {v['data.image_size']} px, not trimmed"
        )
    elif profile.short_side and profile.short_side < BASE_SIZE:
        r.notes.append(f"input capped at the images' typical short side ({profile.short_side} px)")
    return r


BASE_SIZE = 224  # lowered by fit_budget while the budget affords too few epochs


def input_size(profile: DataProfile) -> int:
    """The size the images' own resolution asks for: 224 px capped at their short side (in
    32 px steps), not under 64 px (thumbnails too: see the module docstring)."""
    short = profile.short_side
    if short <= 0:
        return BASE_SIZE
    return min(BASE_SIZE, max(SMALLEST_SIZE, short // 32 * 32))


def fit_epochs(r: Recipe, seconds_per_epoch: float, budget_s: float) -> None:
    """Epochs that fill the budget, warm-up and patience scaled to them."""
    r.seconds_per_epoch = seconds_per_epoch
    epochs = int(BUDGET_FILL * budget_s / max(seconds_per_epoch, 1e-3))
    if epochs < MIN_EPOCHS:
        r.notes.append(
            f"the budget allows {epochs} epochs at ~{seconds_per_epoch:.0f} s; training "
            f"{MIN_EPOCHS} (raise train.time_budget or lower data.image_size)"
        )
    epochs = int(min(MAX_EPOCHS, max(MIN_EPOCHS, epochs)))
    r.values["train.max_epochs"] = epochs
    scale_to_epochs(r, epochs)


def scale_to_epochs(r: Recipe, epochs: int) -> None:
    """Warm-up (5%), early-stopping patience (a quarter) and minimum epochs (half) for a run
    of ``epochs``: chosen by the budget, or named by the user (``train.max_epochs=100``
    still warms up for 5 epochs and is not stopped after 5 flat ones)."""
    r.values["train.scheduler.warmup_epochs"] = max(1, round(0.05 * epochs))
    r.values["train.early_stopping.patience"] = max(5, epochs // 4)
    r.values["train.min_epochs"] = max(1, epochs // 2)  # the schema: at least 1 (or null)


def apply(cfg: DictConfig, recipe: Recipe, keep: Iterable[str]) -> list[str]:
    """Write the recipe's values into ``cfg`` except keys under ``keep`` (the user's own);
    returns the keys it set."""
    kept = tuple(keep)
    changed = []
    with open_dict(cfg):
        for key, value in recipe.values.items():
            if any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in kept):
                if key == "data.augment":
                    recipe.augment = "custom"
                continue
            if key == "model":
                continue  # the group is chosen before compose (see choose_model_override)
            OmegaConf.update(cfg, key, value, merge=False, force_add=True)
            changed.append(key)
    return changed


def _sample_images(table: pd.DataFrame, window: Any, max_pixels: int) -> Any:
    from medclf.data.io import decode

    def sample(n: int) -> Any:
        picked = pd.concat(
            part.sample(min(n, len(part)), random_state=0) for _, part in table.groupby("split")
        )
        for path in picked["path"]:
            try:
                yield decode(path, window=window, max_pixels=max_pixels).array
            except Exception:
                continue

    return sample


def wanted_epochs(n_train: int) -> int:
    """Epochs worth lowering the input size for (see ``WANT_PRESENTATIONS``)."""
    return min(WANT_EPOCHS, max(MIN_EPOCHS, math.ceil(WANT_PRESENTATIONS / max(1, n_train))))


def fit_budget(
    cfg: DictConfig,
    recipe: Recipe,
    keep: tuple[str, ...],
    budget_s: float,
    probe: Callable[[], float],
    n_train: int,
) -> None:
    """Epochs from ``probe()`` (seconds per epoch at the config's current size); first, while
    the budget affords fewer than ``wanted_epochs``, the input shrinks by 32 px unless the
    user named ``data.image_size``."""
    size_is_free = not any(k in keep for k in ("data", "data.image_size"))
    planned = size = int(cfg.data.image_size)
    want = wanted_epochs(n_train)
    while True:
        seconds = probe()
        affordable = BUDGET_FILL * budget_s / max(seconds, 1e-3)
        if not size_is_free or affordable >= want or size - 32 < SMALLEST_SIZE:
            break
        size -= 32
        recipe.values["data.image_size"] = size
        apply(cfg, recipe, keep)
    if size < planned:
        recipe.notes.append(f"input lowered to {size} px so the budget affords more epochs")
    fit_epochs(recipe, seconds, budget_s)
    apply(cfg, recipe, keep)


def _probe(cfg: DictConfig, profile: DataProfile, on_gpu: bool) -> float:
    """Seconds per epoch of the configured model at the configured size and numerics, from
    the step time this kind of hardware measured for them (``probe_cache``), or timed now on
    freshly initialized weights (``hardware.probe_step_seconds``) and remembered."""
    from medclf.training.hardware import epoch_seconds, hardware_id
    from medclf.training.probe_cache import ProbeCache

    size, channels = int(cfg.data.image_size), int(cfg.data.channels)
    plain = OmegaConf.to_container(cfg.model, resolve=True)
    augment = OmegaConf.to_container(cfg.data.augment, resolve=True)
    batch = int(cfg.data.batch_size)
    fast = str(cfg.train.precision) == "bf16-mixed" and bool(cfg.train.channels_last)
    key = {
        "hardware": hardware_id(on_gpu),
        "model": {k: plain.get(k) for k in ("name", "stem", "head", "head_hidden")},
        "classes": len(profile.class_counts),
        "shape": [batch, channels, size, size],
        "fast": fast,
        "augment": augment,
    }

    def measure() -> float:
        from medclf.data.augment import build_augmentation
        from medclf.models import build_model
        from medclf.training.hardware import probe_step_seconds

        probe_cfg = OmegaConf.create({**plain, "pretrained": False, "weights": None})
        n_classes = len(profile.class_counts)
        model = build_model(probe_cfg, num_classes=n_classes, in_chans=channels, image_size=size)
        if on_gpu:
            model = model.cuda()
        shape = (channels, size, size)
        return probe_step_seconds(model, build_augmentation(augment, size), batch, shape, fast)

    step = ProbeCache(cfg.data.cache_dir).step_seconds(key, measure)
    return epoch_seconds(step, batch, profile.n_train, profile.n_val)


def choose_numerics(
    cfg: DictConfig, recipe: Recipe, keep: tuple[str, ...], probe: Callable[[], float]
) -> None:
    """bf16 autocast and channels_last (``FAST_NUMERICS``) when the probe of the planned
    model finds them ``FAST_GAIN`` times faster than 32-bit; call only where bf16 exists."""
    if any(k in keep for k in ("train", "train.precision", "train.channels_last")):
        return
    recipe.values.update(PLAIN_NUMERICS)
    apply(cfg, recipe, keep)
    plain = probe()
    recipe.values.update(FAST_NUMERICS)
    apply(cfg, recipe, keep)
    gain = plain / max(probe(), 1e-6)
    if gain >= FAST_GAIN:
        recipe.notes.append(f"bf16 and channels_last {gain:.1f}x faster than 32-bit here")
    else:
        recipe.values.update(PLAIN_NUMERICS)
        apply(cfg, recipe, keep)


def choose(
    cfg: DictConfig, table: pd.DataFrame, scanned: pd.DataFrame, keep: Iterable[str]
) -> Recipe:
    """Plan, time and apply the recipe to ``cfg`` (in place); returns it for the log line."""
    import torch

    from medclf.training.hardware import cpu_has_bf16

    keep = tuple(keep)
    on_gpu = torch.cuda.is_available() and str(cfg.train.accelerator) in ("auto", "gpu", "cuda")
    profile = profile_data(
        table, scanned, _sample_images(table, cfg.data.window, int(cfg.data.max_pixels))
    )
    recipe = plan(profile, on_gpu=on_gpu, pretrained=cfg.model.pretrained is True)
    apply(cfg, recipe, keep)
    timed: dict[tuple[int, str, bool], float] = {}

    def probe() -> float:
        """``_probe`` at cfg's current size and numerics (the steps below set them), once per
        combination: fit_budget's first timing is the one choose_numerics just made."""
        key = (int(cfg.data.image_size), str(cfg.train.precision), bool(cfg.train.channels_last))
        if key not in timed:
            timed[key] = _probe(cfg, profile, on_gpu)
        return timed[key]

    if torch.cuda.is_bf16_supported() if on_gpu else cpu_has_bf16():
        choose_numerics(cfg, recipe, keep, probe)
    budget = parse_duration(cfg.train.time_budget)
    if budget is not None and not any(k in keep for k in ("train", "train.max_epochs")):
        fit_budget(cfg, recipe, keep, budget, probe, profile.n_train)
    else:  # the epochs were named (or no budget): the schedule still fits them
        scale_to_epochs(recipe, int(cfg.train.max_epochs))
        apply(cfg, recipe, keep)
    return recipe
