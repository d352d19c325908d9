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
    with pytest.raises(MedclfError, match="parity check failed"):
        onnx_export.export_onnx(run)
    export_dir = run / "export"
    assert not (export_dir / "model.onnx").exists()
    assert json.loads((export_dir / "parity.json").read_text())["passed"] is False
    assert sorted(p.name for p in export_dir.iterdir()) == ["parity.json"]  # no temp debris


class _Shifted:
    """A candidate whose logits differ from the reference's by a small relative amount."""

    def __init__(self, reference, logit_shift: float):
        self.reference, self.shift = reference, logit_shift

    def logits_batch(self, x):
        logits = self.reference.logits_batch(x).astype(np.float64)
        logits[:, 0] += self.shift * np.abs(logits).max(axis=1)
        return logits

    def predict_batch(self, x):
        logits = self.logits_batch(x) / self.reference.decision.temperature
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def logits_arrays(self, inputs):
        return self.logits_batch(np.stack(inputs))

    def predict_arrays(self, inputs):
        return self.predict_batch(np.stack(inputs))

    def embeddings_arrays(self, inputs):
        return self.reference.embeddings_arrays(inputs) * (1 + self.embedding_error)

    embedding_error = 0.0


def test_parity_rejects_a_two_percent_logit_error(trained_run: Path):
    from medclf.inference.predictor import TorchPredictor

    reference = TorchPredictor(trained_run)
    paths = onnx_export._parity_images(onnx_export.RunDir(trained_run), 8)
    assert onnx_export.parity_report(reference, _Shifted(reference, 0.0), paths)["passed"]
    wrong = onnx_export.parity_report(reference, _Shifted(reference, 2e-2), paths)
    assert not wrong["passed"] and wrong["max_abs_diff"] > 1e-4
    embedding_only = _Shifted(reference, 0.0)
    embedding_only.embedding_error = 1e-3  # the monitor would compare other features
    report = onnx_export.parity_report(reference, embedding_only, paths)
    assert not report["passed"] and report["max_abs_diff"] <= 1e-4
    assert report["embedding_max_rel_diff"] == pytest.approx(1e-3, rel=1e-2)


def test_the_export_embeds_like_the_checkpoint(trained_run: Path):
    from medclf.inference.predictor import OnnxPredictor, TorchPredictor

    parity = json.loads((trained_run / "export" / "parity.json").read_text())
    assert parity["passed"] and parity["embedding_max_rel_diff"] <= 1e-4
    exported = OnnxPredictor(trained_run / "export" / "model.onnx")
    x = np.random.default_rng(0).standard_normal((3, *exported.prep.input_shape))
    probabilities, embedding = exported.predict_embedded(x.astype(np.float32))
    expected_p, expected_e = TorchPredictor(trained_run).predict_embedded(x.astype(np.float32))
    np.testing.assert_allclose(probabilities, expected_p, atol=1e-5)
    np.testing.assert_allclose(embedding, expected_e, rtol=1e-4, atol=1e-4)
