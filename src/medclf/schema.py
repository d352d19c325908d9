"""The typed schema of the packaged config: every key's type, range and allowed values.

The YAML files under ``medclf/conf`` hold every default value (one place, with a comment that
documents the key); this module says what a value may be, in the kinds of
``medclf.schema_kinds``. ``medclf.config.compose`` validates
the composed config against it before any file is read or written, and
``medclf config show --keys`` prints each key's allowed values from the same declarations.

Why pydantic and not OmegaConf structured configs with Enums: OmegaConf 2.3 matches an Enum
value by member *name*, so ``train.precision=bf16-mixed``, ``eval.tta=flip+rot`` or
``data.channels=3`` cannot be spelled, and it would hand the rest of the code Enum objects
instead of the strings Lightning and timm take; it has no ranges (``>= 1``) and no unions
(``data.window`` is a name or ``[center, width]``). pydantic validates all of these from the
declarations below (it is installed with FastAPI already) and leaves the composed DictConfig as
it is: the schema checks, it does not convert.
"""

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from medclf import choices
from medclf.geometry import RESIZE_MODES, TRIM_MODES
from medclf.image_settings import WINDOW_MODES, WINDOW_PRESETS, normalize_window
from medclf.schema_kinds import Expect, checked, choice, integer, number, parse_duration
from medclf.tta import TTA_MODES


# --- checks of values that are more than a type and a range ------------------------------------
def _split_ratios(v: Any) -> None:
    ok = isinstance(v, list) and len(v) == 3
    ok = ok and all(isinstance(r, int | float) and not isinstance(r, bool) for r in v)
    if not (ok and all(0 <= r <= 1 for r in v) and v[0] > 0 and abs(sum(v) - 1.0) <= 1e-6):
        raise ValueError("not three fractions that sum to 1")


def _regex(words: tuple[str, ...]) -> Callable[[Any], None]:
    def check(v: Any) -> None:
        if isinstance(v, str) and v in words:
            return
        if not isinstance(v, str):
            raise ValueError("not text")
        try:
            groups = re.compile(v).groups
        except re.error as exc:
            raise ValueError(f"not a regex ({exc})") from None
        if groups != 1:
            raise ValueError("a regex needs exactly one group")

    return check


def _pair(v: Any) -> None:
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int | float) for x in v)):
        raise ValueError("not a [min, max] pair")
    if not 0 <= v[0] <= v[1]:
        raise ValueError("need 0 <= min <= max")


def _trainable(v: Any) -> None:
    if isinstance(v, bool) or not (v in ("all", "head") or (isinstance(v, int) and v >= 0)):
        raise ValueError("not all, head or N")


def _class_weights(v: Any) -> None:
    if v == "balanced":
        return
    if not (isinstance(v, list) and v and all(isinstance(w, int | float) and w > 0 for w in v)):
        raise ValueError("not balanced or a list of weights")


def _loggers(v: Any) -> None:
    names = [v] if isinstance(v, str) else v
    if not isinstance(names, list) or any(n not in choices.LOGGERS for n in names):
        raise ValueError("not a list of known loggers")


def _folder_name(v: Any) -> None:
    if v is not None and (
        not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", v)
    ):
        raise ValueError("not a plain folder name")


def _folds(v: Any) -> None:
    # the ensemble's bound (models.ensemble.MAX_FOLDS), named here without importing torch
    if isinstance(v, bool) or not isinstance(v, int) or not (v == 0 or 2 <= v <= 20):
        raise ValueError("not 0 or 2..20")


def _pretrained(v: Any) -> None:
    if v not in (True, False, "auto"):
        raise ValueError("not true, false or auto")


def _devices(v: Any) -> None:
    if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= -1):
        return
    if not (isinstance(v, list) and all(isinstance(d, int) and d >= 0 for d in v)):
        raise ValueError("not a device count or list")


OptText = str | None
Probability = number(ge=0, le=1)
Pair = checked(_pair, "null or a [min, max] pair with 0 <= min <= max")
WINDOWS = (*WINDOW_MODES, *WINDOW_PRESETS)


# Largest square model input: 4096 px holds a full-field mammogram; a larger one would not fit
# a batch in memory (one 999999999 px input overflowed torch's size arithmetic).
MAX_IMAGE_SIZE = 4096


class Section(BaseModel):
    """A config section: unknown keys are refused, numbers are finite, and a value keeps its
    type (no "3" for 3: Hydra has already typed the command line)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Augment(Section):
    hflip: Probability
    vflip: Probability
    rotate_degrees: number(ge=0)
    scale: Pair | None
    translate: number(ge=0, lt=1)
    resized_crop: Pair | None
    brightness: number(ge=0)
    contrast: number(ge=0)
    gamma: Pair | None
    noise_std: number(ge=0)
    blur_sigma: Pair | None
    p: Probability


class Data(Section):
    path: OptText
    source: OptText
    format: choice(choices.FORMATS)
    columns: dict[str, str] | None
    image_root: OptText
    allow_outside_root: bool
    label_pattern: checked(_regex(()), "a regex with one group") | None
    patient_pattern: checked(
        _regex(choices.NAME_ID_MODES),
        "one of auto, none, or a regex with one group",
        choices.NAME_ID_MODES,
    )
    class_map: dict[Any, Any] | None
    split_file: OptText
    split_ratios: checked(
        _split_ratios, "three fractions (train, val, test) that sum to 1, e.g. [0.7,0.15,0.15]"
    )
    split_seed: integer()
    image_size: integer(lo=8, hi=MAX_IMAGE_SIZE) | None
    resize: choice(RESIZE_MODES)
    trim: choice(TRIM_MODES)
    channels: choice((1, 3))
    window: checked(
        normalize_window, "one of " + ", ".join(WINDOWS) + ", or [center, width]", WINDOWS
    )
    normalize: choice(choices.NORMALIZE)
    strict: bool
    max_pixels: integer(lo=1)
    min_images_per_class: integer(lo=1)
    ordinal: choice(("auto", True, False))
    pseudonym_key_file: str
    near_duplicate_distance: integer(lo=-1, hi=256)
    cache: bool
    cache_dir: str
    batch_size: integer(lo=1)
    num_workers: integer(lo=0)
    augment: Augment


class CustomCnn(Section):
    name: Literal["custom_cnn"]
    pretrained: Annotated[Literal[False], Expect("false (custom_cnn has no pretrained weights)")]
    hidden_dims: list[integer(lo=1)] = Field(min_length=1)
    kernel_size: integer(lo=1)
    batch_norm: bool
    fc_hidden: integer(lo=0) | None  # 0 or null: no hidden layer
    dropout: number(ge=0, lt=1)
    global_pool: choice(choices.GLOBAL_POOLS)


class Timm(Section):
    name: str
    pretrained: checked(_pretrained, "one of true, false, auto", ("true", "false", "auto"))
    weights: OptText
    drop_rate: number(ge=0, lt=1)
    head: choice(choices.HEADS)
    head_hidden: integer(lo=1)
    head_dropout: number(ge=0, lt=1)
    stem: choice(("standard", "small"))
    freeze_backbone: bool


class Scheduler(Section):
    name: choice(choices.SCHEDULERS)
    warmup_epochs: integer(lo=0)
    min_lr: number(ge=0)
    step_size: integer(lo=1)
    milestones: list[integer(lo=1)]
    gamma: number(gt=0)
    factor: number(gt=0, lt=1)
    patience: integer(lo=0)


class StageScheduler(Section):
    """A stage's scheduler: only the keys it changes."""

    name: choice(choices.SCHEDULERS) | None = None
    warmup_epochs: integer(lo=0) | None = None
    min_lr: number(ge=0) | None = None
    step_size: integer(lo=1) | None = None
    milestones: list[integer(lo=1)] | None = None
    gamma: number(gt=0) | None = None
    factor: number(gt=0, lt=1) | None = None
    patience: integer(lo=0) | None = None


Trainable = checked(_trainable, "all, head, or N (the last N backbone blocks and the head)")


class Stage(Section):
    """One of ``train.stages``: the ``train.*`` keys it overrides. The ``= None`` here only
    lets a stage leave a key out (it inherits ``train.*``); the schema does not fill it in."""

    name: OptText = None
    epochs: integer(lo=1) | None = None
    trainable: Trainable | None = None
    optimizer: choice(choices.OPTIMIZERS) | None = None
    lr: number(gt=0) | None = None
    backbone_lr: number(gt=0) | None = None
    head_lr: number(gt=0) | None = None
    weight_decay: number(ge=0) | None = None
    momentum: number(ge=0, lt=1) | None = None
    nesterov: bool | None = None
    scheduler: choice(choices.SCHEDULERS) | StageScheduler | None = None
    early_stopping: bool | None = None


class Loss(Section):
    name: choice(choices.LOSSES)
    label_smoothing: number(ge=0, lt=1)
    class_weights: (
        checked(_class_weights, "null, balanced or positive [w_class0, w_class1, ...]") | None
    )
    focal_gamma: number(ge=0)


class Ema(Section):
    enabled: bool
    decay: number(gt=0, lt=1)


class Mixup(Section):
    mixup_alpha: number(ge=0)
    cutmix_alpha: number(ge=0)
    prob: Probability
    switch_prob: Probability


class EarlyStopping(Section):
    enabled: bool
    patience: integer(lo=0)
    min_delta: number(ge=0)


class Train(Section):
    max_epochs: integer(lo=1)
    time_budget: checked(parse_duration, "seconds (900) or a duration like 15m or 1.5h") | None
    min_epochs: integer(lo=1) | None
    optimizer: choice(choices.OPTIMIZERS)
    lr: number(gt=0)
    backbone_lr: number(gt=0) | None
    head_lr: number(gt=0) | None
    weight_decay: number(ge=0)
    momentum: number(ge=0, lt=1)
    nesterov: bool
    scheduler: Scheduler
    trainable: Trainable | None
    stages: list[Stage] | None = Field(min_length=1)
    loss: Loss
    sampler: choice(choices.SAMPLERS) | None
    grad_clip: number(gt=0) | None
    accumulate_grad_batches: integer(lo=1)
    ema: Ema
    mixup: Mixup
    monitor: str
    monitor_mode: choice(choices.MONITOR_MODES)
    early_stopping: EarlyStopping
    accelerator: str
    devices: checked(_devices, "a device count, auto, or a list of device indices")
    num_nodes: integer(lo=1)
    strategy: choice(choices.STRATEGIES)
    precision: choice(choices.PRECISIONS)
    channels_last: bool
    compile: bool
    deterministic: bool
    profiler: choice(choices.PROFILERS) | None
    progress_bar: bool
    limit_train_batches: number(gt=0) | None


class Gate(Section):
    min: float | None = None
    max: float | None = None
    classes: Literal["all"] | list[str] | None = None


class Eval(Section):
    n_bootstrap: integer(lo=0)
    ci_level: number(gt=0, lt=1)
    ci_method: choice(choices.CI_METHODS)
    calibration_bins: integer(lo=1)
    tta: choice(TTA_MODES)
    conformal_alpha: number(gt=0, lt=1) | None
    temperature_scaling: choice(("auto", True, False))
    threshold: str
    decision: choice(choices.DECISIONS)
    positive_class: OptText
    latency_runs: integer(lo=0)
    top_losses: integer(lo=0)
    gradcam_per_class: integer(lo=0)
    age_band_years: number(gt=0)
    gates_on: choice(choices.GATES_ON)
    gates: dict[str, Gate | None]  # null removes a packaged gate


class Export(Section):
    int8_max_drop: number(ge=0, lt=1)
    int8_calibration_images: integer(lo=1)


class Serve(Section):
    host: str
    port: integer(lo=0, hi=65535)
    workers: integer(lo=1, hi=64)
    threads: integer(lo=1) | None
    decode_threads: integer(lo=1)
    max_batch: integer(lo=1, hi=1024)
    max_wait_ms: number(ge=0, le=10_000)
    max_upload_mb: number(gt=0, le=4096)
    max_files: integer(lo=1, hi=1000)
    max_concurrent_uploads: integer(lo=1)
    upload_wait_s: number(gt=0)
    body_timeout: number(gt=0, le=3600)
    body_min_rate: number(gt=0, le=1_048_576)
    api_key: OptText
    cors_origins: list[str]
    docs: bool
    audit_url: OptText


class Monitor(Section):
    psi_alert: number(gt=0)
    alpha: number(gt=0, lt=1)
    psi_bins: integer(lo=2, hi=100)
    class_psi_alert: number(gt=0)
    max_refer_increase: number(ge=0, le=1)
    max_accuracy_drop: number(ge=0, lt=1)
    confidence: number(gt=0, lt=1)
    draws: integer(lo=100, hi=100_000)
    mmd_permutations: integer(lo=99, hi=10_000)
    evidently: choice(choices.EVIDENTLY_MODES)
    max_images: integer(lo=1)
    min_images: integer(lo=2)


class Mlflow(Section):
    tracking_uri: str
    experiment: OptText
    parent_run: OptText


class Wandb(Section):
    project: str
    mode: choice(choices.WANDB_MODES)


class Config(Section):
    """The whole composed config. ``model`` is checked by the schema of its architecture
    family (``model_schema``), so it is a plain mapping here."""

    recipe: choice(choices.RECIPES)
    run_group: str
    run_name: checked(_folder_name, "null or a folder name (letters, digits, . _ -)")
    runs_root: str
    seed: integer()
    cv: checked(_folds, "0 (no cross-validation) or a number of folds from 2 to 20")
    logger: (
        checked(
            _loggers,
            "one of " + ", ".join(choices.LOGGERS) + ", or a list of them",
            choices.LOGGERS,
        )
        | None
    )
    mlflow: Mlflow
    wandb: Wandb
    data: Data
    model: dict[str, Any]
    train: Train
    eval: Eval
    export: Export
    serve: Serve
    monitor: Monitor


SECTIONS: dict[str, type[Section]] = {
    "data": Data,
    "train": Train,
    "eval": Eval,
    "export": Export,
    "serve": Serve,
}


def model_schema(name: str) -> type[Section]:
    """The schema of ``model``: custom_cnn's own keys, or the keys of any timm architecture."""
    return CustomCnn if name in choices.CUSTOM_MODELS else Timm
