"""Where a timm model's starting weights come from: none, a local file, or the hub.

- ``model.weights=FILE`` (.safetensors or .pth/.pt/.bin, read with ``weights_only=True``):
  handed to timm's own pretrained path (``pretrained_cfg_overlay=dict(state_dict=...)``), so
  the classifier is dropped and re-initialized when the class count differs and a 3-channel
  first conv is adapted to ``in_chans`` exactly as for hub weights; then every backbone tensor
  must have come from the file.
- ``model.pretrained=true``: weights already in the Hugging Face cache are used from disk; else
  the hub is probed for 3 seconds and, when unreachable (or HF_HUB_OFFLINE=1), the run fails at
  once with how to provide a file - instead of huggingface_hub's ~47 s of retries.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medclf.errors import MedclfError
from medclf.net import reachable
from medclf.safeload import load_torch_file

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cached_hub_file(hub_id: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in _HUB_FILES:
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str) and Path(found).is_file():
            return found
    return None


def read_state_dict(weights: str) -> dict[str, Any]:
    """A plain tensor state dict from a .safetensors or torch file (``weights_only=True``),
    unwrapping the usual ``state_dict``/``model`` containers and DDP ``module.`` prefixes."""
    import torch

    path = Path(weights).expanduser()
    if not path.is_file():
        raise MedclfError(f"model.weights={weights}: file not found")
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise MedclfError(
            f"model.weights={weights}: expected a {', '.join(WEIGHT_SUFFIXES)} weights file"
        )
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path))
        else:
            sd = load_torch_file(path, f"model.weights={weights}")
    except MedclfError:
        raise
    except Exception as exc:  # safetensors and torch raise many types for a bad file
        raise MedclfError(f"model.weights={weights}: not a readable weights file ({exc})") from exc
    for key in ("state_dict", "model", "module"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise MedclfError(f"model.weights={weights}: the file holds no tensor state dict")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def check_coverage(model: Any, state_dict: dict[str, Any], weights: str) -> None:
    """timm loads non-strictly when it drops the classifier, so weights of another
    architecture would load silently and leave layers random; refuse that here."""
    classifier = model.pretrained_cfg.get("classifier") or ()
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    needed = [
        k
        for k in model.state_dict()
        if not k.endswith("num_batches_tracked") and not any(k.startswith(h + ".") for h in heads)
    ]
    missing = [k for k in needed if k not in state_dict]
    if missing:
        raise MedclfError(
            f"model.weights={weights} does not fit '{model.pretrained_cfg.get('architecture')}': "
            f"{len(missing)} of {len(needed)} backbone tensors are missing (e.g. {missing[0]}). "
            "Pass weights saved from the same architecture"
        )


def pretrained_kwargs(name: str, pretrained: bool, weights: str | None) -> dict[str, Any]:
    """``timm.create_model`` keyword arguments for the requested starting weights."""
    if weights:
        return {
            "pretrained": True,
            "pretrained_cfg_overlay": {"state_dict": read_state_dict(weights)},
        }
    if not pretrained:
        return {"pretrained": False}
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    url = getattr(cfg, "url", None) if cfg is not None else None
    if not hub_id and not url:
        raise MedclfError(
            f"timm has no pretrained weights for '{name}'; set model.pretrained=false or pass "
            "model.weights=FILE"
        )
    if hub_id:
        cached = _cached_hub_file(hub_id)
        if cached:
            return {"pretrained": True, "pretrained_cfg_overlay": {"file": cached}}
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co") if hub_id else str(url)
    if _offline() or not reachable(endpoint):
        where = f"https://huggingface.co/{hub_id}" if hub_id else str(url)
        raise MedclfError(
            f"model.pretrained=true: the weights for '{name}' are not cached and "
            f"{'HF_HUB_OFFLINE is set' if _offline() else endpoint + ' is not reachable'}. "
            f"Download them on a connected machine ({where}), copy the file here and pass "
            "model.weights=FILE; or train from scratch with model.pretrained=false"
        )
    return {"pretrained": True}


def weights_available(name: str) -> tuple[bool, str]:
    """Whether timm's pretrained weights for ``name`` can be had now: cached, or the hub
    answers within 3 seconds (never huggingface_hub's ~47 s of offline retries). The second
    value says why not, for the one-line notice."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    url = getattr(cfg, "url", None) if cfg is not None else None
    if not hub_id and not url:
        return False, f"timm has no pretrained weights for '{name}'"
    if hub_id and _cached_hub_file(hub_id):
        return True, "cached"
    if _offline():
        return False, "they are not cached and HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co") if hub_id else str(url)
    if not reachable(endpoint):
        return False, f"they are not cached and {endpoint} is not reachable"
    return True, "downloadable"
