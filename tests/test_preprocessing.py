from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medclf.errors import MedclfError
from medclf.preprocessing import Preprocessing, normalization_stats


def _prep(**kw) -> Preprocessing:
    base = dict(image_size=16, channels=1, class_names=("a", "b"), mean=(0.5,), std=(0.25,))
    return Preprocessing(**{**base, **kw})


def test_record_round_trip(tmp_path: Path):
    prep = _prep(extra={"note": "x"})
    prep.save(tmp_path / "p.json")
    assert Preprocessing.load_file(tmp_path / "p.json") == prep
    assert Preprocessing.from_dict(prep.to_dict()) == prep


def test_newer_record_version_is_refused():
    d = _prep().to_dict()
    d["version"] = 99
    with pytest.raises(MedclfError, match="newer"):
        Preprocessing.from_dict(d)


def test_pipeline_shape_channels_and_normalization(tmp_path: Path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 1] = 255
    Image.fromarray(rgb).save(tmp_path / "g.png")
    gray = _prep()(tmp_path / "g.png")
    assert gray.shape == (1, 16, 16) and gray.dtype == np.float32
    np.testing.assert_allclose(gray, (0.587 - 0.5) / 0.25, atol=1e-5)  # luma of pure green
    three = _prep(channels=3, mean=(0, 0, 0), std=(1, 1, 1))(tmp_path / "g.png")
    np.testing.assert_allclose(three[:, 5, 5], [0, 1, 0], atol=1e-6)
    # bytes and path give the same input
    np.testing.assert_array_equal(_prep()((tmp_path / "g.png").read_bytes()), gray)


def test_dataset_statistics_use_only_given_images():
    imgs = [np.full((1, 4, 4), 0.2, np.float32), np.full((1, 4, 4), 0.6, np.float32)]
    mean, std = normalization_stats("dataset", 1, imgs)
    assert mean[0] == pytest.approx(0.4) and std[0] == pytest.approx(0.2)
    assert normalization_stats("none", 3, []) == ((0.0,) * 3, (1.0,) * 3)
    assert normalization_stats("imagenet", 3, [])[0] == (0.485, 0.456, 0.406)
    with pytest.raises(MedclfError, match=r"data\.normalize"):
        normalization_stats("zscore", 1, imgs)


def test_trim_and_resize_are_recorded_and_old_records_read_as_squash():
    prep = _prep(resize="letterbox", trim="foreground")
    again = Preprocessing.from_dict(prep.to_dict())
    assert (again.resize, again.trim, again.version) == ("letterbox", "foreground", 2)
    old = {k: v for k, v in prep.to_dict().items() if k != "trim"}
    old.update(version=1, resize="bilinear")
    legacy = Preprocessing.from_dict(old)
    assert (legacy.resize, legacy.trim) == ("squash", "none")
    with pytest.raises(MedclfError, match=r"data\.resize"):
        _prep(resize="stretch")
    with pytest.raises(MedclfError, match=r"data\.trim"):
        _prep(trim="auto")


def test_trim_is_applied_by_the_one_pipeline(tmp_path: Path):
    arr = np.zeros((200, 300), np.uint8)
    arr[80:120, 100:200] = 200
    Image.fromarray(arr).save(tmp_path / "framed.png")
    plain = _prep(image_size=32, mean=(0.0,), std=(1.0,)).load(tmp_path / "framed.png")
    trimmed = _prep(image_size=32, mean=(0.0,), std=(1.0,), trim="foreground", resize="squash")
    out = trimmed.load(tmp_path / "framed.png")
    assert plain.mean() < 0.15 and out.mean() > 0.6  # the subject now fills the input
