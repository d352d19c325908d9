"""The bad-input corpus, across data check, train, evaluate, predict, export and serve.

Each case is what an attacker or a clumsy user hands medclf: a checkpoint that runs a command
when unpickled, decompression bombs (PNG and DICOM), a silently corrupted ONNX file, a
dataset whose excluded file would fake leakage, values that make no sense, and commands
killed with SIGKILL mid-write. Every input is generated here (``tests.badinput``). Asserted
for each: the exit code, exactly one ``error:`` line (or the warning), no traceback, and no
file or folder left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.badinput import bomb_dicom, bomb_png, invert_middle_bytes, planted_checkpoint
from tests.conftest import medclf, printed_run, served

pytestmark = pytest.mark.slow
CLASSES = ("cavity", "ground_glass", "nodule", "normal")


def _tree(root: Path) -> set[str]:
    """Every file and folder under ``root`` (relative), to prove nothing was added."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _one_error(proc: subprocess.CompletedProcess, needle: str) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert needle in errors[0], errors[0]
    return errors[0]


def _copy_run(trained_run: Path, dest: Path) -> Path:
    """A private copy of the session's trained run (cases below damage it)."""
    return Path(shutil.copytree(trained_run, dest / trained_run.name))


def _test_image(run: Path) -> str:
    split = pd.read_csv(run / "split.csv", dtype=str, keep_default_na=False)
    return split.loc[split["split"] == "test", "path"].iloc[0]


# --- 1 and 4: code execution from a checkpoint -------------------------------------------------


def test_planted_last_ckpt_does_not_run_on_resume(trained_run: Path, tmp_path: Path):
    run = _copy_run(trained_run, tmp_path)
    (run / "train_summary.json").unlink()  # an interrupted run: resume will open last.ckpt
    marker = tmp_path / "owned"
    planted_checkpoint(run / "weights" / "last.ckpt", marker)
    before = _tree(run)
    proc = medclf("train", f"resume={run}", cwd=tmp_path)
    line = _one_error(proc, "refused to load")
    assert "last.ckpt" in line and "posix.system" in line
    assert not marker.exists(), "the checkpoint ran a command"
    assert _tree(run) == before


@pytest.mark.parametrize("command", ["evaluate", "export", "predict", "serve"])
def test_planted_best_ckpt_does_not_run_anywhere(trained_run: Path, tmp_path: Path, command: str):
    run = _copy_run(trained_run, tmp_path)
    # without the recorded digest the loader itself is what must refuse the file
    (run / "train_summary.json").unlink()
    marker = tmp_path / "owned"
    planted_checkpoint(run / "weights" / "best.ckpt", marker)
    before = _tree(run)
    args = {
        "evaluate": ["evaluate", f"model={run}"],
        "export": ["export", f"model={run}"],
        "predict": ["predict", f"model={run}", _test_image(run)],
        "serve": ["serve", f"model={run}", "port=1"],
    }[command]
    proc = medclf(*args, cwd=tmp_path, timeout=120)
    _one_error(proc, "best.ckpt: checkpoint: refused to load")
    assert not marker.exists(), "the checkpoint ran a command"
    assert _tree(run) == before


def test_best_ckpt_that_differs_from_its_recorded_digest_is_refused(
    trained_run: Path, tmp_path: Path
):
    run = _copy_run(trained_run, tmp_path)
    ckpt = run / "weights" / "best.ckpt"
    invert_middle_bytes(ckpt, 64)
    proc = medclf("predict", f"model={run}", _test_image(run), cwd=tmp_path)
    _one_error(proc, "does not match the sha256 recorded when training finished")


# --- 3: a corrupted ONNX file ------------------------------------------------------------------


def test_corrupted_onnx_is_refused_by_predict_evaluate_and_serve(trained_run: Path, tmp_path: Path):
    run = _copy_run(trained_run, tmp_path)
    model = run / "export" / "model.onnx"
    image = _test_image(run)
    invert_middle_bytes(model, 2000)
    before = _tree(run)
    for args in (
        ["predict", f"model={model}", image],
        ["evaluate", f"model={run}", "backend=onnx"],
        ["serve", f"model={model}", "port=1"],
    ):
        _one_error(medclf(*args, cwd=tmp_path, timeout=120), "model.onnx")
    # the file digest recorded in metadata.json is what names the damage
    line = _one_error(medclf("predict", f"model={model}", image, cwd=tmp_path), "sha256")
    assert "changed or damaged" in line
    # without metadata.json, the graph digest embedded in the file still refuses it
    (run / "export" / "metadata.json").unlink()
    line = _one_error(medclf("predict", f"model={model}", image, cwd=tmp_path), "model.onnx")
    assert "do not match the digest recorded at export" in line
    assert _tree(run) == before - {"export/metadata.json"}


def test_intact_onnx_predicts_with_its_verified_version(trained_run: Path):
    model = trained_run / "export" / "model.onnx"
    meta = json.loads((trained_run / "export" / "metadata.json").read_text())
    assert meta["file"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    out = medclf("predict", f"model={model}", _test_image(trained_run), "--json", check=True)
    assert json.loads(out.stdout)["model"]["version"] == meta["model"]["version"]


# --- 2, 5, 6, 7: one dataset holding the bad files, through data check and train ---------------


def _dicom_slice(path: Path, patient: str, value: int) -> Path:
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = patient, "CT"
    ds.Rows = ds.Columns = 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    rng = np.random.default_rng(value)
    pixels = (rng.integers(0, 400, (32, 32)) + value).astype(np.uint16)
    pixels[8 : 8 + value % 16, 4:28] += 800  # content that differs per slice
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def _hostile_dataset(root: Path) -> dict[str, Path]:
    """Two classes of real DICOM slices (6 patients x 2 slices each), plus: a 1-bit PNG bomb,
    an RLE DICOM bomb, a corrupt slice of a patient whose other slices are fine, and a 1x1
    image. Patient MRN12345 is one of them."""
    for c, cls in enumerate(("plain", "contrast")):
        for p in range(6):
            patient = "MRN12345" if (c, p) == (0, 0) else f"MRN{c}{p:04d}"
            for s in range(2):
                _dicom_slice(root / cls / f"{patient}_{s}.dcm", patient, 100 * c + 17 * p + 5 * s)
    bad = {
        "png_bomb": bomb_png(root / "plain" / "bomb.png", 30000, 30000),
        "dicom_bomb": bomb_dicom(root / "contrast" / "bomb.dcm", 12000, 12000, "MRN99999"),
        "corrupt_slice": root / "contrast" / "MRN10001_9.dcm",
        "tiny": root / "plain" / "tiny.png",
    }
    good = (root / "contrast" / "MRN10001_0.dcm").read_bytes()
    bad["corrupt_slice"].write_bytes(good[:-1000])  # header intact, pixel data truncated
    Image.fromarray(np.full((1, 1), 128, np.uint8)).save(bad["tiny"])
    return bad


@pytest.mark.heavy  # ~1 min (a data check and a training on hostile files); make test-heavy, CI
def test_hostile_dataset_through_data_check_and_train(tmp_path: Path):
    data = tmp_path / "data"
    bad = _hostile_dataset(data)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MEDCLF_PSEUDONYM_KEY"}
    check = medclf("data", "check", str(data), "--strict", cwd=work, env=env, timeout=300)
    # bombs and the corrupt slice are excluded and listed; the excluded slice of MRN10001 fakes
    # no leakage, so --strict passes
    assert check.returncode == 0, check.stderr[-3000:]
    assert "Traceback" not in check.stderr
    assert "3 unreadable file(s) excluded" in check.stderr
    report = json.loads(next(work.rglob("check.json")).read_text())
    reasons = {Path(r["path"]).name: r["reason"] for r in report["unreadable"]}
    assert "image too large to decode (30000x30000" in reasons["bomb.png"]
    assert "image too large to decode (12000x12000" in reasons["bomb.dcm"]
    assert "MRN10001_9.dcm" in reasons
    assert report["patients_in_several_splits_count"] == 0 and report["passed"]
    assert report["tiny_images"]["count"] == 1
    assert "TINY images smaller than 16 px: 1" in check.stdout + check.stderr
    # pseudonyms are keyed: a key file made once with mode 0600, and no plain hash of an id
    key_file = work / "runs" / "pseudonym.key"
    assert key_file.is_file() and (key_file.stat().st_mode & 0o777) == 0o600
    text = next(work.rglob("check.json")).read_text()
    unkeyed = "p" + hashlib.sha256(b"MRN12345").hexdigest()[:15]
    assert "MRN12345" not in text and unkeyed not in text

    train = medclf(
        "train",
        f"data.path={data}",
        "data.image_size=32",
        "data.near_duplicate_distance=-1",
        "data.strict=true",
        "train.max_epochs=1",
        "train.progress_bar=false",
        "logger=[mlflow]",
        cwd=work,
        env=env,
        timeout=300,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert "3 unreadable file(s) excluded" in train.stderr and "TINY" in train.stderr
    run = printed_run(train, work)
    split = pd.read_csv(run / "split.csv", dtype=str, keep_default_na=False)
    assert not split["path"].str.endswith(("bomb.png", "bomb.dcm", "MRN10001_9.dcm")).any()
    assert (split.groupby("patient_id")["split"].nunique() == 1).all()
    assert unkeyed not in (run / "split.csv").read_text()
    # MLflow's artifacts stay under runs/, not in the folder the command ran in
    assert not (work / "mlruns").exists() and (work / "runs" / "mlartifacts").is_dir()

    # predict: the bomb is one error line naming it; the 1x1 image predicts with a warning
    proc = medclf("predict", f"model={run}", str(bad["png_bomb"]), cwd=work)
    _one_error(proc, "bomb.png: image too large to decode")
    proc = medclf("predict", f"model={run}", str(bad["tiny"]), cwd=work, check=True)
    assert "warning: " in proc.stderr and "only 1x1 px" in proc.stderr
    # evaluate on an external copy that still holds a bomb: one line, nothing written
    before = _tree(run)
    proc = medclf("evaluate", f"model={run}", f"data.path={data}", cwd=work)
    _one_error(proc, "could not be read")
    assert _tree(run) == before


def test_a_class_too_small_for_the_splits_is_an_error(tiny_synth: Path, tmp_path: Path):
    data = tmp_path / "data"
    for cls in ("a", "b"):
        for i in range(8):
            _dicom_slice(data / cls / f"{cls}{i}.dcm", f"{cls}{i}", 10 * i + (cls == "b") * 300)
    _dicom_slice(data / "rare" / "only.dcm", "r0", 777)
    for command in (["data", "check", str(data)], ["train", f"data.path={data}"]):
        proc = medclf(*command, cwd=tmp_path)
        _one_error(proc, "class rare: 1 image(s), but the train/val/test split(s)")
    assert not (tmp_path / "runs" / "default").exists()


# --- 2: the server ------------------------------------------------------------------------------


def test_server_answers_413_for_bombs_and_keeps_serving(trained_run: Path, tmp_path: Path):
    png = bomb_png(tmp_path / "bomb.png", 30000, 30000)
    dcm = bomb_dicom(tmp_path / "bomb.dcm", 12000, 12000)
    with served(trained_run / "export" / "model.onnx") as url:
        for path in (png, dcm):
            r = httpx.post(f"{url}/predict", files={"file": (path.name, path.read_bytes())})
            assert r.status_code == 413 and "image too large" in r.json()["detail"]
        with open(_test_image(trained_run), "rb") as fh:
            r = httpx.post(f"{url}/predict", files={"file": ("scan.png", fh)})
        assert r.status_code == 200 and r.json()["prediction"]["class"] in CLASSES


# --- 7: values that make no sense are refused when composed -------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "data.path={data}", "data.split_ratios=[0.5,0.6,0.1]"], "data.split_ratios"),
        (["train", "data.path={data}", "data.batch_size=0"], "data.batch_size=0 is not valid"),
        (["evaluate", "model={run}", "eval.n_bootstrap=abc"], "eval.n_bootstrap=abc is not valid"),
        (["evaluate", "model={run}", "eval.ci_level=2"], "eval.ci_level=2 is not valid"),
        (["evaluate", "model={run}", "eval.calibration_bins=0"], "eval.calibration_bins=0"),
        (["evaluate", "model={run}", "eval.ci_method=foo"], "one of bca, percentile, basic"),
    ],
    ids=["ratios", "batch-size", "n-bootstrap", "ci-level", "bins", "ci-method"],
)
def test_nonsense_values_fail_before_any_work(
    trained_run: Path, tiny_synth: Path, tmp_path: Path, args, needle
):
    before = _tree(trained_run)
    proc = medclf(*(a.format(data=tiny_synth, run=trained_run) for a in args), cwd=tmp_path)
    _one_error(proc, needle)
    assert list(tmp_path.iterdir()) == []  # no runs/, no cache, no half-written folder
    assert _tree(trained_run) == before


# --- 8: commands killed mid-write leave nothing that looks complete, and no debris -------------


def _kill_when(cmd: list[str], cwd: Path, appeared, timeout: float = 120) -> None:
    """Start ``cmd`` and SIGKILL it as soon as ``appeared()`` is true."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "medclf", *cmd],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    try:
        while not appeared():
            assert proc.poll() is None, "the command finished before it could be killed"
            assert time.monotonic() < deadline, "the temporary never appeared"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_killed_export_and_evaluation_leave_no_debris(trained_run: Path, tmp_path: Path):
    run = _copy_run(trained_run, tmp_path)
    export, evals = run / "export", run / "eval"
    onnx_before = (export / "model.onnx").read_bytes()
    _kill_when(["export", f"model={run}"], tmp_path, lambda: any(export.glob(".model.onnx.*.tmp")))
    assert (export / "model.onnx").read_bytes() == onnx_before
    _kill_when(["evaluate", f"model={run}"], tmp_path, lambda: any(evals.glob(".test.*.tmp")))
    # the previous evaluation is still complete; the half-built one is hidden and temporary
    assert (evals / "test" / "report.html").is_file()
    assert (evals / "test" / "metrics.json").is_file()
    leftovers = sorted(p.name for p in run.rglob(".*.tmp"))
    assert leftovers, "the kills should have left temporaries to sweep"
    # the next command on the run sweeps what the killed ones left
    medclf("predict", f"model={run}", _test_image(run), cwd=tmp_path, check=True)
    assert sorted(p.name for p in run.rglob(".*.tmp")) == []
    assert _tree(run) == _tree(trained_run)


# --- 9: paths that cannot be read or written are one error line, not a traceback (#31) -------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "data.path={data}", "data.image_size=999999999"], "<= 4096"),
        (["train", "data.path=/dev/null"], "data.path=/dev/null: not a folder or a regular file"),
        (["train", "data.path={data}", "runs_root=/proc/x"], "/proc/x"),
        (["train", "data.path={data}", "data.split_file=/etc/passwd"], "not a medclf split.csv"),
        (["tune", "data.path={data}", "trials=1", "storage=/proc/nope/x.log"], "/proc/nope"),
    ],
    ids=["image-size", "dev-null", "runs-root-in-proc", "split-file-passwd", "tune-storage"],
)
def test_unusable_paths_and_sizes_are_one_error_line(
    tiny_synth: Path, tmp_path: Path, args, needle
):
    proc = medclf(*(a.format(data=tiny_synth) for a in args), cwd=tmp_path)
    _one_error(proc, needle)
    assert list(tmp_path.iterdir()) == []  # nothing half-written
