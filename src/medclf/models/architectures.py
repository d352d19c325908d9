"""One table of architecture names: the seeds' and torchvision's names resolved to timm's.

Any timm name works as is (``model=efficientnet_b3``); this table only adds the names people
bring from torchvision, papers and the seed projects, so that ``swin_t`` or ``RegNetY-4GF``
builds the model they mean instead of failing or, worse, a different one. Lookup ignores case
and treats ``-`` like ``_``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medclf.choices import CUSTOM_MODELS

# alias -> timm architecture. Keys are lower-case with "_" for "-" (see ``_key``).
ALIASES: dict[str, str] = {
    # torchvision-style names used by the seeds
    "swin_t": "swin_tiny_patch4_window7_224",
    "swin_s": "swin_small_patch4_window7_224",
    "swin_b": "swin_base_patch4_window7_224",
    "vit_b_16": "vit_base_patch16_224",
    "vit_b_32": "vit_base_patch32_224",
    "vit_l_16": "vit_large_patch16_224",
    "efficientnet_v2_s": "tf_efficientnetv2_s",
    "efficientnet_v2_m": "tf_efficientnetv2_m",
    "efficientnet_v2_l": "tf_efficientnetv2_l",
    "mobilenet_v2": "mobilenetv2_100",
    "mobilenet_v3_small": "mobilenetv3_small_100",
    "mobilenet_v3_large": "mobilenetv3_large_100",
    "regnet_y_400mf": "regnety_004",
    "regnet_y_800mf": "regnety_008",
    "regnet_y_1_6gf": "regnety_016",
    "regnet_y_3_2gf": "regnety_032",
    "regnet_y_8gf": "regnety_080",
    "regnet_y_16gf": "regnety_160",
    "regnet_y_32gf": "regnety_320",
    # the paper's names (Radosavovic et al. 2020), as the seeds wrote them
    "regnety_400mf": "regnety_004",
    "regnety_600mf": "regnety_006",
    "regnety_800mf": "regnety_008",
    "regnety_4gf": "regnety_040",
    "regnety_8gf": "regnety_080",
    "regnety_16gf": "regnety_160",
    # Chollet's Xception (timm keeps it as legacy_xception; "xception41/65/71" are the
    # later, deeper aligned variants). A seed shipped an EfficientNet under this name.
    "xception": "legacy_xception",
    # medclf's preset: EfficientNet-B0 with its backbone frozen and an MLP head
    # (conf/model/medical_cnn.yaml sets head and freeze_backbone).
    "medical_cnn": "efficientnet_b0",
}


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def timm_name(name: str) -> str:
    """The timm architecture for a configured ``model.name`` (itself when not an alias)."""
    return ALIASES.get(_key(name), name)


def is_custom(name: str) -> bool:
    return name in CUSTOM_MODELS


@dataclass(frozen=True)
class InputDefaults:
    """What the architecture's pretrained weights expect (timm's pretrained config)."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fixed_size: bool


# custom_cnn has no pretrained config: a small input that trains in minutes on a CPU.
CUSTOM_IMAGE_SIZE = 64


def input_defaults(model_cfg: Any) -> InputDefaults | None:
    """The timm model's default input size and normalization; None for custom models."""
    name = str(model_cfg.name)
    if is_custom(name):
        return None
    import timm

    cfg = timm.get_pretrained_cfg(timm_name(name))
    if cfg is None:
        return None
    size = cfg.input_size
    return InputDefaults(
        image_size=int(size[-1]),
        mean=tuple(float(m) for m in cfg.mean),
        std=tuple(float(s) for s in cfg.std),
        fixed_size=bool(cfg.fixed_input_size),
    )


def resolve_input_config(cfg: Any) -> InputDefaults | None:
    """Fill ``data.image_size: null`` and ``data.normalize: auto`` from the model.

    Pretrained weights were trained at one input size and normalization; giving them another
    silently costs accuracy, so timm models default to theirs. Explicit values always win.
    Returns the model's defaults (None for custom models) for the normalization step.
    """
    from omegaconf import open_dict

    defaults = input_defaults(cfg.model)
    with open_dict(cfg.data):
        if cfg.data.get("image_size") is None:
            cfg.data.image_size = defaults.image_size if defaults else CUSTOM_IMAGE_SIZE
        if str(cfg.data.get("normalize")) == "auto":
            cfg.data.normalize = "model" if defaults else "dataset"
    return defaults
