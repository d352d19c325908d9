"""The Python API (``medclf.api``): the whole path from a script, typed results, the same
answers as the CLI, and an ``import medclf`` that stays light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medclf.api import Prediction, words
from medclf.errors import MedclfError
from tests.conftest import medclf as medclf_cli

CLASSES = ("cavity", "ground_glass", "nodule", "normal")


def test_keywords_become_the_words_the_cli_takes():
    given = {"a": True, "b": None, "c": [1, 2.5], "d": "two words", "e": Path("x/y"), "f": "it's"}
    assert words(given) == ["a=true", "b=null", "c=[1,2.5]", "d='two words'", "e=x/y", "f='it\\'s'"]
    assert words({"model": "resnet18", "g": ""}) == ["model=resnet18", "g=''"]


def test_importing_medclf_loads_no_heavy_library():
    probe = (
        "import sys, medclf\n"
        "heavy = ('torch', 'numpy', 'pandas', 'timm', 'lightning')\n"
        "named = all(hasattr(medclf, n) for n in medclf.__all__)\n"
        "print([m for m in heavy if m in sys.modules], named)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True"


def test_a_bad_key_raises_the_cli_message_before_anything_is_written(tmp_path: Path):
    import medclf

    with pytest.raises(MedclfError, match=r"train\.max_epoch"):
        medclf.train(data=tmp_path, **{"train.max_epoch": 3, "runs_root": str(tmp_path / "r")})
    assert not (tmp_path / "r").exists()


def test_a_prediction_reads_the_decision_not_only_the_top_class():
    record = {
        "prediction": {"class": "nodule", "class_index": 2, "confidence": 0.5},
        "probabilities": {"nodule": 0.5, "normal": 0.5},
        "decision": {"label": None, "prediction_set": ["nodule", "normal"], "refer": True},
    }
    p = Prediction.from_record("a.png", record)
    assert (p.label, p.top_class, p.prediction_set, p.refer) == (
        None,
        "nodule",
        ["nodule", "normal"],
        True,
    )
    assert Prediction.from_record("b.png", {"error": "unreadable"}).error == "unreadable"


@pytest.mark.slow
def test_train_evaluate_export_and_predict_from_python(tiny_synth: Path, tmp_path: Path):
    """The getting-started path as a script: typed metrics with intervals, gates, the
    exported file's path, and predictions equal to ``medclf predict --json``'s."""
    import medclf

    run = medclf.train(
        data=tiny_synth,
        model="custom_cnn",
        **{
            "data.image_size": 32,
            "train.max_epochs": 1,
            "train.progress_bar": False,
            "runs_root": str(tmp_path / "runs"),
        },
    )
    assert run.root.is_dir() and run.best_metrics
    report = run.evaluate(split="test")
    accuracy = report.metrics["accuracy"]
    assert accuracy.low <= accuracy.value <= accuracy.high
    assert report.metrics["sensitivity", "normal"].cls == "normal"
    frame = report.metrics.to_frame()
    assert {"section", "metric", "class", "value", "low", "high"} <= set(frame.columns)
    assert len(frame) == len(report.metrics) > 20
    assert isinstance(report.gates.passed, bool) and report.gates.gates
    assert report.html.is_file() and report.folder == run.root / "eval" / "test"
    onnx = run.export(format="onnx")
    assert onnx == run.root / "export" / "model.onnx" and onnx.is_file()
    images = sorted(str(p) for p in (tiny_synth / "normal").glob("*.png"))[:3]
    preds = medclf.load(onnx).predict(images)
    assert [p.path for p in preds] == images
    for p in preds:
        assert set(p.probabilities) == set(CLASSES)
        assert abs(sum(p.probabilities.values()) - 1) < 1e-5
        assert p.top_class in CLASSES and (p.label is None or p.label in CLASSES)
        assert set(p.prediction_set or []) <= set(CLASSES)
    cli = json.loads(medclf_cli("predict", f"model={onnx}", *images, "--json", check=True).stdout)
    for p, printed in zip(preds, cli["results"], strict=True):
        assert printed["probabilities"] == pytest.approx(p.probabilities, abs=1e-6)
        assert printed["decision"]["label"] == p.label
