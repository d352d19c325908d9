"""Serving and export load models without training code (dependency arrows point down)."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROBE = """
import sys
import numpy as np
from medclf.serving.app import create_app
from medclf.serving.predictor import OnnxPredictor, TorchPredictor
run = sys.argv[1]
x = np.zeros((1, 1, 32, 32), np.float32)
TorchPredictor(run).predict_batch(x)
OnnxPredictor(run + "/export/model.onnx").predict_batch(x)
import medclf.export.onnx
print(sorted(m for m in sys.modules if m.startswith("medclf.training")))
"""


def test_serving_a_run_and_its_onnx_never_imports_training(trained_run: Path):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(trained_run)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
