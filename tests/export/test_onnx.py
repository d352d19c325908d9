import json
import shutil
from pathlib import Path

import numpy as np
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
    monkeypatch.setattr(onnx_export, "RELATIVE_LOGIT_TOLERANCE", -1.0)
    with pytest.raises(MedclfError, match="parity check failed"):
        onnx_export.export_onnx(run)
    export_dir = run / "export"
    assert not (export_dir / "model.onnx").exists()
    assert json.loads((export_dir / "parity.json").read_text())["passed"] is False
    assert sorted(p.name for p in export_dir.iterdir()) == ["parity.json"]  # no temp debris


class _Shifted:
    """A candidate whose outputs differ from the reference's by a chosen amount."""

    def __init__(self, reference, logit_shift: float, logit_scale: float = 1.0):
        self.reference, self.shift, self.scale = reference, logit_shift, logit_scale

    def logits_batch(self, x):
        import torch

        with torch.inference_mode():
            logits = self.reference.model(torch.from_numpy(x)).numpy() * self.scale
        logits[:, 0] += self.shift * np.abs(logits).max(axis=1)
        return logits

    def predict_batch(self, x):
        z = self.logits_batch(x)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict_arrays(self, inputs):
        return self.predict_batch(np.stack(inputs))


def test_parity_rejects_a_real_mismatch_and_accepts_float_noise(trained_run: Path):
    from medclf.serving.predictor import TorchPredictor

    reference = TorchPredictor(trained_run)
    paths = onnx_export._parity_images(onnx_export.RunDir(trained_run), 8)
    wrong = onnx_export.parity_report(reference, _Shifted(reference, 2e-2), paths)
    assert not wrong["passed"] and wrong["max_relative_logit_diff"] > 1e-3

    # A barely trained deep network: logits around 1e6, float32 noise of 1e-7 relative.
    import torch

    class Blown(torch.nn.Module):
        def __init__(self, base):
            super().__init__()
            self.base = base

        def forward(self, x):
            return self.base(x) * 1e6

    reference.model = Blown(reference.model)
    noisy = onnx_export.parity_report(reference, _Shifted(reference, 1e-7), paths)
    assert noisy["passed"] and noisy["max_relative_logit_diff"] < 1e-6
    assert noisy["top1_agreement"] == 1.0
