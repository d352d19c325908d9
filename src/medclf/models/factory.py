"""Build a model from the ``model`` config section: ``custom_cnn`` or any timm architecture.

timm models keep timm's structure; ``model.head=mlp`` only swaps the classifier module
(``get_classifier()``) for the seeds' MLP head, so timm's pooling, pre-logits norm, pretrained
loading and Grad-CAM target layers are unchanged, and "the head" is one module for freezing
and differential learning rates.
"""

from __future__ import annotations

import difflib
from typing import Any

from torch import nn

from medclf.errors import MedclfError
from medclf.models.architectures import (
    ALIASES,
    CUSTOM_MODELS,
    input_defaults,
    is_custom,
    timm_name,
)


def _unknown_model(name: str) -> MedclfError:
    import timm

    candidates = list(CUSTOM_MODELS) + list(ALIASES) + timm.list_models()
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return MedclfError(
        f"unknown model.name '{name}'.{hint} Use custom_cnn or any timm architecture "
        "(python -c \"import timm; print(timm.list_models('resnet*'))\")"
    )


def check_model_name(model_cfg: Any) -> None:
    """Fail on an unknown architecture before any data work starts."""
    name = str(model_cfg.name)
    if name in CUSTOM_MODELS:
        return
    import timm

    if not timm.is_model(timm_name(name)):
        raise _unknown_model(name)


def _want_pretrained(arch: str, model_cfg: Any) -> bool:
    """``model.pretrained``: true/false, or auto = whether the weights can be had now
    (``medclf train`` resolves auto earlier and says so; this covers direct API use)."""
    value = model_cfg.pretrained
    if str(value) == "auto":
        from medclf.models.weights import weights_available

        return weights_available(arch)[0]
    return bool(value)


def _custom_kwargs(model_cfg: Any) -> dict[str, Any]:
    """``model.*`` of custom_cnn as its constructor's keywords (the schema refuses timm's
    weights/pretrained keys for it at compose)."""
    return {
        "hidden_dims": list(model_cfg.hidden_dims),
        "kernel_size": int(model_cfg.kernel_size),
        "batch_norm": bool(model_cfg.batch_norm),
        "fc_hidden": int(model_cfg.fc_hidden or 0),
        "dropout": float(model_cfg.dropout),
        "global_pool": str(model_cfg.global_pool),
    }


def _creation_error(
    exc: Exception, model_cfg: Any, arch: str, kwargs: dict[str, Any], image_size: int | None
) -> Exception:
    """What ``timm.create_model`` raised, as the user's mistake where it is one."""
    name = str(model_cfg.name)
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    if arch == "custom_cnn":  # its settings were refused (an even kernel size, ...)
        return MedclfError(first)
    if "img_size" in kwargs and not kwargs.get("pretrained"):
        size = input_defaults(model_cfg).image_size
        return MedclfError(
            f"'{name}' cannot be built for data.image_size={image_size}: {first}. It was "
            f"designed for {size} px; use data.image_size={size}"
        )
    if not kwargs.get("pretrained"):
        return exc
    weights = model_cfg.get("weights")
    source = f"model.weights={weights}" if weights else "the pretrained weights"
    return MedclfError(
        f"could not load {source} into '{name}': {first}. The file must hold a state dict "
        f"of the same architecture ('{name}')"
    )


def build_model(
    model_cfg: Any, num_classes: int, in_chans: int, image_size: int | None = None
) -> nn.Module:
    """A freshly initialized (or timm-pretrained) network with ``num_classes`` outputs.

    ``image_size`` matters only for architectures with a fixed input size (ViT, Swin), whose
    position embeddings or attention windows are built for it.
    """
    import timm

    name = str(model_cfg.name)
    check_model_name(model_cfg)
    custom = is_custom(name)
    if custom:
        import medclf.models.custom_cnn  # noqa: F401 - registers custom_cnn with timm

        arch, kwargs = name, _custom_kwargs(model_cfg)
    else:
        from medclf.models.weights import pretrained_kwargs

        arch = timm_name(name)
        kwargs = pretrained_kwargs(arch, _want_pretrained(arch, model_cfg), model_cfg.weights)
        kwargs["drop_rate"] = float(model_cfg.drop_rate)
        defaults = input_defaults(model_cfg)
        if defaults and defaults.fixed_size and image_size and image_size != defaults.image_size:
            kwargs["img_size"] = int(image_size)
    kwargs.update(num_classes=num_classes, in_chans=in_chans)
    try:
        model = timm.create_model(arch, **kwargs)
    except (OSError, RuntimeError, KeyError, ValueError, AssertionError) as exc:
        raise _creation_error(exc, model_cfg, arch, kwargs, image_size) from exc
    if not custom and model_cfg.get("stem", "standard") == "small":
        small_stem(model, name, in_chans)
    overlay = kwargs.get("pretrained_cfg_overlay", {})
    if "state_dict" in overlay:
        from medclf.models.weights import check_coverage

        check_coverage(model, overlay["state_dict"], str(model_cfg.weights))
        model.pretrained_cfg.pop("state_dict", None)  # do not keep a second copy alive
    if not custom and model_cfg.head == "mlp":
        _use_mlp_head(
            model,
            num_classes,
            hidden=int(model_cfg.head_hidden),
            dropout=float(model_cfg.head_dropout),
        )
    return model


def small_stem(model: nn.Module, name: str, in_chans: int) -> None:
    """``model.stem=small``: a 3x3 stride-1 first convolution and no max-pool (4x less
    downsampling), for thumbnails such as MedMNIST's 28 px images. timm's ResNet has no such
    option (its ``stem_type`` variants all stride 4), so the two modules are replaced."""
    conv1 = getattr(model, "conv1", None)
    if not (isinstance(conv1, nn.Conv2d) and hasattr(model, "maxpool")):
        raise MedclfError(
            f"model.stem=small: {name} has no ResNet stem (conv1 + maxpool); use a resnet "
            "(e.g. model=resnet18) or model.stem=standard"
        )
    model.conv1 = nn.Conv2d(in_chans, conv1.out_channels, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()


class MLPHead(nn.Sequential):
    """The seeds' head on timm's pooled features: LayerNorm -> Dropout -> Linear(hidden) ->
    ReLU -> Dropout -> Linear(classes)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int, dropout: float) -> None:
        super().__init__(
            nn.LayerNorm(in_features),
            nn.Dropout(dropout),
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )


def _use_mlp_head(model: nn.Module, num_classes: int, hidden: int, dropout: float) -> None:
    path = model.pretrained_cfg.get("classifier")
    linear = model.get_classifier()
    if not isinstance(path, str) or not isinstance(linear, nn.Linear):
        raise MedclfError(
            f"model.head=mlp needs a single linear classifier; '{type(model).__name__}' has "
            f"{type(linear).__name__} at {path}. Use model.head=linear"
        )
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, MLPHead(linear.in_features, num_classes, hidden, dropout))


def head_module(model: nn.Module) -> nn.Module:
    """The classifier head: what ``trainable: head`` trains and ``head_lr`` applies to."""
    if hasattr(model, "get_classifier"):
        return model.get_classifier()
    raise MedclfError(f"{type(model).__name__} has no get_classifier(); cannot find its head")


def backbone_blocks(model: nn.Module) -> list[list[nn.Parameter]]:
    """Backbone parameters grouped into blocks, input to output (timm's coarse groups: stem,
    stages, final norm), for ``trainable: N`` = the last N blocks plus the head."""
    head_ids = {id(p) for p in head_module(model).parameters()}
    if hasattr(model, "group_matcher"):
        from timm.models import group_parameters

        named = dict(model.named_parameters())
        groups = group_parameters(model, model.group_matcher(coarse=True))
        blocks = [[named[n] for n in names] for _, names in sorted(groups.items())]
    else:
        blocks = [list(m.parameters()) for m in model.children()]
    blocks = [[p for p in b if id(p) not in head_ids] for b in blocks]
    return [b for b in blocks if b]
