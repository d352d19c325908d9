"""Shared fixtures. Tests never touch the network and never write outside tmp folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

for _var, _val in {
    "HF_HUB_OFFLINE": "1",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(_var, _val)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
CHEST_CT = SHARED_DATASETS / "chest_ct" / "Data"


def medclf(
    *args: str, cwd: Path | None = None, check: bool = False, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run the installed ``medclf`` CLI in a subprocess, as a user would."""
    cmd = [sys.executable, "-m", "medclf", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def printed_run(proc: subprocess.CompletedProcess, cwd: Path) -> Path:
    """The run folder ``medclf train`` printed (``run: PATH``), relative to its ``cwd``."""
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("run: ")), None)
    assert line, f"no 'run: ' line in the output:\n{proc.stdout}\n{proc.stderr[-2000:]}"
    return cwd / line.removeprefix("run: ").strip()


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medclf.data.synth import generate

    out = tmp_path_factory.mktemp("synth") / "ct"
    generate(out, per_class=12, size=48, seed=3)
    return out


@pytest.fixture(scope="session")
def trained_run(tiny_synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) training run made through the CLI: train -> evaluate -> export."""
    work = tmp_path_factory.mktemp("work")
    proc = medclf(
        "train",
        f"data.path={tiny_synth}",
        "data.image_size=32",
        "train.max_epochs=3",
        "train.progress_bar=false",
        "runs_root=runs",
        cwd=work,
        check=True,
    )
    run = printed_run(proc, work)
    medclf("evaluate", f"run={run}", cwd=work, check=True)
    medclf("export", f"run={run}", "format=onnx", cwd=work, check=True)
    return run
