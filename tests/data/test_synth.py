from pathlib import Path

import numpy as np
from PIL import Image

from medclf.data.synth import CLASSES, generate


def test_deterministic_16bit_with_patients(tmp_path: Path):
    a = generate(tmp_path / "a", per_class=6, size=48, seed=5)
    b = generate(tmp_path / "b", per_class=6, size=48, seed=5)
    assert a.equals(b)
    for rel in a["path"][:3]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    img = Image.open(tmp_path / "a" / a["path"][0])
    assert img.mode.startswith("I;16") and img.size == (48, 48)
    assert np.asarray(img).max() > 255  # really uses the 16-bit range
    assert set(a["label"]) == set(CLASSES) and (a.groupby("label").size() == 6).all()
    assert a["patient_id"].nunique() < len(a)  # several images per patient
    assert (a.groupby("patient_id")["label"].nunique() == 1).all()
    c = generate(tmp_path / "c", per_class=6, size=48, seed=6)
    first = c["path"][0]
    assert (tmp_path / "c" / first).read_bytes() != (tmp_path / "a" / a["path"][0]).read_bytes()
