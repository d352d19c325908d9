"""TTA and conformal sets: fitted by evaluate, and the same answer from every consumer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from medclf.conformal import coverage_and_size, expected_coverage, fit_lac, set_mask
from medclf.decision import DecisionRecord
from medclf.tta import views
from tests.conftest import medclf, served

pytestmark = pytest.mark.slow


def test_lac_sets_cover_at_the_promised_rate_on_exchangeable_data():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 4)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(4, p=p) for p in probs])  # labels drawn from the probabilities
    fit = fit_lac(probs[:500], y[:500], alpha=0.1)
    coverage, size = coverage_and_size(set_mask(probs[500:], fit.qhat), y[500:])
    assert abs(coverage - 0.9) < 0.03 and 1 < size < 4
    assert fit_lac(probs[:5], y[:5], alpha=0.1).qhat == 1.0  # too few images: every class


def test_qhat_is_the_conformal_order_statistic():
    # scores 1 - p(true) = 0.0, 0.1, ..., 0.9 in shuffled order; k = ceil(11 * 0.8) = 9
    p_true = 1.0 - np.array([3, 7, 0, 9, 1, 5, 8, 2, 6, 4]) / 10
    probs = np.stack([p_true, 1 - p_true], axis=1)
    y = np.zeros(10, dtype=int)
    assert fit_lac(probs, y, alpha=0.2).qhat == pytest.approx(0.8)
    assert fit_lac(probs, y, alpha=0.1).qhat == pytest.approx(0.9)  # k = n: the largest
    assert fit_lac(probs[:9], y[:9], alpha=0.1).qhat == pytest.approx(0.9)  # k = 9 = n


def test_expected_coverage_range_holds_for_small_calibration_sets():
    lo, hi = expected_coverage(72, 0.1)
    assert 0.8 < lo < 0.87 and 0.94 < hi < 0.98
    big_lo, big_hi = expected_coverage(2000, 0.1)
    assert big_lo < 0.9 < big_hi and big_hi - big_lo < (hi - lo) / 4
    # 300 calibrations of 72 exchangeable images each: about 95% land inside the range
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=20000)
    y = np.array([rng.choice(3, p=p) for p in probs])
    test_p, test_y = probs[:10000], y[:10000]
    coverages = []
    for _ in range(300):
        pick = rng.choice(np.arange(10000, 20000), size=72, replace=False)
        fit = fit_lac(probs[pick], y[pick], alpha=0.1)
        coverages.append(coverage_and_size(set_mask(test_p, fit.qhat), test_y)[0])
    inside = np.mean([lo <= c <= hi for c in coverages])
    assert 0.9 <= inside <= 0.99
    # the mean coverage is that of the k-th order statistic, k / (n + 1) = 66 / 73 = 0.904
    # (one rank higher would promise 67 / 73 = 0.918); its standard error here is ~0.002
    assert abs(np.mean(coverages) - 66 / 73) < 0.006


def test_tta_views_and_record_round_trip():
    x = np.arange(2 * 1 * 6 * 6, dtype=np.float32).reshape(2, 1, 6, 6)
    flip = views(x, "flip")
    assert len(flip) == 2 and np.array_equal(flip[1], x[..., ::-1])
    assert len(views(x, "flip+rot")) == 4 and len(views(x, "none")) == 1
    rec = DecisionRecord(tta="flip", conformal={"method": "lac", "alpha": 0.1, "qhat": 0.7, "n": 9})
    again = DecisionRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert again == rec
    out = again.decide(np.array([0.5, 0.35, 0.15]), ("a", "b", "c"))
    assert out["prediction_set"] == ["a", "b"] and out["refer"] and out["set_coverage"] == 0.9


@pytest.mark.heavy  # ~75 s: several commands and a server; CI runs it (test-heavy)
def test_evaluate_predict_onnx_and_serve_agree_with_tta_and_sets(trained_run: Path, tmp_path):
    run = tmp_path / trained_run.name
    shutil.copytree(trained_run, run)  # the shared run keeps its own evaluation
    proc = medclf("evaluate", f"model={run}", "eval.tta=flip", "eval.latency_runs=0", check=True)
    assert "test-time augmentation (flip)" in proc.stdout and "conformal sets (LAC" in proc.stdout
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert set(metrics["tta"]["with"]) == {"accuracy", "macro_auc"}
    conf = metrics["conformal"]
    assert conf["method"] == "lac" and conf["target_coverage"] == 0.9
    assert 0 <= conf["coverage"]["ci_low"] <= conf["coverage"]["value"] <= 1
    lo, hi = conf["expected_coverage_95"]
    assert (lo, hi) == expected_coverage(conf["n"], 0.1)
    outside = not lo <= conf["coverage"]["value"] <= hi
    assert ("COVERAGE" in proc.stdout) == outside
    assert "Prediction sets" in (run / "model_card.md").read_text()
    record = json.loads((run / "calibration.json").read_text())
    assert record["tta"] == "flip" and record["conformal"]["qhat"] == conf["qhat"]

    medclf("export", f"model={run}", "format=onnx", check=True)
    rows = pd.read_csv(run / "eval" / "test" / "predictions.csv", keep_default_na=False)
    row = rows.iloc[0]
    classes = [c.removeprefix("prob_") for c in rows.columns if c.startswith("prob_")]
    expected = [float(row[f"prob_{c}"]) for c in classes]
    answers = []
    for model in (run, run / "export" / "model.onnx"):
        out = json.loads(
            medclf("predict", f"model={model}", row["path"], "--json", check=True).stdout
        )
        answers.append(out["results"][0])
    with served(run / "export" / "model.onnx") as url, open(row["path"], "rb") as fh:
        answers.append(httpx.post(f"{url}/predict", files={"file": ("x.png", fh)}).json())
    for answer in answers:
        got = [answer["probabilities"][c] for c in classes]
        assert max(abs(a - b) for a, b in zip(expected, got, strict=True)) < 1e-4
        assert "|".join(answer["decision"]["prediction_set"]) == row["prediction_set"]
