"""The training engine end to end, through the CLI as users run it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import CHEST_CT, medclf, printed_run

# Columns that are measurements of the machine, not results of training.
MACHINE = ("perf/", "sys/")


@pytest.fixture(scope="module")
def synth40(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medclf.data.synth import generate

    out = tmp_path_factory.mktemp("synth40") / "ct"
    generate(out, per_class=40, size=48, seed=5)
    return out


def _common(data: Path) -> list[str]:
    return [
        f"data.path={data}",
        "data.image_size=48",
        "data.batch_size=8",
        "train.deterministic=true",
        "train.progress_bar=false",
        "logger=[]",
        "recipe=none",
    ]


def _results(run: Path) -> pd.DataFrame:
    df = pd.read_csv(run / "metrics.csv")
    return df[[c for c in df.columns if not c.startswith(MACHINE)]]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.heavy  # ~55 s: three trainings and a SIGKILL; CI runs it (make test-heavy)
def test_deterministic_twins_and_sigkill_resume_match(synth40: Path, tmp_path: Path):
    args = [*_common(synth40), "train.max_epochs=5", "train.early_stopping.enabled=false"]
    twin_a = printed_run(medclf("train", *args, "run_group=a", cwd=tmp_path, check=True), tmp_path)
    twin_b = printed_run(medclf("train", *args, "run_group=b", cwd=tmp_path, check=True), tmp_path)
    pd.testing.assert_frame_equal(_results(twin_a), _results(twin_b))
    assert _same_weights(
        _weights(twin_a / "weights/best.ckpt"), _weights(twin_b / "weights/best.ckpt")
    )

    # The same run, killed with SIGKILL during its third epoch, then resumed.
    cmd = [sys.executable, "-m", "medclf", "train", *args, "run_group=killed"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    killed_rows = 0
    while time.monotonic() < deadline and proc.poll() is None:
        found = list((tmp_path / "runs" / "killed").glob("*/metrics.csv"))
        if found and len(found[0].read_text().splitlines()) >= 3:  # header + 2 epochs
            time.sleep(0.2)  # into epoch 3
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed_rows = len(found[0].read_text().splitlines()) - 1
            break
        time.sleep(0.02)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 2 <= killed_rows < 5
    killed = next((tmp_path / "runs" / "killed").iterdir())
    assert not (killed / "train_summary.json").exists()
    resumed = medclf("train", f"resume={killed}", "logger=[csv]", cwd=tmp_path, check=True)
    assert "resuming" in resumed.stderr
    assert (killed / "logs" / "csv" / "metrics.csv").is_file()  # watching may change
    pd.testing.assert_frame_equal(_results(twin_a), _results(killed))
    for name in ("best.ckpt", "last.ckpt"):
        assert _same_weights(
            _weights(twin_a / "weights" / name), _weights(killed / "weights" / name)
        )

    again = medclf("train", f"resume={killed}", cwd=tmp_path)
    assert again.returncode == 2 and "already finished" in again.stderr
    other = medclf("train", f"resume={twin_a}", "train.lr=0.5", cwd=tmp_path)
    assert other.returncode == 2 and "keeps its configuration" in other.stderr


@pytest.mark.slow
def test_the_best_checkpoint_is_what_evaluate_export_and_serve_use(synth40: Path, tmp_path: Path):
    from medclf.inference.predictor import OnnxPredictor, TorchPredictor

    # A monitor whose best epoch is known in advance: the one-cycle learning rate peaks
    # mid-run, so "max lr" selects neither the first nor the last epoch.
    args = [
        *_common(synth40),
        "train.max_epochs=5",
        "train.scheduler.name=onecycle",
        "train.monitor=lr/head",
        "train.monitor_mode=max",
        "train.early_stopping.enabled=false",
    ]
    run = printed_run(medclf("train", *args, cwd=tmp_path, check=True), tmp_path)
    epochs = pd.read_csv(run / "metrics.csv")
    best_epoch = int(epochs.loc[epochs["lr/head"].idxmax(), "epoch"])
    assert 0 < best_epoch < 4
    best = torch.load(run / "weights/best.ckpt", weights_only=True)
    last = torch.load(run / "weights/last.ckpt", weights_only=True)
    assert best["epoch"] == best_epoch and last["epoch"] == 4
    assert not _same_weights(best["state_dict"], last["state_dict"])

    served = TorchPredictor(run).model.state_dict()
    assert _same_weights({f"model.{k}": v for k, v in served.items()}, best["state_dict"])

    medclf("export", f"model={run}", cwd=tmp_path, check=True)
    x = np.random.default_rng(0).normal(size=(4, 1, 48, 48)).astype(np.float32)
    onnx_probs = OnnxPredictor(run / "export/model.onnx").predict_batch(x)
    torch_probs = TorchPredictor(run).predict_batch(x)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-5)
    from medclf.models.checkpoint import model_from_checkpoint

    last_model, _ = model_from_checkpoint(run / "weights/last.ckpt")
    with torch.inference_mode():
        last_probs = torch.softmax(last_model(torch.from_numpy(x)), 1).numpy()
    assert np.abs(onnx_probs - last_probs).max() > 1e-3


@pytest.mark.heavy  # ~50 s: trains with every tracker; CI runs it (make test-heavy)
@pytest.mark.slow
def test_trackers_record_the_run_and_a_broken_one_never_stops_training(
    tiny_synth: Path, tmp_path: Path
):
    from mlflow.tracking import MlflowClient

    db = tmp_path / "track" / "mlflow.db"
    proc = medclf(
        "train",
        f"data.path={tiny_synth}",
        "data.image_size=32",
        "train.max_epochs=2",
        "train.progress_bar=false",
        "logger=[tensorboard,mlflow,wandb,csv]",
        f"mlflow.tracking_uri=sqlite:///{db}",
        "train.profiler=simple",
        "train.precision=bf16-mixed",
        "train.channels_last=true",
        "train.compile=true",
        cwd=tmp_path,
        check=True,
    )
    run = printed_run(proc, tmp_path)
    # compile is GPU-only: one warning naming it; bf16 runs where the CPU has bf16 units
    assert proc.stderr.count("no GPU:") == 1 and "train.compile=true" in proc.stderr
    from medclf.training.hardware import cpu_has_bf16

    assert ("train.precision=bf16-mixed" in proc.stderr) is not cpu_has_bf16()
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    (mlrun,) = client.search_runs([client.get_experiment_by_name("default").experiment_id])
    assert mlrun.info.status == "FINISHED" and mlrun.info.run_name == run.name
    assert mlrun.data.params["train/optimizer"] == "adamw"
    assert len(client.get_metric_history(mlrun.info.run_id, "val/loss")) == 2
    assert "perf/train_images_per_s" in mlrun.data.metrics
    artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
    assert {"config.yaml", "metrics.csv", "training_curves.png", "weights"} <= artifacts
    assert list((run / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "logs" / "csv" / "metrics.csv").is_file()
    assert list((run / "logs" / "wandb").glob("offline-run-*"))
    assert list((run / "profile").glob("*profile*.txt"))

    # An unreachable tracking server: reported, dropped, training completes.
    down = medclf(
        "train",
        f"data.path={tiny_synth}",
        "data.image_size=32",
        "train.max_epochs=1",
        "train.progress_bar=false",
        "logger=[mlflow,csv]",
        "mlflow.tracking_uri=http://127.0.0.1:9",
        cwd=tmp_path,
    )
    assert down.returncode == 0, down.stderr[-2000:]
    assert "logger mlflow could not start" in down.stderr
    assert (printed_run(down, tmp_path) / "weights/best.ckpt").is_file()


def test_a_logger_failing_mid_training_is_switched_off(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from medclf.training.loggers import FailSoftLogger

    class Broken(CSVLogger):
        def log_metrics(self, metrics, step=None):
            raise ConnectionError("tracking server went away")

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def training_step(self, batch, _):
            loss = self.lin(batch[0]).pow(2).mean()
            self.log("loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    wrapped = FailSoftLogger(Broken(save_dir=str(tmp_path)), "x")
    trainer = L.Trainer(
        max_epochs=2,
        logger=wrapped,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    with caplog.at_level("WARNING", logger="medclf"):
        trainer.fit(Tiny(), DataLoader(TensorDataset(torch.ones(8, 2)), batch_size=2))
    assert trainer.current_epoch == 2 and wrapped.failed
    assert sum("logger x failed" in r.message for r in caplog.records) == 1


@pytest.mark.heavy  # about a minute on 2 cores; CI runs it with make test-heavy
def test_two_stage_recipe_on_chest_ct(tmp_path: Path):
    proc = medclf(
        "train",
        f"data.path={CHEST_CT}",
        "model=resnet18",
        "train=two_stage",
        "train.stages.0.epochs=1",
        "train.stages.1.epochs=2",
        "data.image_size=64",
        "train.progress_bar=false",
        "logger=[]",
        cwd=tmp_path,
        check=True,
    )
    assert "head: 1 ep, trains head, adam; finetune: 2 ep, trains all, adamw" in proc.stderr
    epochs = pd.read_csv(printed_run(proc, tmp_path) / "metrics.csv")
    assert list(epochs["stage"]) == ["head", "finetune", "finetune"]
    assert epochs.loc[0, "lr/head"] == 1e-4 and pd.isna(epochs.loc[0, "lr/backbone"])
    assert epochs.loc[1, "lr/head"] == 3e-5 and epochs.loc[1, "lr/backbone"] == 5e-6
    assert epochs.loc[2, "lr/head"] < 3e-5  # cosine decay within the stage


def test_a_run_that_would_train_nothing_is_refused_before_it_starts(
    tiny_synth: Path, tmp_path: Path
):
    proc = medclf(
        "train",
        f"data.path={tiny_synth}",
        "data.image_size=32",
        "train.max_epochs=1",
        "train.limit_train_batches=0",
        "train.progress_bar=false",
        "logger=[]",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: train.limit_train_batches=0 is not valid: expected a number > 0 (or null)"
    )
    assert not (tmp_path / "runs").exists()  # refused when composed: nothing written
