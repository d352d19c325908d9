"""DDP: each rank's share of the batches, how a rank finds rank 0's run, and a real
two-process training on CPU over gloo (bounded by a timeout, so a hang fails)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from medclf.config import compose
from medclf.data.datamodule import RankBatches
from medclf.errors import MedclfError
from medclf.training import ddp
from tests.conftest import medclf, printed_run


def _epoch(rank: int, world: int, shuffle: bool, epoch: int = 0, **kw) -> list[list[int]]:
    sampler = RankBatches(27, 4, rank, world, seed=7, shuffle=shuffle, **kw)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_ranks_take_disjoint_equal_shares_of_one_seeded_order():
    shares = [_epoch(r, 2, shuffle=True) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == math.ceil(math.ceil(27 / 2) / 4)  # equal steps
    flat = [[i for b in share for i in b] for share in shares]
    assert len(set(flat[0]) & set(flat[1])) <= 1  # only the one padding image repeats
    assert set(flat[0]) | set(flat[1]) == set(range(27))
    assert _epoch(0, 2, shuffle=True) == shares[0]  # seeded: the same on every call
    assert _epoch(0, 2, shuffle=True, epoch=1) != shares[0]  # a new order each epoch
    val = [[i for b in _epoch(r, 2, shuffle=False) for i in b] for r in (0, 1)]
    assert sorted(val[0] + val[1]) == list(range(27))  # validation: exact, no padding
    weights = [1.0 if i < 3 else 0.0 for i in range(27)]
    drawn = {i for r in (0, 1) for b in _epoch(r, 2, True, weights=weights) for i in b}
    assert drawn <= {0, 1, 2}
    single = RankBatches(9, 4, 0, 1, seed=0, shuffle=True)
    assert [len(b) for b in single] == [4, 4]  # a last batch of one is dropped (BatchNorm)


def test_a_rank_finds_rank_zeros_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", ddp.RUN_ENV):
        monkeypatch.delenv(var, raising=False)
    cfg = compose([f"runs_root={tmp_path}", "run_group=g", "run_name=shared"])
    assert ddp.rank() == 0 and ddp.joining_folder(cfg) is None and not ddp.distributed(cfg)
    monkeypatch.setenv("LOCAL_RANK", "1")  # started by Lightning from rank 0
    monkeypatch.setenv(ddp.RUN_ENV, str(tmp_path / "run"))
    assert ddp.joining_folder() == tmp_path / "run"
    monkeypatch.delenv(ddp.RUN_ENV)
    monkeypatch.setenv("RANK", "3")  # torchrun: every rank at once, the folder by name
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert ddp.launched_together() and ddp.distributed(cfg)
    assert ddp.joining_folder(cfg) == tmp_path / "g" / "shared"
    with pytest.raises(MedclfError, match="run_name: under torchrun"):
        ddp.joining_folder(compose([f"runs_root={tmp_path}"]))
    with pytest.raises(MedclfError, match="did not write"):
        ddp.wait_for_run(tmp_path / "g" / "shared", timeout=0.2)


@pytest.mark.heavy  # ~40 s: two training processes; CI runs it
def test_two_cpu_processes_train_one_run(tiny_synth: Path, tmp_path: Path):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = medclf("train", f"data.path={tiny_synth}", "data.image_size=32", "train.max_epochs=2",
                  "train.progress_bar=false", "data.batch_size=8", "train.devices=2",
                  "train.accelerator=cpu", "logger=[mlflow]", f"mlflow.tracking_uri={tracking}",
                  "runs_root=runs", cwd=tmp_path, timeout=300, check=True)  # fmt: skip
    run = printed_run(proc, tmp_path)
    # one report: the other rank joins rank 0's run (and the cache rank 0 built) quietly
    assert proc.stdout.count("run: ") == 1 and proc.stderr.count("image cache: ") == 1
    assert [p.name for p in (tmp_path / "runs" / "default").iterdir()] == [run.name]
    assert sorted(p.name for p in (run / "weights").iterdir()) == ["best.ckpt", "last.ckpt"]
    split = pd.read_csv(run / "split.csv")
    train_images = int((split["split"] == "train").sum())
    share = math.ceil(train_images / 2)  # each rank's images, padded to equal shares
    steps = math.ceil(share / 8) - (1 if share % 8 == 1 and share > 8 else 0)
    last = torch.load(run / "weights" / "last.ckpt", weights_only=True, map_location="cpu")
    assert last["global_step"] == 2 * steps  # optimizer steps: each rank 1/2 of the batches
    rows = pd.read_csv(run / "metrics.csv")
    assert rows["epoch"].tolist() == [0, 1] and rows["val/acc"].notna().all()
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["epochs"] == 2
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    logged = client.search_runs([client.get_experiment_by_name("default").experiment_id])
    assert len(logged) == 1  # rank 0's tracker only
    medclf("evaluate", f"model={run}", cwd=tmp_path, check=True)
    assert (run / "eval" / "test" / "metrics.json").is_file()


def test_stages_that_change_what_trains_are_refused_under_ddp():
    """DDP syncs the gradients of what was trainable when it wrapped the model."""
    from medclf.training.run import _check_stages_for_ddp
    from medclf.training.stages import resolve_stages

    two = compose(["train=two_stage", "model=resnet18", "train.devices=2"])
    with pytest.raises(MedclfError, match="every stage must train the same parameters"):
        _check_stages_for_ddp(two, resolve_stages(two.train))
    one = compose(["model=resnet18", "train.devices=2", "model.freeze_backbone=true"])
    _check_stages_for_ddp(one, resolve_stages(one.train, freeze_backbone=True))
    alone = compose(["train=two_stage", "model=resnet18"])
    _check_stages_for_ddp(alone, resolve_stages(alone.train))


@pytest.mark.heavy  # ~60 s: two folds of two training processes each; CI runs it
def test_consecutive_ddp_fits_in_one_process_start_their_own_ranks(tiny_synth: Path, tmp_path):
    """cv=2 with train.devices=2: the second fold's ranks start anew (the first fold's
    process group and launcher variables are gone), and the ensemble is assembled."""
    proc = medclf("train", f"data.path={tiny_synth}", "cv=2", "data.image_size=32",
                  "train.max_epochs=1", "train.progress_bar=false", "train.devices=2",
                  "train.accelerator=cpu", "logger=[]", "runs_root=runs", cwd=tmp_path,
                  timeout=300, check=True)  # fmt: skip
    run = printed_run(proc, tmp_path)
    for fold in ("fold-1", "fold-2"):
        assert (run / fold / "train_summary.json").is_file()
    assert sorted(p.name for p in (tmp_path / "runs" / "default").iterdir()) == [run.name]
    assert (run / "weights" / "best.ckpt").is_file()
