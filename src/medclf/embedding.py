"""The compact embedding that input drift on the model's own features is measured with.

What it is: the input of the network's classifier head (the pooled backbone features, the
"penultimate layer"), multiplied by a fixed random Gaussian matrix down to ``SIZE`` numbers.
A random projection keeps pairwise distances up to a small factor (Johnson-Lindenstrauss),
which is all the kernel two-sample test (``drift.mmd``) uses, and it needs no fitting: the
same seed gives the same matrix to the export (baked into the ONNX graph as a constant),
to the PyTorch predictor and to the evaluation that writes the reference, for any backbone
width.

Size decided for the audit log: ``SIZE`` = 32 float32 values, 128 bytes, stored as 172
characters of base64 per prediction (the probabilities JSON of a two-class model is about
60). 32 dimensions keep the MMD's power on the phantom shifts of the tests while a year of
10^6 predictions adds about 170 MB to the log.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

SIZE = 32
PROJECTION_SEED = 20261203  # fixed forever: changing it makes every stored vector stale
_ENCODED_BYTES = SIZE * 4


def projection(width: int) -> np.ndarray:
    """The ``width`` x ``SIZE`` float32 matrix that maps pooled features to the embedding;
    scaled by 1/sqrt(SIZE) so distances keep their order of magnitude."""
    rng = np.random.default_rng(PROJECTION_SEED + int(width))
    return (rng.standard_normal((int(width), SIZE)) / np.sqrt(SIZE)).astype(np.float32)


def encode(vector: np.ndarray | None) -> str | None:
    """One embedding as the audit log's text (little-endian float32, base64); None stays
    None (a model exported without the embedding output)."""
    if vector is None:
        return None
    values = np.asarray(vector, dtype="<f4").reshape(-1)
    if values.shape != (SIZE,):
        raise ValueError(f"an embedding has {SIZE} values, not {values.size}")
    return base64.b64encode(values.tobytes()).decode("ascii")


def decode(text: str | None) -> np.ndarray | None:
    """The embedding of one audit row; None when the row has none or holds something that is
    not one (a damaged or foreign row is skipped, not trusted)."""
    if not text or len(text) > 2 * _ENCODED_BYTES:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _ENCODED_BYTES:
        return None
    values = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    return values if np.all(np.isfinite(values)) else None
