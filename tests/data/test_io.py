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


# --- the pixel budget: checked from the header, before decoding --------------------------


def test_png_bomb_is_refused_from_its_header(tmp_path: Path):
    from medclf.data.io import decode
    from medclf.image_settings import ImageTooLargeError
    from tests.badinput import bomb_png

    bomb = bomb_png(tmp_path / "bomb.png", 30000, 30000)
    assert bomb.stat().st_size < 200_000  # 900 million pixels in ~107 KB
    with pytest.raises(ImageTooLargeError, match=r"bomb\.png: image too large.*30000x30000"):
        decode(bomb)
    # the same file type under the budget decodes, and the budget is a setting
    small = bomb_png(tmp_path / "small.png", 300, 200)
    assert decode(small).array.shape == (200, 300)
    with pytest.raises(ImageTooLargeError, match=r"data\.max_pixels=50,000"):
        decode(small, max_pixels=50_000)


def test_dicom_budget_counts_rows_columns_frames_and_samples(tmp_path: Path):
    from medclf.data.io import decode
    from medclf.image_settings import ImageTooLargeError
    from tests.badinput import bomb_dicom

    dcm = bomb_dicom(tmp_path / "b.dcm", 1200, 1000)
    assert decode(dcm).array.shape == (1200, 1000)  # a real, decodable RLE file
    with pytest.raises(ImageTooLargeError, match=r"1000x1200, 1 sample\(s\) per pixel = 1 "):
        decode(dcm, max_pixels=1_199_999)


def test_npz_images_are_bounded_too(tmp_path: Path):
    from medclf.data.io import decode, npz_ref
    from medclf.image_settings import ImageTooLargeError

    np.savez(tmp_path / "d.npz", train_images=np.zeros((2, 40, 30), np.uint8))
    ref = npz_ref(tmp_path / "d.npz", "train_images", 1)
    assert decode(ref).array.shape == (40, 30)
    with pytest.raises(ImageTooLargeError):
        decode(ref, max_pixels=1199)


def test_decoding_a_large_16bit_image_keeps_few_copies(tmp_path: Path):
    """Peak memory of decoding + resizing a 24-Mpx 16-bit PNG, in a fresh process: the data
    path keeps about 8 bytes per pixel (it held ~21 before: float64 copies)."""
    import subprocess
    import sys

    from tests.badinput import bomb_png

    big = bomb_png(tmp_path / "big.png", 6000, 4000, bit_depth=16)
    small = bomb_png(tmp_path / "small.png", 32, 32, bit_depth=16)
    script = f"""
import resource
from medclf.data.transform import load
from medclf.preprocessing import Preprocessing
prep = Preprocessing(image_size=64, channels=1, class_names=("a", "b"), mean=(0.0,), std=(1.0,))
load(prep, {str(small)!r})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert load(prep, {str(big)!r}).shape == (1, 64, 64)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    grown = int(out.stdout.strip())
    pixels = 6000 * 4000
    assert grown < 11 * pixels, f"decode peak {grown / pixels:.1f} bytes/pixel"


def test_tiny_image_warning():
    from medclf.data.io import tiny_image_warning

    assert tiny_image_warning("x.png", 1, 1) == (
        "x.png: image is only 1x1 px (smaller than 16 px); its prediction is unreliable"
    )
    assert tiny_image_warning("x.png", 28, 28) is None  # MedMNIST size is fine
