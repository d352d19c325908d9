"""The slim serving install answers without the training stack. (That no layer imports one
above it, e.g. serving or export importing training, is import-linter's contracts in
pyproject.toml, run by make test.)"""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

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
from medclf.inference.predictor import load_predictor
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
