"""The getting-started page (docs/getting-started.md) runs exactly as written, block after
block in one namespace, as a reader pasting it into a notebook would: train -> evaluate ->
export -> register -> load from the registry -> predict. Then the objects it made are checked
against what the page promises, and its predictions against ``medclf predict --json``'s."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pytest_examples import EvalExample, find_examples

from tests.conftest import medclf as medclf_cli

PAGE = Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"
CLASSES = ("cavity", "ground_glass", "nodule", "normal")

pytestmark = pytest.mark.slow


def test_the_getting_started_page_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, eval_example: EvalExample
):
    monkeypatch.chdir(tmp_path)
    # pytest-examples runs each block as __main__ and leaves it there; put the real one back
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    examples = list(find_examples(PAGE))
    assert [e.prefix for e in examples] == ["python"] * 4, "train, evaluate, export, register"
    names: dict = {}
    for example in examples:
        names = eval_example.run(example, module_globals=names)

    run, report, onnx, version, preds = (
        names[k] for k in ("run", "report", "onnx", "version", "preds")
    )
    accuracy = report.metrics["accuracy"]
    assert accuracy.low <= accuracy.value <= accuracy.high
    frame = names["table"]
    assert {"section", "metric", "class", "value", "low", "high"} <= set(frame.columns)
    assert len(frame) == len(report.metrics) > 20
    assert report.folder == run.root / "eval" / "test" and report.html.is_file()
    assert report.gates.passed and not report.gates.failed
    assert onnx == run.root / "export" / "model.int8.onnx" and onnx.is_file()
    assert (version.name, version.version, version.alias) == ("phantoms", 1, "production")
    assert version.gates_passed and version.uri == "models:/phantoms/1"

    data = names["data"]
    expected = sorted(str(p) for c in ("nodule", "normal") for p in (data / c).glob("*.png"))
    assert sorted(p.path for p in preds) == expected
    for p in preds:
        assert set(p.probabilities) == set(CLASSES) and p.error is None
        assert abs(sum(p.probabilities.values()) - 1) < 1e-5
        assert p.top_class in CLASSES and (p.label is None or p.label in CLASSES)
        assert set(p.prediction_set or []) <= set(CLASSES)
    right = sum(p.label == Path(p.path).parent.name for p in preds)
    assert right >= 0.9 * len(preds)  # the model that passed its gates, as deployed

    shown = [p.path for p in preds[:3]]
    cli = medclf_cli(
        "predict", "model=models:/phantoms@production", *shown, "--json", cwd=tmp_path, check=True
    )
    for p, printed in zip(preds, json.loads(cli.stdout)["results"], strict=False):
        assert printed["probabilities"] == pytest.approx(p.probabilities, abs=1e-6)
        assert printed["decision"]["label"] == p.label
