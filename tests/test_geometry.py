import numpy as np
import pytest

from medclf.geometry import foreground_box, to_square, trim


def _framed(h: int = 120, w: int = 200, box=(30, 90, 50, 170), value: float = 0.6) -> np.ndarray:
    """A bright subject with a texture inside a black frame, CxHxW."""
    img = np.zeros((1, h, w), np.float32)
    top, bottom, left, right = box
    img[0, top:bottom, left:right] = value
    img[0, top + 5 : top + 10, left + 5 : right - 5] = 0.9
    return img


def test_foreground_box_finds_the_subject_and_ignores_a_thin_table_line():
    img = _framed()
    img[0, 110, 10:190] = 0.5  # a scanner table: one thin line, removed by the opening
    top, bottom, left, right = foreground_box(img)
    assert 26 <= top <= 30 and 90 <= bottom <= 94
    assert 46 <= left <= 50 and 170 <= right <= 174


def test_trim_keeps_images_without_a_frame_or_with_a_tiny_subject():
    full = np.full((1, 50, 60), 0.4, np.float32)
    assert trim(full, "foreground") is full  # no region unlike the border
    tiny = _framed(box=(10, 14, 10, 14))
    assert trim(tiny, "foreground") is tiny  # under 5 % of the image is not "the subject"
    assert trim(_framed(), "none").shape == (1, 120, 200)


def test_trimmed_framings_of_one_subject_agree():
    tight = _framed(h=64, w=124, box=(2, 62, 2, 122))
    wide = _framed(h=300, w=400, box=(120, 180, 140, 260))  # same subject, wide frame
    a = to_square(trim(tight, "foreground"), 32, "letterbox")
    b = to_square(trim(wide, "foreground"), 32, "letterbox")
    assert np.abs(a - b).mean() < 0.05
    untrimmed = to_square(wide, 32, "letterbox")
    assert np.abs(a - untrimmed).mean() > 0.1


@pytest.mark.parametrize("mode", ["squash", "letterbox", "crop", "bilinear"])
def test_to_square_shapes(mode):
    out = to_square(np.random.default_rng(0).random((3, 40, 100), dtype=np.float32), 24, mode)
    assert out.shape == (3, 24, 24) and out.dtype == np.float32


def test_letterbox_keeps_aspect_and_pads_with_the_background():
    img = np.zeros((1, 20, 80), np.float32)
    img[0, 1:-1, 1:-1] = 1.0
    out = to_square(img, 40, "letterbox")[0]
    assert out[:12].max() == 0 and out[-12:].max() == 0  # 40 * 20/80 = 10 rows of image
    assert out[20, 5:35].min() > 0.9
    squash = to_square(img, 40, "squash")[0]
    assert squash[5:35, 20].min() > 0.9  # stretched over the full height
    crop = to_square(img, 40, "crop")[0]
    assert crop[20, :].min() > 0.9  # the centre square: no left/right border columns
