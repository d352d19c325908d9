import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medclf.atomic import atomic_dir, atomic_path, staging_dir, sweep_stale, write_json


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_failed_write_leaves_nothing(tmp_path: Path):
    target = tmp_path / "a.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_sweep_removes_temporaries_of_dead_writers_only(tmp_path: Path):
    dead = _dead_pid()
    stale_file = tmp_path / "export" / f".model.onnx.{dead}-abc123.tmp"
    stale_dir = tmp_path / "eval" / f".test.{dead}-x_y9.tmp"
    live_file = tmp_path / f".metrics.json.{os.getpid()}-q1.tmp"
    unrelated = [tmp_path / ".hidden.tmp", tmp_path / "keep.tmp", tmp_path / "model.onnx"]
    stale_file.parent.mkdir()
    stale_dir.mkdir(parents=True)
    (stale_dir / "metrics.json").write_text("{}")
    for f in [stale_file, live_file, *unrelated]:
        f.write_text("x")
    removed = sweep_stale(tmp_path)
    assert sorted(removed) == sorted([stale_file, stale_dir])
    assert not stale_file.exists() and not stale_dir.exists()
    assert live_file.exists() and all(f.exists() for f in unrelated)


def test_atomic_dir_replaces_a_folder_whole_or_not_at_all(tmp_path: Path):
    final = tmp_path / "eval" / "test"
    with atomic_dir(final) as staging:
        (staging / "metrics.json").write_text("1")
    with pytest.raises(KeyError), atomic_dir(final) as staging:
        (staging / "metrics.json").write_text("2")
        raise KeyError("killed half way")
    assert (final / "metrics.json").read_text() == "1"
    with atomic_dir(final) as staging:
        (staging / "report.html").write_text("3")
    assert sorted(p.name for p in final.iterdir()) == ["report.html"]
    assert sorted(p.name for p in final.parent.iterdir()) == ["test"]  # no staging debris


def test_staging_dir_is_named_for_the_sweeper(tmp_path: Path):
    tmp = staging_dir(tmp_path / "cache" / "abc")
    assert tmp.name.startswith(f".abc.{os.getpid()}-") and tmp.name.endswith(".tmp")
    assert sweep_stale(tmp_path) == []  # its writer (this process) is alive


def _strict(token: str):
    raise ValueError(f"non-standard JSON constant {token}")


def test_json_is_strict_nan_and_infinity_become_null(tmp_path: Path):
    import numpy as np

    write_json(
        tmp_path / "m.json",
        {"auc": float("nan"), "bins": np.array([0.5, np.nan, np.inf]), "n": np.int64(3)},
    )
    text = (tmp_path / "m.json").read_text()
    assert json.loads(text, parse_constant=_strict) == {
        "auc": None,
        "bins": [0.5, None, None],
        "n": 3,
    }


@pytest.mark.slow
def test_every_json_a_run_writes_is_strict(trained_run: Path):
    """train -> evaluate -> export (what the demo runs): every JSON file and the ONNX
    metadata parse with a parser that refuses NaN/Infinity."""
    files = sorted(trained_run.rglob("*.json"))
    names = {f.name for f in files}
    assert {"metrics.json", "gates.json", "calibration.json", "metadata.json"} <= names
    for f in files:
        json.loads(f.read_text(), parse_constant=_strict)  # raises on NaN/Infinity
    import onnx

    model = onnx.load(trained_run / "export" / "model.onnx", load_external_data=False)
    for prop in model.metadata_props:
        if prop.value.startswith(("{", "[")):
            json.loads(prop.value, parse_constant=_strict)
