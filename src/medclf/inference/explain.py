"""Grad-CAM overlays (the grad-cam library) for CNNs and vision transformers.

The target layer is found from the architecture: the last block's first norm for ViT-style
models (tokens reshaped back to the patch grid, prefix tokens dropped) and Swin (NHWC maps
permuted to NCHW), otherwise the last 2-D convolution. Explanations are of the predicted class.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn


def cam_target(model: nn.Module) -> tuple[nn.Module, Callable | None]:
    """(target layer, reshape transform) for Grad-CAM on ``model``."""
    if hasattr(model, "blocks") and hasattr(model, "patch_embed"):
        grid = tuple(model.patch_embed.grid_size)
        prefix = int(getattr(model, "num_prefix_tokens", 1))

        def tokens_to_map(t: torch.Tensor) -> torch.Tensor:
            t = t[:, prefix:, :]
            return t.reshape(t.shape[0], grid[0], grid[1], t.shape[-1]).permute(0, 3, 1, 2)

        return model.blocks[-1].norm1, tokens_to_map
    if hasattr(model, "layers") and hasattr(model.layers[-1], "blocks"):
        return model.layers[-1].blocks[-1].norm1, lambda t: t.permute(0, 3, 1, 2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__}: no convolution or transformer block found")
    return convs[-1], None


def gradcam_maps(model: nn.Module, inputs: np.ndarray, classes: list[int]) -> np.ndarray:
    """N x H x W heat maps in [0, 1] for the given class of each input."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    # a fold ensemble (models.ensemble): every fold's layer, maps averaged by grad-cam
    networks = list(model.folds) if hasattr(model, "single_fold") else [model]
    targets = [cam_target(network) for network in networks]
    layers, reshape = [layer for layer, _ in targets], targets[0][1]
    x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
    with GradCAM(model=model, target_layers=layers, reshape_transform=reshape) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes])


def overlay(image_chw: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """HxWx3 [0,1]: the heat map blended over the (unnormalized) image."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.moveaxis(image_chw, 0, -1)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    blended = show_cam_on_image(np.clip(rgb, 0, 1).astype(np.float32), heat, use_rgb=True)
    return blended.astype(np.float32) / 255.0
