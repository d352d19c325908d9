"""INT8 export: static quantization calibrated on training images, measured against fp32 on the
test split, refused when it costs more than export.int8_max_drop; and the release record every
export carries."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from omegaconf import OmegaConf

from medclf.data.transform import model_input
from medclf.errors import MedclfError
from medclf.export import int8 as int8_export
from medclf.export.onnx import export_onnx
from medclf.inference.predictor import load_predictor
from tests.conftest import medclf

pytestmark = pytest.mark.slow


def _copy(trained_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export"))
    return run


def _settings(**kw) -> OmegaConf:
    return OmegaConf.create({"int8_max_drop": 0.01, "int8_calibration_images": 64, **kw})


def test_int8_file_is_quantized_measured_and_loads_like_the_fp32_file(
    trained_run: Path, tmp_path: Path
):
    run = _copy(trained_run, tmp_path)
    proc = medclf("export", f"model={run}", "quantize=int8", "export.int8_max_drop=0.2")
    assert proc.returncode == 0, proc.stderr
    assert "model.int8.onnx (INT8 on" in proc.stdout
    export = run / "export"
    q = json.loads((export / "parity.json").read_text())["int8"]
    assert q["passed"] and q["images"] == 7 and q["calibration_images"] > 0
    assert q["top1_agreement"] >= 0.8 and abs(q["accuracy_delta"]) <= 0.2
    assert 0.15 < q["size_ratio"] < 0.6  # int8 weights: about a quarter of the fp32 file
    # the graph really is quantized: integer weights and QDQ pairs around the convolutions
    graph = onnx.load(export / "model.int8.onnx").graph
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= {n.op_type for n in graph.node}
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)
    meta = json.loads((export / "metadata.json").read_text())
    assert meta["int8"]["file"]["name"] == "model.int8.onnx"
    assert meta["int8"]["quantization"]["method"] == "static"
    # it loads through the same verified path (digest and recorded file sha256) and predicts
    fp32, int8 = load_predictor(export / "model.onnx"), load_predictor(export / "model.int8.onnx")
    assert int8.class_names == fp32.class_names and int8.version == fp32.version
    test_images = pd.read_csv(run / "split.csv").query("split == 'test'")["path"]
    x = np.stack([model_input(fp32.prep, p) for p in test_images])
    assert np.abs(int8.predict_batch(x) - fp32.predict_batch(x)).max() < 0.5
    # a changed byte is refused like for the fp32 file
    data = bytearray((export / "model.int8.onnx").read_bytes())
    data[-100] ^= 0xFF
    (export / "model.int8.onnx").write_bytes(bytes(data))
    with pytest.raises(MedclfError, match=r"model\.int8\.onnx"):
        load_predictor(export / "model.int8.onnx")


def test_an_int8_file_that_costs_too_much_is_not_written(trained_run: Path, tmp_path: Path):
    run = _copy(trained_run, tmp_path)
    # a negative allowance no file can meet: the path taken when quantization costs accuracy
    with pytest.raises(MedclfError, match=r"INT8 export refused: test .* drops by"):
        export_onnx(run, quantize="int8", settings=_settings(int8_max_drop=-0.5))
    export = run / "export"
    assert sorted(p.name for p in export.iterdir()) == [
        "metadata.json",
        "model.onnx",
        "parity.json",
    ]
    q = json.loads((export / "parity.json").read_text())["int8"]
    assert q["passed"] is False and q["max_drop"] == -0.5
    assert "int8" not in json.loads((export / "metadata.json").read_text())


@pytest.mark.heavy  # an fp32 export first; CI runs it with make test-heavy
def test_a_quantizer_failure_is_one_line_and_leaves_the_fp32_export(
    trained_run: Path, tmp_path: Path, monkeypatch
):
    import onnxruntime.quantization as ortq

    def broken(*args, **kwargs):
        raise NotImplementedError("op Foo is not supported\nlong internal detail")

    monkeypatch.setattr(ortq, "quantize_static", broken)
    run = _copy(trained_run, tmp_path)
    with pytest.raises(MedclfError) as info:
        export_onnx(run, quantize="int8", settings=_settings())
    assert "INT8 quantization of" in str(info.value) and "\n" not in str(info.value)
    assert "NotImplementedError: op Foo is not supported" in str(info.value)
    assert sorted(p.name for p in (run / "export").iterdir()) == [
        "metadata.json",
        "model.onnx",
        "parity.json",
    ]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["quantize=int4"], "quantize=int4 is not supported; use quantize=int8"),
        (["export.int8_max_drop=2"], "export.int8_max_drop=2 is not valid: expected a number"),
        (["eval.tta=flip"], "unknown argument 'eval.tta=flip' for 'medclf export'"),
    ],
)
def test_bad_export_words_are_refused_before_any_file(trained_run: Path, tmp_path, words, message):
    run = _copy(trained_run, tmp_path)
    proc = medclf("export", f"model={run}", *words)
    assert proc.returncode == 2
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: ") and message in line
    assert not (run / "export").exists()


def test_every_export_carries_its_release_record(trained_run: Path):
    meta = json.loads((trained_run / "export" / "metadata.json").read_text())
    release = meta["release"]
    counts = release["training_data"]["class_counts"]
    assert sum(counts["test"].values()) == 7 and set(counts) == {"train", "val", "test"}
    assert len(release["training_data"]["split_csv_sha256"]) == 64
    evaluation = release["evaluation"]  # the fixture evaluated the run before exporting
    assert evaluation["split"] == "test" and set(evaluation["gates"]) == {"passed", "failed"}
    acc = evaluation["metrics"]["accuracy"]
    assert acc["ci_low"] <= acc["value"] <= acc["ci_high"]
    assert release["versions"]["onnxruntime"] and release["exported_at"].endswith("+00:00")
    embedded = {
        p.key: p.value for p in onnx.load(trained_run / "export" / "model.onnx").metadata_props
    }
    assert json.loads(embedded["medclf.release"]) == release


@pytest.mark.heavy  # a whole fp32 + INT8 export; CI runs it with make test-heavy
def test_calibration_images_come_from_the_training_split_only(
    trained_run: Path, tmp_path: Path, monkeypatch
):
    seen: list[str] = []
    real = int8_export.quantize

    def spy(fp32, out, prep, paths, name):
        seen.extend(paths)
        return real(fp32, out, prep, paths, name)

    monkeypatch.setattr(int8_export, "quantize", spy)
    run = _copy(trained_run, tmp_path)
    export_onnx(run, quantize="int8", settings=_settings(int8_max_drop=0.99))
    table = pd.read_csv(run / "split.csv")
    train = set(table.loc[table["split"] == "train", "path"])
    assert seen and set(seen) <= train and len(seen) == min(64, len(train))
