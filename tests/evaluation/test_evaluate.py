"""``medclf evaluate`` end to end on a real trained run: files, numbers, gates, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from medclf.evaluation.report import SECTIONS
from tests.conftest import medclf

CLASSES = ["cavity", "ground_glass", "nodule", "normal"]
FAST = ["eval.n_bootstrap=50", "eval.latency_runs=2", "eval.gradcam_per_class=0"]


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.img_src: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.img_src.append(a.get("src", ""))
        if tag in ("script", "link") or (tag == "img" and not a["src"].startswith("data:")):
            self.external.append(tag)


def test_outputs_and_metrics_agree_with_predictions(trained_run: Path) -> None:
    out = trained_run / "eval" / "test"
    m = json.loads((out / "metrics.json").read_text())
    preds = pd.read_csv(out / "predictions.csv", dtype={"patient_id": str}, keep_default_na=False)
    assert list(preds.columns[:6]) == [
        "path",
        "patient_id",
        "true",
        "predicted",
        "decision",
        "flagged",
    ]
    probs = preds[[f"prob_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-6)
    y = preds["true"].map(CLASSES.index).to_numpy()
    assert m["overall"]["accuracy"]["value"] == pytest.approx(
        skm.accuracy_score(y, probs.argmax(1))
    )
    assert m["overall"]["macro_auc"]["value"] == pytest.approx(
        skm.roc_auc_score(y, probs, multi_class="ovr"), abs=1e-6
    )
    for key in ("accuracy", "macro_auc", "mcc", "ece"):
        v = m["overall"][key]
        assert v["ci_low"] <= v["value"] <= v["ci_high"], key
    assert m["confidence_intervals"]["unit"] == "patient"  # synth data has patient ids
    assert m["per_class"]["nodule"]["sensitivity"]["ci_high"] <= 1.0
    for name in (
        "confusion_matrix",
        "roc_pr_curves",
        "reliability",
        "per_class_metrics",
        "training_curves",
    ):
        assert (out / f"{name}.png").stat().st_size > 5_000, name
    assert set(m["subgroups"]) == {"sex", "age_band", "site"}
    assert sum(g["n"] for g in m["subgroups"]["sex"].values()) == len(preds)
    lat = m["latency"]
    assert 0 < lat["latency_p50_ms"] <= lat["latency_p95_ms"] and lat["throughput_images_per_s"] > 0
    # the decision column follows the rule that decides: the stored thresholds, or argmax
    # where they did not beat it on cross-fitted validation (eval.decision=auto)
    record = json.loads((trained_run / "calibration.json").read_text())
    decided_by = record["fitted_on"]["decision_fit"]
    assert decided_by["rule"] == "youden" and decided_by["reason"]
    if "gain_low" in decided_by:  # cross-fitted: kept exactly when the gain's bound is above 0
        assert decided_by["thresholds_decide"] == (decided_by["gain_low"] > 0)
    thresholds = record["thresholds"] if decided_by["thresholds_decide"] else {}
    assert record["thresholds"] == thresholds
    assert set(thresholds) in (set(CLASSES), set())
    assert record["rule"] == ("youden" if thresholds else "argmax")
    # eval.temperature_scaling=auto: the fitted T only where cross-fitting kept it
    t_fit = record["fitted_on"]["temperature_fit"]
    assert t_fit["fitted"] != 1.0 and t_fit["reason"]
    assert record["temperature"] == (t_fit["fitted"] if t_fit["kept"] else 1.0)
    assert m["calibration"]["after"]["temperature"] == record["temperature"]
    for _, row in preds.iterrows():
        top = max(CLASSES, key=lambda c: row[f"prob_{c}"])
        flagged = [c for c in CLASSES if row[f"prob_{c}"] >= thresholds[c]] if thresholds else [top]
        assert set(filter(None, row["flagged"].split("|"))) == set(flagged)
        expected = max(flagged, key=lambda c: row[f"prob_{c}"]) if flagged else ""
        assert row["decision"] == expected


def test_report_is_self_contained_with_every_section(trained_run: Path) -> None:
    out = trained_run / "eval" / "test"
    page = _Page()
    page.feed((out / "report.html").read_text())
    assert {sid for sid, _ in SECTIONS} <= page.ids
    assert not page.external  # no scripts, stylesheets or linked images
    assert len(page.img_src) >= 7 and all(
        s.startswith("data:image/png;base64,") for s in page.img_src
    )
    card = (trained_run / "model_card.md").read_text()
    for heading in (
        "## Intended use",
        "## Training data",
        "## Calibration",
        "## Operating point",
        "## Quality gates",
        "## Subgroups",
        "## Limitations",
    ):
        assert heading in card
    assert "data fingerprint `" in card


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium not installed")
def test_report_renders_in_headless_chromium(trained_run: Path, tmp_path: Path) -> None:
    report = trained_run / "eval" / "test" / "report.html"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for sid, _ in SECTIONS:
        assert f'id="{sid}"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        ["chromium", *flags, "--window-size=1200,3000", f"--screenshot={shot}", report.as_uri()],
        capture_output=True,
        timeout=120,
    )
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 20  # text, tables and figures drawn, not a blank page


@pytest.mark.heavy  # ~1 min of evaluations; CI runs it (make test-heavy)
def test_gates_fail_the_exit_code_only_with_the_flag(trained_run: Path, tmp_path: Path) -> None:
    def evaluate_val(*extra: str):
        return medclf("evaluate", f"model={trained_run}", "split=val", *FAST, *extra, cwd=tmp_path)

    strict = ["eval.gates.accuracy.min=1.01", "eval.gates.latency_p95_ms=null"]
    proc = evaluate_val(*strict)
    assert proc.returncode == 0 and "gates: FAILED: accuracy >= 1.01" in proc.stdout
    proc = evaluate_val(*strict, "--fail-on-gate")
    assert proc.returncode == 1
    gates = json.loads((trained_run / "eval/val/gates.json").read_text())
    assert not gates["passed"] and "accuracy >= 1.01" in gates["failed"]
    assert not any(g["metric"] == "latency_p95_ms" for g in gates["gates"])
    proc = evaluate_val(
        "eval.gates.accuracy.min=0", "eval.gates.sensitivity=null", "--fail-on-gate"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gates: passed" in proc.stdout


@pytest.mark.heavy  # ~1 min of evaluations; CI runs it (make test-heavy)
def test_external_dataset_and_bad_input(trained_run: Path, tiny_synth: Path, tmp_path: Path):
    proc = medclf(
        "evaluate", f"model={trained_run}", f"data.path={tiny_synth}", *FAST, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads((trained_run / "eval" / tiny_synth.name / "metrics.json").read_text())
    assert m["evaluated"]["external"] and m["evaluated"]["images"] == 48

    other = tmp_path / "other"
    for cls in ("cavity", "pneumothorax"):
        (other / cls).mkdir(parents=True)
        shutil.copy(next(tiny_synth.glob("cavity/*.png")), other / cls / "a.png")
    proc = medclf("evaluate", f"model={trained_run}", f"data.path={other}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "labels ['pneumothorax'] are not classes of the model" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = medclf("evaluate", f"model={trained_run}", "split=holdout", cwd=tmp_path)
    assert proc.returncode == 2 and "split=holdout: the run has no such split" in proc.stderr

    proc = medclf("evaluate", f"model={trained_run}", "eval.threshold=best", cwd=tmp_path)
    assert proc.returncode == 2 and "eval.threshold='best'" in proc.stderr

    proc = medclf("evaluate", f"model={trained_run}", "model.name=resnet18", cwd=tmp_path)
    assert proc.returncode == 2 and "evaluate takes eval.* and data.*" in proc.stderr

    no_weights = tmp_path / "no_weights"
    shutil.copytree(trained_run, no_weights, ignore=shutil.ignore_patterns("*.ckpt", "eval"))
    proc = medclf("evaluate", f"model={no_weights}", cwd=tmp_path)
    assert proc.returncode == 2 and "no weights/best.ckpt" in proc.stderr


def test_the_exported_onnx_model_evaluates_as_deployed(trained_run: Path, tmp_path: Path):
    proc = medclf("evaluate", f"model={trained_run}", "backend=onnx", *FAST, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ours = pd.read_csv(trained_run / "eval/test/predictions.csv", keep_default_na=False)
    onnx = pd.read_csv(trained_run / "eval/test-onnx/predictions.csv", keep_default_na=False)
    cols = [f"prob_{c}" for c in CLASSES]
    np.testing.assert_allclose(onnx[cols].to_numpy(), ours[cols].to_numpy(), atol=1e-4)
    assert (onnx["decision"] == ours["decision"]).all()
    m = json.loads((trained_run / "eval/test-onnx/metrics.json").read_text())
    assert m["model"]["backend"] == "onnxruntime"

    bare = tmp_path / "bare"
    shutil.copytree(trained_run, bare, ignore=shutil.ignore_patterns("export", "eval"))
    proc = medclf("evaluate", f"model={bare}", "backend=onnx", cwd=tmp_path)
    assert proc.returncode == 2 and "no export/model.onnx; run 'medclf export" in proc.stderr
