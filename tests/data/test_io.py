from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medclf.data.io import read_image
from medclf.errors import MedclfError


def test_16bit_png_keeps_full_depth(tmp_path: Path):
    arr = np.array([[0, 1, 40950, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "x.png")
    out = read_image(tmp_path / "x.png")
    np.testing.assert_allclose(out, arr / 65535.0, atol=1e-7)
    assert out[0, 1] > 0  # a single 16-bit step survives (8-bit would round it to 0)


def test_rgba_palette_and_bilevel_modes(tmp_path: Path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # fully transparent red: alpha must be ignored
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png").shape == (4, 4, 3)
    assert read_image(tmp_path / "a.png")[0, 0, 0] == pytest.approx(200 / 255)
    Image.fromarray(rgba[..., :3], "RGB").convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (4, 4, 3)
    Image.new("1", (5, 3), 1).save(tmp_path / "b.png")
    assert read_image(tmp_path / "b.png").shape == (3, 5)
    assert read_image(tmp_path / "b.png").max() == 1.0


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty file"), (b"not an image at all", "not a readable image")],
)
def test_bad_files_are_named(tmp_path: Path, content: bytes, message: str):
    f = tmp_path / "scan.png"
    f.write_bytes(content)
    with pytest.raises(MedclfError, match=message) as info:
        read_image(f)
    assert "scan.png" in str(info.value)


def test_truncated_png_is_reported(tmp_path: Path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(
        tmp_path / "t.png"
    )
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(MedclfError, match=r"t\.png"):
        read_image(tmp_path / "t.png")
