"""Build a model from the ``model`` config section: ``custom_cnn`` or any timm architecture."""

from __future__ import annotations

import difflib
from typing import Any

from torch import nn

from medclf.errors import MedclfError

CUSTOM_MODELS = ("custom_cnn",)


def _unknown_model(name: str) -> MedclfError:
    import timm

    candidates = list(CUSTOM_MODELS) + timm.list_models()
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

    if not timm.is_model(name):
        raise _unknown_model(name)


def build_model(model_cfg: Any, num_classes: int, in_chans: int) -> nn.Module:
    """A freshly initialized (or timm-pretrained) network with ``num_classes`` outputs."""
    name = str(model_cfg.name)
    if name == "custom_cnn":
        from medclf.models.custom_cnn import CustomCNN

        if model_cfg.get("weights") or model_cfg.get("pretrained"):
            raise MedclfError(
                "custom_cnn has no pretrained weights; model.weights and model.pretrained are "
                "for timm architectures (e.g. model=resnet18 model.pretrained=true)"
            )

        try:
            return CustomCNN(
                num_classes=num_classes,
                in_chans=in_chans,
                hidden_dims=list(model_cfg.hidden_dims),
                kernel_size=int(model_cfg.kernel_size),
                batch_norm=bool(model_cfg.batch_norm),
                fc_hidden=int(model_cfg.fc_hidden or 0),
                dropout=float(model_cfg.dropout),
                global_pool=str(model_cfg.global_pool),
            )
        except ValueError as exc:
            raise MedclfError(str(exc)) from exc

    import timm

    check_model_name(model_cfg)
    from medclf.models.weights import check_coverage, pretrained_kwargs

    weights = model_cfg.get("weights")
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans}
    kwargs.update(pretrained_kwargs(name, bool(model_cfg.get("pretrained", False)), weights))
    if model_cfg.get("drop_rate") is not None:
        kwargs["drop_rate"] = float(model_cfg.drop_rate)
    try:
        model = timm.create_model(name, **kwargs)
    except (OSError, RuntimeError, KeyError, ValueError, AssertionError) as exc:
        if not kwargs.get("pretrained"):
            raise
        source = f"model.weights={weights}" if weights else "the pretrained weights"
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise MedclfError(
            f"could not load {source} into '{name}': {first}. The file must hold a state dict "
            f"of the same architecture ('{name}')"
        ) from exc
    overlay = kwargs.get("pretrained_cfg_overlay", {})
    if "state_dict" in overlay:
        check_coverage(model, overlay["state_dict"], str(weights))
        model.pretrained_cfg.pop("state_dict", None)  # do not keep a second copy alive
    return model
