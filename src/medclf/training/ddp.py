"""Several training processes (``train.devices=N``, ``train.num_nodes=M``) through Lightning's
DDP: which process this is, and how the other ranks find rank 0's run folder.

Rank 0 alone checks the data, chooses the recipe, builds the decode-once cache and writes the
run folder (config, split, preprocessing, data check), then its checkpoints and metrics.
Every other rank *joins* that folder: it reads the same config, split and preprocessing back
from it (so a recipe or a normalization is never chosen twice), reuses the cache rank 0
built, and writes nothing. How a rank finds the folder:

- launched by Lightning on one machine (``medclf train train.devices=2``): rank 0 names its
  run folder in ``MEDCLF_DDP_RUN`` before the fit starts, and Lightning starts the other
  ranks as copies of the command with that environment;
- launched together by torchrun or SLURM's srun (every rank starts at once, ``RANK`` or
  ``SLURM_PROCID`` set): the folder is ``runs_root/run_group/run_name``, so ``run_name=`` is
  required, on a filesystem every node sees; the other ranks wait for rank 0 to write it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medclf.errors import MedclfError
from medclf.rundir import RunDir

RUN_ENV = "MEDCLF_DDP_RUN"
# How long another rank waits for rank 0's run folder (rank 0 scans the data and may build
# the image cache first), and the process-group timeout of a collective operation: a rank
# that dies makes the others fail after this instead of hanging forever.
JOIN_TIMEOUT_S = 1800.0
COLLECTIVE_TIMEOUT_S = 900.0


def rank() -> int:
    """0 exactly for the global rank-0 process: torchrun's ``RANK``, srun's
    ``SLURM_PROCID``, or for a rank Lightning started, ``LOCAL_RANK`` + ``NODE_RANK`` (not the
    global number, which needs the devices per node; callers only ask whether it is 0)."""
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    return local + int(os.environ.get("NODE_RANK", "0") or 0)


def launched_together() -> bool:
    """Every rank started by torchrun or srun at once (not by Lightning from rank 0)."""
    world = os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or "1"
    started_by = "RANK" in os.environ or "SLURM_PROCID" in os.environ
    return started_by and world.isdigit() and int(world) > 1


def distributed(cfg: Any) -> bool:
    """More than one training process: several devices, nodes, or a torchrun/srun launch."""
    devices = cfg.train.devices
    several = isinstance(devices, list) and len(devices) > 1
    several |= isinstance(devices, int) and devices > 1
    return several or int(cfg.train.num_nodes) > 1 or launched_together()


def announce(cfg: Any, run: RunDir) -> None:
    """Rank 0: name the run folder for the ranks Lightning is about to start."""
    if distributed(cfg):
        os.environ[RUN_ENV] = str(run.root.resolve())


def joining_folder(cfg: Any | None = None) -> Path | None:
    """The run folder this process joins as a rank > 0, or None for rank 0."""
    if rank() != 0 and os.environ.get(RUN_ENV):
        return Path(os.environ[RUN_ENV])
    if cfg is None:
        return None
    if launched_together() and not cfg.run_name:  # refused by every rank alike
        raise MedclfError(
            "run_name: under torchrun or srun every rank must name the same run folder; add "
            "run_name=NAME (on a filesystem every node sees)"
        )
    if rank() == 0:
        return None
    return Path(str(cfg.runs_root)) / str(cfg.run_group) / str(cfg.run_name)


def wait_for_run(folder: Path, timeout: float = JOIN_TIMEOUT_S) -> RunDir:
    """Rank 0's run folder, once its inputs are written. Under torchrun or srun the files
    must be newer than this process (minus a minute of start-up skew between nodes), so a
    folder an earlier run left under the same name is not mistaken for this one's."""
    import psutil

    run = RunDir(folder)
    newer_than = psutil.Process().create_time() - 60 if launched_together() else 0.0
    deadline = time.monotonic() + timeout
    while True:
        files = (run.config, run.preprocessing, run.split)
        if all(f.is_file() and f.stat().st_mtime >= newer_than for f in files):
            return run
        if time.monotonic() > deadline:
            raise MedclfError(
                f"rank {rank()}: rank 0 did not write {folder} within {timeout:.0f} s; see "
                "rank 0's log"
            )
        time.sleep(0.5)


def quiet_other_ranks() -> None:
    """Ranks > 0 log only errors: rank 0 already reports the data, the cache and progress."""
    if rank() != 0:
        logging.getLogger("medclf").setLevel(logging.ERROR)


# What Lightning's launcher sets in rank 0's environment for the ranks it starts.
LAUNCHER_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextlib.contextmanager
def one_fit() -> Iterator[None]:
    """Around one ``trainer.fit``: afterwards the process group is destroyed and the
    launcher's variables removed again, so the next fit of this process (the next fold of a
    cv, the next run of a -m) starts its own ranks instead of waiting for the finished
    ones (Lightning reads a ``LOCAL_RANK`` left behind as "started by someone else")."""
    before = {var for var in LAUNCHER_ENV if var in os.environ}
    try:
        yield
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for var in LAUNCHER_ENV:
            if var not in before:
                os.environ.pop(var, None)
