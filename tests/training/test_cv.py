"""medclf train cv=3 end to end: patient-grouped folds, their mean and spread, and a fold
ensemble that evaluate (out-of-fold calibration), export (parity), predict and serve take
like one model, logged to MLflow as one tree."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from medclf.config import compose
from medclf.errors import MedclfError
from tests.conftest import medclf, printed_run, served

TINY = ["data.image_size=32", "train.max_epochs=2", "train.progress_bar=false"]


def test_cv_values_are_checked_at_compose(tmp_path: Path):
    with pytest.raises(MedclfError, match="cv=1 is not valid"):
        compose(["cv=1"])
    proc = medclf("train", "data.path=missing", "cv=30", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: cv=30"), proc.stderr


@pytest.mark.heavy  # ~70 s: three fold trainings, evaluate, export, a server; CI runs it
def test_three_folds_make_an_ensemble_used_like_one_model(tiny_synth: Path, tmp_path: Path):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = medclf("train", f"data.path={tiny_synth}", "cv=3", *TINY, "logger=[mlflow]",
                  f"mlflow.tracking_uri={tracking}", "runs_root=runs", cwd=tmp_path,
                  check=True)  # fmt: skip
    run = printed_run(proc, tmp_path)
    assert "cv (3 folds, mean +/- sd): val/acc " in proc.stdout
    assert proc.stderr.count("data check: no leakage") == 1  # checked once, not per fold
    summary = json.loads((run / "cv.json").read_text())
    accs = [f["val/acc"] for f in summary["per_fold"]]
    assert summary["mean"]["val/acc"] == pytest.approx(np.mean(accs))
    assert summary["std"]["val/acc"] == pytest.approx(np.std(accs, ddof=1))

    # folds: every train/val image validated exactly once, patients whole, test untouched
    ensemble = pd.read_csv(run / "split.csv", dtype=str, keep_default_na=False)
    original = ensemble["cv_fold"] == ""
    assert set(ensemble.loc[original, "split"]) == {"test"}
    for k in (1, 2, 3):
        fold = pd.read_csv(run / f"fold-{k}" / "split.csv", dtype=str, keep_default_na=False)
        fold = fold.set_index("path").loc[ensemble["path"]]
        assert (
            fold["split"].eq("val").to_numpy() == ensemble["cv_fold"].eq(str(k)).to_numpy()
        ).all()
        assert (fold.loc[original.to_numpy(), "split"] == "test").all()
    assert (ensemble[~original].groupby("patient_id")["cv_fold"].nunique() == 1).all()

    # evaluate: the decision is fitted on out-of-fold predictions
    medclf("evaluate", f"model={run}", "split=val", cwd=tmp_path, check=True)
    calibration = json.loads((run / "calibration.json").read_text())
    assert calibration["fitted_on"]["images"] == int((~original).sum())
    assert calibration["fitted_on"]["out_of_fold"] is True
    preds = pd.read_csv(run / "eval/val/predictions.csv", keep_default_na=False)
    _check_out_of_fold(run, ensemble, preds, calibration["temperature"])
    medclf("evaluate", f"model={run}", cwd=tmp_path, check=True)

    # export: one graph averaging the folds, parity-checked; predict and serve take it
    medclf("export", f"model={run}", cwd=tmp_path, check=True)
    parity = json.loads((run / "export" / "parity.json").read_text())
    assert parity["max_abs_diff"] <= 1e-4 and parity["top1_agreement"] == 1.0
    image = ensemble.loc[original, "path"].iloc[0]
    torch_out = medclf("predict", f"model={run}", image, "--json", cwd=tmp_path, check=True)
    onnx_out = medclf("predict", f"model={run / 'export/model.onnx'}", image, "--json",
                      cwd=tmp_path, check=True)  # fmt: skip
    p_torch = json.loads(torch_out.stdout)["results"][0]["probabilities"]
    p_onnx = json.loads(onnx_out.stdout)["results"][0]["probabilities"]
    assert p_torch == pytest.approx(p_onnx, abs=1e-4)
    with served(run / "export" / "model.onnx") as url, open(image, "rb") as f:
        answer = httpx.post(f"{url}/predict", files={"file": ("x.png", f, "image/png")})
    assert answer.status_code == 200
    assert answer.json()["probabilities"] == pytest.approx(p_onnx, abs=1e-4)
    refused = medclf("evaluate", f"model={run}", "split=val", "backend=onnx", cwd=tmp_path)
    assert refused.returncode == 2 and "out-of-fold" in refused.stderr
    _check_mlflow_tree(tracking, run)


def _check_out_of_fold(run: Path, ensemble: pd.DataFrame, preds: pd.DataFrame, t: float):
    """A fold-2 image's validation probabilities are fold 2's network alone."""
    from scipy.special import softmax

    from medclf.inference.predictor import TorchPredictor

    classes = [c.removeprefix("prob_") for c in preds.columns if c.startswith("prob_")]
    second = set(ensemble.loc[ensemble["cv_fold"] == "2", "path"])
    rows = preds[preds["path"].isin(second)]
    fold = TorchPredictor(run / "fold-2")
    whole = TorchPredictor(run)
    inputs = np.stack([fold.prepare(p)[0] for p in rows["path"]])
    assert fold.class_names == tuple(classes)
    expected = softmax(fold._raw_logits(inputs).astype(np.float64) / t, axis=1)
    np.testing.assert_allclose(rows[[f"prob_{c}" for c in classes]], expected, atol=1e-6)
    ensembled = softmax(whole._raw_logits(inputs).astype(np.float64) / t, axis=1)
    assert np.abs(ensembled - expected).max() > 1e-5  # the ensemble's would not match


def _check_mlflow_tree(tracking: str, run: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    logged = client.search_runs([client.get_experiment_by_name("default").experiment_id])
    parents = [r for r in logged if r.info.run_name == run.name]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [
        r for r in logged if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
    ]
    assert sorted(r.info.run_name for r in children) == ["fold-1", "fold-2", "fold-3"]
    assert "val/acc" in parents[0].data.metrics
