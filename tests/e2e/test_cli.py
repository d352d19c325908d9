"""The CLI as a user runs it: subprocesses, real files, exit codes and messages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import (
    SHARED_DATASETS,
    enumerated_keys,
    medclf,
    modules_after_import,
    printed_run,
)

pytestmark = pytest.mark.slow


def test_help_does_not_import_heavy_libraries():
    # `medclf --help` must stay instant: torch, lightning, hydra load inside commands only.
    heavy = {"torch", "lightning", "hydra", "onnxruntime", "fastapi", "matplotlib"}
    assert heavy & set(modules_after_import("medclf.cli")) == set()
    helped = medclf("--help", check=True).stdout
    for command in ("synth", "train", "evaluate", "export", "predict", "serve", "demo", "config"):
        assert command in helped


def test_argument_help_shows_the_optional_words_in_brackets():
    """Rich markup would read "[split=test]" as a style tag and drop it from the help."""
    for command, word in [("tune", "[study=NAME]"), ("monitor", "[since=7d]"),
                          ("evaluate", "[split=test]"), ("serve", "[port=8000]")]:  # fmt: skip
        assert word in medclf(command, "--help", check=True).stdout, command


def test_config_show_applies_overrides():
    out = medclf("config", "show", "model=resnet18", "train.lr=0.5", check=True).stdout
    assert "name: resnet18" in out and "lr: 0.5" in out


def test_config_show_prints_a_composed_experiment_preset():
    out = medclf("config", "show", "experiment=lung_xray", check=True).stdout
    assert "name: convnextv2_tiny" in out and "run_group: lung_xray" in out
    assert "name: finetune" in out and "label_smoothing: 0.1" in out  # from train=two_stage


def test_train_evaluate_export_outputs(trained_run: Path):
    run = trained_run
    for rel in (
        "config.yaml",
        "split.csv",
        "preprocessing.json",
        "metrics.csv",
        "weights/best.ckpt",
        "weights/last.ckpt",
        "eval/test/metrics.json",
        "eval/test/predictions.csv",
        "eval/test/confusion_matrix.png",
        "eval/test/report.html",
        "eval/test/gates.json",
        "calibration.json",
        "model_card.md",
        "export/model.onnx",
        "export/metadata.json",
        "export/parity.json",
    ):
        assert (run / rel).is_file(), rel
    assert list((run / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    epochs = pd.read_csv(run / "metrics.csv")
    assert len(epochs) == 3
    assert {"val/loss", "val/acc", "val/auc_macro", "lr/head", "perf/train_images_per_s"} <= set(
        epochs
    )
    assert {"sys/cpu_percent", "sys/ram_percent", "sys/process_rss_gb"} <= set(epochs)
    # the training clock stops when validation starts: training time < whole epoch time
    assert (epochs["perf/train_seconds"] < epochs["perf/epoch_seconds"]).all()
    assert (run / "training_curves.png").stat().st_size > 10_000
    split = pd.read_csv(run / "split.csv", dtype=str, keep_default_na=False)
    assert (split.groupby("patient_id")["split"].nunique() == 1).all()
    metrics = json.loads((run / "eval/test/metrics.json").read_text())
    assert metrics["evaluated"]["images"] == int((split["split"] == "test").sum())
    assert set(metrics["per_class"]) == {"cavity", "ground_glass", "nodule", "normal"}
    parity = json.loads((run / "export/parity.json").read_text())
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4 and parity["images"] > 0
    meta = json.loads((run / "export/metadata.json").read_text())
    assert meta["preprocessing"]["class_names"] == ["cavity", "ground_glass", "nodule", "normal"]
    assert meta["inputs"][0]["shape"] == ["batch", 1, 32, 32]


def test_onnx_carries_preprocessing_and_takes_any_batch(trained_run: Path):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(trained_run / "export/model.onnx"))
    meta = json.loads(sess.get_modelmeta().custom_metadata_map["medclf.preprocessing"])
    assert meta["image_size"] == 32
    for batch in (1, 7):
        probs = sess.run(["probabilities"], {"input": np.zeros((batch, 1, 32, 32), np.float32)})[0]
        assert probs.shape == (batch, 4)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_predict_table_and_json(trained_run: Path, tiny_synth: Path):
    folder = tiny_synth / "nodule"
    table = medclf("predict", f"model={trained_run}", str(folder), check=True).stdout
    assert "confidence" in table and "p(nodule)" in table
    out = json.loads(
        medclf(
            "predict",
            f"model={trained_run / 'export/model.onnx'}",
            str(folder),
            "--json",
            check=True,
        ).stdout
    )
    assert len(out["results"]) == len(list(folder.glob("*.png")))
    first = out["results"][0]
    assert set(first["probabilities"]) == {"cavity", "ground_glass", "nodule", "normal"}
    assert first["prediction"]["class"] == max(
        first["probabilities"], key=first["probabilities"].get
    )


def _image(path: Path, value: int = 90) -> Path:
    """A 16x16 image; distinct ``value``s give distinct, non-near-duplicate images."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(path)
    return path


def _touch(path: Path) -> Path:
    path.touch()
    return path


def _two_class_tree(root: Path) -> Path:
    for k, cls in enumerate(("a", "b")):
        for i in range(8):  # enough for a 70/15/15 split with every class in every split
            _image(root / cls / f"{i}.png", value=10 * i + k)  # distinct contents
    return root


def _unreadable_class(root: Path, content: bytes) -> Path:
    for i in range(4):
        _image(root / "a" / f"{i}.png", value=10 * i)
        (root / "b").mkdir(exist_ok=True)
        (root / "b" / f"bad{i}.png").write_bytes(content)
    return root


@pytest.mark.parametrize(
    ("make", "args", "needle"),
    [
        (lambda t: None, ["train", "data.path={t}/nope"], "nope: no such file or folder"),
        (
            lambda t: t.joinpath("empty").mkdir(),
            ["train", "data.path={t}/empty"],
            "folder is empty",
        ),
        (
            lambda t: _image(t / "one" / "a" / "1.png"),
            ["train", "data.path={t}/one"],
            "only one class",
        ),
        (
            lambda t: (_image(t / "d" / "a" / "1.png"), (t / "d" / "b").mkdir()),
            ["train", "data.path={t}/d"],
            "b: class folder has no images",
        ),
        (
            lambda t: _unreadable_class(t / "z", b""),
            ["train", "data.path={t}/z"],
            "class b: every image is unreadable, e.g. ",
        ),
        (
            lambda t: _unreadable_class(t / "c", b"garbage"),
            ["train", "data.path={t}/c"],
            "png: not a readable image",
        ),
        (
            lambda t: _two_class_tree(t / "m"),
            ["train", "data.path={t}/m", "model=resnet_18"],
            "unknown model.name 'resnet_18'",
        ),
        (
            lambda t: _two_class_tree(t / "s"),
            ["train", "data.path={t}/s", "train.sampler=balanced"],
            "train.sampler=balanced is not valid: expected one of weighted",
        ),
        (
            lambda t: _two_class_tree(t / "p"),
            ["train", "data.path={t}/p", "train.profiler=fast"],
            "train.profiler=fast is not valid",
        ),
        (
            lambda t: _two_class_tree(t / "g"),
            ["train", "data.path={t}/g", "train.precision=8"],
            "train.precision=8 is not valid",
        ),
        (lambda t: None, ["train", "train.epochz=3"], "unknown config key 'train.epochz'"),
        (
            lambda t: None,
            ["train", "experiment=lung-xray"],
            "experiment=lung-xray is not a shipped preset: expected one of brain_mri",
        ),
        (lambda t: None, ["evaluate", "run={t}/norun"], "no such run folder"),
        (lambda t: None, ["evaluate", "model={t}/a", "run={t}/b"], "give the model once"),
        (lambda t: None, ["evaluate", "run={t}", "model=onnx"], "model=onnx is now backend=onnx"),
        (lambda t: None, ["evaluate", "model={t}", "backend=trt"], "backend=trt is not valid"),
        (lambda t: None, ["predict", "model={t}/x.onnx", "{t}"], "ONNX file not found"),
        (
            lambda t: os.truncate(_touch(t / "big.onnx"), 2 * 2**30),  # sparse: no disk used
            ["predict", "model={t}/big.onnx", "{t}"],
            "2.0 GiB is larger than a single-file ONNX model can be",
        ),
        (lambda t: None, ["compare", "models:/m/1", "foo=bar"], "unknown argument 'foo=bar'"),
        (
            lambda t: None,  # checked before the (missing) model is looked at
            ["serve", "model={t}/x.onnx", "serve.max_batch=0"],
            "serve.max_batch=0 is not valid: expected an integer >= 1",
        ),
        (
            lambda t: None,
            ["export", "model={t}", "format=tflite"],
            "format=tflite is not supported",
        ),
    ],
    ids=[
        "missing-path",
        "empty-folder",
        "one-class",
        "empty-class-folder",
        "zero-byte",
        "corrupt",
        "unknown-model",
        "bad-sampler",
        "bad-profiler",
        "bad-precision",
        "unknown-key",
        "unknown-experiment",
        "no-run",
        "model-twice",
        "old-model-onnx",
        "bad-backend",
        "no-onnx",
        "huge-onnx",
        "compare-bad-word",
        "serve-bad-setting",
        "bad-format",
    ],
)
def test_bad_input_is_one_clear_line_exit_2(tmp_path: Path, make, args, needle):
    make(tmp_path)
    proc = medclf(*(a.format(t=tmp_path) for a in args), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert needle in lines[0]
    assert not (tmp_path / "runs").exists()  # bad input never leaves a half-made run folder


ENUMERATED = {**enumerated_keys("custom_cnn"), **enumerated_keys("resnet18")}
# keys that exist only in some config groups: compose them with one that has the key
CONTEXT = {
    "model.head": ["model=resnet18"],
    "model.pretrained": ["model=resnet18"],
    "model.stem": ["model=resnet18"],
}


@pytest.mark.parametrize("key", sorted(ENUMERATED))
def test_every_enumerated_key_is_refused_at_compose_naming_the_allowed_values(
    tmp_path: Path, key: str
):
    options = ENUMERATED[key]
    typo = options[-1] + "x"  # one letter off an allowed value
    data = _two_class_tree(tmp_path / "d")
    args = ["train", f"data.path={data}", *CONTEXT.get(key, []), f"{key}={typo}"]
    proc = medclf(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith(f"error: {key}={typo} is not valid: expected one of "), line
    assert all(o in line for o in options) and line.endswith(f"Did you mean {options[-1]}?")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # nothing written


def test_debug_flag_shows_the_traceback(tmp_path: Path):
    proc = medclf("--debug", "train", f"data.path={tmp_path}/nope")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


@pytest.mark.heavy  # ~55 s: a DICOM training and prediction; CI runs it (make test-heavy)
def test_dicom_train_then_predict_uses_the_stored_window(tmp_path: Path):
    dicom_dir = SHARED_DATASETS / "ct_contrast_dicom" / "dicom_dir"
    proc = medclf(
        "train",
        f"data.path={dicom_dir}",
        r"data.label_pattern=CONTRAST_(\d)",
        "data.class_map={0:plain,1:contrast}",
        "data.window=mediastinum",
        "data.image_size=32",
        "train.max_epochs=1",
        "train.progress_bar=false",
        "runs_root=runs",
        cwd=tmp_path,
        check=True,
    )
    run = printed_run(proc, tmp_path)
    prep = json.loads((run / "preprocessing.json").read_text())
    assert prep["window"] == "mediastinum" and prep["class_names"] == ["contrast", "plain"]
    split = pd.read_csv(run / "split.csv", dtype=str)
    assert split["patient_id"].nunique() == 54
    assert (split.groupby("patient_id")["split"].nunique() == 1).all()
    slice_ = sorted(dicom_dir.glob("*.dcm"))[0]
    out = json.loads(medclf("predict", f"model={run}", str(slice_), "--json", check=True).stdout)
    result = out["results"][0]
    assert set(result["probabilities"]) == {"contrast", "plain"}
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-5
