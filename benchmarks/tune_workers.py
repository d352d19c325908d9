"""medclf tune on one machine: the wall time of N trials with 1 worker vs 2 workers sharing a
journal study, and what median pruning saves (epochs trained and wall time, pruning on vs
off), on synthetic phantoms, side by side in this run.

    .venv/bin/python benchmarks/tune_workers.py [--trials 8] [--epochs 6] [--per-class 30]

Each side is a fresh study in its own folder on the same data; the workers are ``medclf
tune`` processes; the pruning comparison calls ``medclf.tune.work`` with Optuna's median
pruner and with its NopPruner.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _words(data: Path, root: Path, epochs: int) -> list[str]:
    return [f"data.path={data}", "data.image_size=32", f"train.max_epochs={epochs}",
            "train.progress_bar=false", "logger=[]", "train.early_stopping.enabled=false",
            f"runs_root={root}"]  # fmt: skip


def workers(data: Path, root: Path, trials: int, epochs: int, count: int) -> float:
    """Seconds for ``count`` ``medclf tune`` processes to finish ``trials`` between them."""
    words = [*_words(data, root, epochs), f"trials={trials}", "study=bench"]
    started = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-m", "medclf", "tune", *words],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a worker failed: {err[-2000:]}")
    return time.perf_counter() - started


def pruning(data: Path, root: Path, trials: int, epochs: int, prune: bool) -> tuple[float, int]:
    """(seconds, epochs trained over all trials) with the median pruner or none."""
    import optuna

    from medclf.tune import Study, read_search, work

    study = Study("bench", str(root / "journal.log"), root / "study")
    pruner = None if prune else optuna.pruners.NopPruner()
    started = time.perf_counter()
    opened = work(study, read_search("default"), _words(data, root, epochs), trials, 0, None,
                  pruner)  # fmt: skip
    seconds = time.perf_counter() - started
    trained = 0
    for trial in opened.get_trials():
        if "run" in trial.user_attrs:
            run = Path(trial.user_attrs["run"])
            trained += json.loads((run / "train_summary.json").read_text())["epochs"]
    return seconds, trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--per-class", type=int, default=30)
    args = parser.parse_args()
    from medclf.data.synth import generate

    with tempfile.TemporaryDirectory(prefix="tune-bench-") as tmp:
        data = Path(tmp) / "data"
        generate(data, per_class=args.per_class, size=48, seed=0)
        one = workers(data, Path(tmp) / "one", args.trials, args.epochs, 1)
        two = workers(data, Path(tmp) / "two", args.trials, args.epochs, 2)
        print(f"{args.trials} trials of {args.epochs} epochs: 1 worker {one:.0f} s, "
              f"2 workers {two:.0f} s ({one / two:.2f}x)")  # fmt: skip
        off_s, off_epochs = pruning(data, Path(tmp) / "off", args.trials, args.epochs, False)
        on_s, on_epochs = pruning(data, Path(tmp) / "on", args.trials, args.epochs, True)
        print(f"pruning: {on_epochs} epochs in {on_s:.0f} s vs {off_epochs} epochs in "
              f"{off_s:.0f} s without ({1 - on_s / off_s:.0%} of the time saved)")  # fmt: skip


if __name__ == "__main__":
    main()
