"""medclf init-pipeline: the files it writes, its refusals, and (heavy) the pipeline run by
DVC itself: repro, a second repro with nothing to do, a changed setting rerunning only what
depends on it, and push/pull through a local remote."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medclf.errors import MedclfError
from medclf.pipeline import RUN, pipeline, write_pipeline
from tests.conftest import medclf

WORDS = ["data.path=data", "data.image_size=32", "train.max_epochs=2", "logger=[]",
         "recipe=none", "train.progress_bar=false", "eval.n_bootstrap=50"]  # fmt: skip


def test_the_stages_read_their_settings_from_params_and_own_distinct_outputs():
    dvc_yaml, params = pipeline(WORDS)
    stages = dvc_yaml["stages"]
    assert list(stages) == ["check", "train", "evaluate", "export"]
    assert params == {
        "data": {"path": "data", "image_size": 32},
        "train": {"max_epochs": 2, "progress_bar": False},
        "logger": "[]",
        "recipe": "none",
        "eval": {"n_bootstrap": 50},
    }
    assert '"train.max_epochs=${train.max_epochs}"' in stages["train"]["cmd"]
    assert "eval." not in stages["train"]["cmd"]  # evaluation settings rerun evaluate only
    assert stages["evaluate"]["params"] == ["eval.n_bootstrap"]
    outs = [o if isinstance(o, str) else next(iter(o)) for s in stages.values() for o in s["outs"]]
    assert len(outs) == len(set(outs))
    for a in outs:  # DVC refuses an output inside another
        assert not any(b != a and b.startswith(a + "/") for b in outs)
    assert all(o.startswith(RUN) for o in outs[1:])


def test_bad_words_and_existing_files_are_refused_before_writing(tmp_path: Path):
    for words, message in (
        (["data.image_size=32"], "missing data.path"),
        (["data.path=d", "run_name=x"], "leave out run_name"),
        (["data.path=d", "train.lr=abc"], "train.lr=abc"),
        (['data.path=a"b'], "quotes"),
    ):
        with pytest.raises(MedclfError, match=message):
            write_pipeline(tmp_path, words)
        assert list(tmp_path.iterdir()) == []
    write_pipeline(tmp_path, ["data.path=d"])
    with pytest.raises(MedclfError, match="--force"):
        write_pipeline(tmp_path, ["data.path=e"])
    write_pipeline(tmp_path, ["data.path=e"], force=True)
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == {"data": {"path": "e"}}


def _dvc(work: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args],
        cwd=work, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, (
        f"dvc {' '.join(args)}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    )
    return proc.stdout


def _ran(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


@pytest.mark.heavy
def test_dvc_repro_twice_a_changed_setting_and_a_remote(tiny_synth: Path, tmp_path: Path):
    work = tmp_path / "project"
    work.mkdir()
    shutil.copytree(tiny_synth, work / "data")
    assert medclf("init-pipeline", *WORDS, cwd=work).returncode == 0
    _dvc(work, "init", "--no-scm", "-q")
    assert _ran(_dvc(work, "repro")) == ["check", "train", "evaluate", "export"]
    assert (work / RUN / "export" / "model.onnx").is_file()
    second = _dvc(work, "repro")
    assert _ran(second) == [] and "Data and pipelines are up to date" in second

    params = yaml.safe_load((work / "params.yaml").read_text())
    params["eval"]["n_bootstrap"] = 60  # an evaluation setting: training stays
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    assert _ran(_dvc(work, "repro")) == ["evaluate", "export"]
    assert "accuracy" in _dvc(work, "metrics", "show")

    _dvc(work, "remote", "add", "-d", "local", str(tmp_path / "remote"))
    _dvc(work, "push")
    shutil.rmtree(work / ".dvc" / "cache")
    shutil.rmtree(work / RUN / "weights")
    _dvc(work, "pull")
    assert (work / RUN / "weights" / "best.ckpt").is_file()
    assert _ran(_dvc(work, "repro")) == []


def test_a_fixed_run_name_takes_a_folder_without_training_and_refuses_a_trained_one(
    tmp_path: Path,
):
    from medclf.rundir import RunDir

    run = RunDir.create(tmp_path, "pipeline", "resnet18", name="model")
    assert run.root == tmp_path / "pipeline" / "model" and run.root.is_dir()
    (run.root / "calibration.json").write_text("{}")  # a later stage's output, left by dvc
    assert RunDir.create(tmp_path, "pipeline", "resnet18", name="model").root == run.root
    run.best_ckpt.parent.mkdir()
    run.best_ckpt.write_bytes(b"weights")
    with pytest.raises(MedclfError, match="already holds a trained run"):
        RunDir.create(tmp_path, "pipeline", "resnet18", name="model")
