"""medclf train -m: Hydra's sweep syntax, every combination checked before training, one
evaluated run per combination and one comparison of them all."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from medclf.errors import MedclfError
from medclf.multirun import MAX_RUNS, combinations, swept
from tests.conftest import medclf

TINY = ["recipe=none", "data.image_size=32", "train.max_epochs=2", "train.progress_bar=false",
        "model.pretrained=false"]  # fmt: skip


def test_sweeps_expand_into_the_product_in_order():
    runs = combinations(["model=custom_cnn,resnet18", "train.lr=0.1", "data.image_size=32,64"])
    assert runs == [
        ["model=custom_cnn", "train.lr=0.1", "data.image_size=32"],
        ["model=custom_cnn", "train.lr=0.1", "data.image_size=64"],
        ["model=resnet18", "train.lr=0.1", "data.image_size=32"],
        ["model=resnet18", "train.lr=0.1", "data.image_size=64"],
    ]
    assert swept(runs)[1] == ["model=custom_cnn", "data.image_size=64"]
    assert combinations(["model.hidden_dims=[8],[8,16]"]) == [
        ["model.hidden_dims=[8]"], ["model.hidden_dims=[8,16]"]
    ]  # fmt: skip
    assert len(combinations(["seed=range(0,5)"])) == 5
    with pytest.raises(MedclfError, match=f"more than {MAX_RUNS}"):
        combinations(["seed=range(0,9)", "train.lr=1,2,3,4,5,6,7,8"])


def test_a_bad_value_in_any_combination_is_refused_before_training(tmp_path: Path):
    proc = medclf("train", "-m", "data.path=missing", "train.optimizer=adamw,nope",
                  f"runs_root={tmp_path / 'runs'}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.startswith("error: train.optimizer"), proc.stderr
    resumed = medclf("train", "-m", "resume=x", cwd=tmp_path)
    assert resumed.returncode == 2 and "does not combine with -m" in resumed.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.heavy  # ~50-75 s: three trainings and evaluations; CI runs it
def test_three_models_train_evaluate_and_end_in_one_comparison(tiny_synth: Path, tmp_path):
    """... and log to MLflow as three children of one parent run (one tree in the UI)."""
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = medclf("train", "-m", f"data.path={tiny_synth}", *TINY, "logger=[mlflow]",
                  f"mlflow.tracking_uri={tracking}", "model=custom_cnn,resnet18,medical_cnn",
                  f"runs_root={tmp_path / 'runs'}", "--metric", "accuracy",
                  cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary_path = next((tmp_path / "runs" / "default").glob("multirun-*/multirun.json"))
    summary = json.loads(summary_path.read_text())
    runs = summary["runs"]
    assert [r["swept"] for r in runs] == [["model=custom_cnn"], ["model=resnet18"],
                                          ["model=medical_cnn"]]  # fmt: skip
    for entry in runs:
        assert (Path(entry["run"]) / "eval" / "test" / "metrics.json").is_file()
    table = pd.read_csv(summary_path.parent / "compare.csv")
    assert len(table) == 3 and (summary_path.parent / "compare.html").is_file()
    assert "comparison: " in proc.stdout and "run 3/3: model=medical_cnn" in proc.stdout
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name("default")
    logged = client.search_runs([experiment.experiment_id])
    parent = summary["mlflow_parent_run"]
    children = [r for r in logged if r.data.tags.get("mlflow.parentRunId") == parent]
    assert len(logged) == 4 and len(children) == 3
    assert {Path(r.data.tags["medclf.run_dir"]).name for r in children} == {
        Path(entry["run"]).name for entry in runs
    }
    assert client.get_run(parent).info.status == "FINISHED"
