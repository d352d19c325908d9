import json
import shutil
from pathlib import Path

import pytest

from medclf.errors import MedclfError
from medclf.export import onnx as onnx_export

pytestmark = pytest.mark.slow


def test_failed_parity_check_leaves_no_model(trained_run: Path, tmp_path: Path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export"))
    # A negative tolerance fails every comparison: the path taken when ONNX and PyTorch
    # disagree (a real mismatch cannot be provoked with a correct exporter).
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(MedclfError, match="parity check failed"):
        onnx_export.export_onnx(run)
    export_dir = run / "export"
    assert not (export_dir / "model.onnx").exists()
    assert json.loads((export_dir / "parity.json").read_text())["passed"] is False
    assert sorted(p.name for p in export_dir.iterdir()) == ["parity.json"]  # no temp debris
