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


SLIM_PROBE = """
import sys
from importlib.abc import MetaPathFinder

BLOCKED = {"torch", "torchvision", "timm", "lightning", "sklearn", "pandas", "matplotlib"}

class NotInstalled(MetaPathFinder):  # what the slim serving install (no training stack) lacks
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
from fastapi.testclient import TestClient
import medclf.cli
from medclf.config import compose
from medclf.serving.app import create_app
from medclf.serving.predictor import load_predictor
from medclf.serving.settings import ServeSettings

settings = ServeSettings.from_cfg(compose(["serve.audit_url=null"]))
app = create_app(load_predictor(sys.argv[1], None), settings)
with TestClient(app) as client:
    with open(sys.argv[2], "rb") as f:
        answer = client.post("/predict", files={"file": f.read()})
    print(answer.status_code, client.get("/metadata").status_code)
"""


def test_serving_an_onnx_file_needs_no_training_stack(trained_run: Path, tiny_synth: Path):
    """The slim serving install's promise (tests/test_docker.py builds it, heavy): serving an
    ONNX file imports none of torch, timm, Lightning, scikit-learn, pandas, matplotlib."""
    onnx, png = trained_run / "export" / "model.onnx", next(tiny_synth.rglob("*.png"))
    proc = subprocess.run(
        [sys.executable, "-c", SLIM_PROBE, str(onnx), str(png)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "200 200"
