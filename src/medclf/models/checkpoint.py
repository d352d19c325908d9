"""Load the weights a run chose (``weights/best.ckpt``) into a ready-to-infer model.

Checkpoints are untrusted input (run folders are shared and downloaded): they are read with
``weights_only=True`` (``medclf.safeload``), and ``best.ckpt`` must match the sha256 that
training recorded in ``train_summary.json`` when it finished.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from medclf.errors import MedclfError
from medclf.safeload import file_sha256, load_torch_file


def load_checkpoint(path: Path) -> dict[str, Any]:
    ckpt = load_torch_file(path, f"{path}: checkpoint")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise MedclfError(f"{path}: not a medclf checkpoint (no state_dict)")
    return ckpt


def model_from_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model in eval mode with the checkpoint's weights, and the checkpoint's medclf meta."""
    from medclf.config import upgraded
    from medclf.models import build_model

    ckpt = load_checkpoint(path)
    meta = ckpt.get("medclf")
    if not meta:
        raise MedclfError(f"{path}: not a medclf checkpoint (no 'medclf' metadata)")
    # The checkpoint holds every weight: never re-read model.weights or contact the hub here.
    model_cfg = upgraded({"model": meta["model"]}).model
    model_cfg.pretrained, model_cfg.weights = False, None

    def network() -> nn.Module:
        return build_model(
            model_cfg,
            num_classes=int(meta["num_classes"]),
            in_chans=int(meta["in_chans"]),
            image_size=int(meta["preprocessing"]["image_size"]),
        )

    model = _ensemble(meta, network, path) if meta.get("ensemble") else network()
    # With train.ema the averaged weights are the ones validated, selected and deployed.
    prefix = "ema.module." if meta.get("ema") else "model."
    state = {
        k.removeprefix(prefix): v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)
    }
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, meta


def _ensemble(meta: dict[str, Any], network: Any, path: Path) -> nn.Module:
    """The fold ensemble a k-fold run saved (``models.ensemble``), its size bounded first."""
    from medclf.models.ensemble import MAX_FOLDS, FoldEnsemble

    folds = meta["ensemble"].get("folds") if isinstance(meta["ensemble"], dict) else None
    if not isinstance(folds, int) or not 2 <= folds <= MAX_FOLDS:
        raise MedclfError(f"{path}: an ensemble checkpoint with {folds!r} folds (2 to {MAX_FOLDS})")
    return FoldEnsemble([network() for _ in range(folds)], channels=int(meta["in_chans"]))


SUMMARY_DIGEST_KEY = "best_ckpt_sha256"


def verified_best_digest(run: Any) -> str:
    """sha256 of ``run``'s best.ckpt, checked against the digest training recorded; a
    mismatch (a changed or damaged file) is refused. Runs still training have no record."""
    digest = file_sha256(run.best_ckpt)
    recorded = None
    if run.summary.is_file():
        try:
            recorded = json.loads(run.summary.read_text(encoding="utf-8")).get(SUMMARY_DIGEST_KEY)
        except (ValueError, AttributeError) as exc:
            raise MedclfError(f"{run.summary}: not readable JSON ({exc})") from exc
    if recorded and recorded != digest:
        raise MedclfError(
            f"{run.root}: weights/best.ckpt does not match the sha256 recorded when training "
            f"finished ({run.summary.name}: {recorded[:12]}..., file: {digest[:12]}...); the "
            "file was changed or damaged. Restore the original or train again"
        )
    return digest


def model_version(digest: str, length: int = 12) -> str:
    """The model version predict and serve report: a prefix of the weights' sha256."""
    return digest[:length]
