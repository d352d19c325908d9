from pathlib import Path

import pytest

from medclf.errors import MedclfError
from medclf.preprocessing import Preprocessing


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


def test_the_record_imports_no_decoder():
    """The record is a description: importing it loads nothing of medclf.data (the decoders
    import it, never the other way round)."""
    from tests.conftest import modules_after_import

    loaded = modules_after_import("medclf.preprocessing")
    assert "medclf.preprocessing" in loaded
    assert [m for m in loaded if m.startswith("medclf.data")] == []
