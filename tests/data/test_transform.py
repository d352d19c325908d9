"""The one file -> model-input path, as the record describes it."""

from pathlib import Path

import numpy as np
from PIL import Image

from medclf.data.transform import load, model_input
from medclf.preprocessing import Preprocessing


def _prep(**kw) -> Preprocessing:
    base = dict(image_size=16, channels=1, class_names=("a", "b"), mean=(0.5,), std=(0.25,))
    return Preprocessing(**{**base, **kw})


def test_pipeline_shape_channels_and_normalization(tmp_path: Path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 1] = 255
    Image.fromarray(rgb).save(tmp_path / "g.png")
    gray = model_input(_prep(), tmp_path / "g.png")
    assert gray.shape == (1, 16, 16) and gray.dtype == np.float32
    np.testing.assert_allclose(gray, (0.587 - 0.5) / 0.25, atol=1e-5)  # luma of pure green
    three = model_input(_prep(channels=3, mean=(0, 0, 0), std=(1, 1, 1)), tmp_path / "g.png")
    np.testing.assert_allclose(three[:, 5, 5], [0, 1, 0], atol=1e-6)
    # bytes and path give the same input
    np.testing.assert_array_equal(model_input(_prep(), (tmp_path / "g.png").read_bytes()), gray)


def test_trim_is_applied_by_the_one_pipeline(tmp_path: Path):
    arr = np.zeros((200, 300), np.uint8)
    arr[80:120, 100:200] = 200
    Image.fromarray(arr).save(tmp_path / "framed.png")
    plain = load(_prep(image_size=32, mean=(0.0,), std=(1.0,)), tmp_path / "framed.png")
    trimmed = _prep(image_size=32, mean=(0.0,), std=(1.0,), trim="foreground", resize="squash")
    out = load(trimmed, tmp_path / "framed.png")
    assert plain.mean() < 0.15 and out.mean() > 0.6  # the subject now fills the input
