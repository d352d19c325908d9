"""Shared fixtures. Tests never touch the network and never write outside tmp folders."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

for _var, _val in {
    "HF_HUB_OFFLINE": "1",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    # a fixed pseudonym key, so tests (and their CLI subprocesses) never create a key file
    # in the working directory; tests of the key file itself unset it
    "MEDCLF_PSEUDONYM_KEY": "medclf-test-suite-pseudonym-key",
}.items():
    os.environ.setdefault(_var, _val)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
CHEST_CT = SHARED_DATASETS / "chest_ct" / "Data"


def medclf(
    *args: str,
    cwd: Path | None = None,
    check: bool = False,
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run the installed ``medclf`` CLI in a subprocess, as a user would. ``train`` gets
    recipe=none unless the test names a recipe: the tests' small settings are the point, and
    recipe=auto (medclf train's default, tests/training/test_recipe.py) would replace them."""
    if args and args[0] == "train" and not any(a.startswith(("recipe=", "resume=")) for a in args):
        args = (*args, "recipe=none")
    cmd = [sys.executable, "-m", "medclf", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def modules_after_import(module: str) -> list[str]:
    """The modules a fresh interpreter has loaded after ``import module``: what importing it
    costs and which layers it pulls in."""
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def printed_run(proc: subprocess.CompletedProcess, cwd: Path) -> Path:
    """The run folder ``medclf train`` printed (``run: PATH``), relative to its ``cwd``."""
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("run: ")), None)
    assert line, f"no 'run: ' line in the output:\n{proc.stdout}\n{proc.stderr[-2000:]}"
    return cwd / line.removeprefix("run: ").strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(
    cmd: list[str], url: str, timeout: float, cwd: Path | None = None, log: Path | None = None
):
    """Start ``cmd`` (a server on ``url``), wait until ``url/health`` answers 200, yield,
    then stop it. A server that exits or stays unhealthy fails the test with its output
    (kept in ``log`` when given)."""
    import httpx

    out = open(log, "w") if log else subprocess.PIPE  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=cwd)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                said = Path(log).read_text() if log else proc.stdout.read()
                raise AssertionError(f"server exited: {said[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not become healthy in {timeout:.0f} s")
            time.sleep(0.3)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if log:
            out.close()


@contextlib.contextmanager
def served(
    model: Path | str,
    timeout: float = 90,
    extra: tuple[str, ...] = (),
    cwd: Path | None = None,
    log: Path | None = None,
) -> Iterator[str]:
    """A real ``medclf serve`` process on a free 127.0.0.1 port; yields its base URL. Without
    ``cwd`` it runs in a new temporary folder (its audit log and keys go there); with ``log``
    its output goes to that file."""
    port = _free_port()
    cmd = [sys.executable, "-m", "medclf", "serve", f"model={model}", "host=127.0.0.1", *extra]
    url = f"http://127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        if cwd is None:
            cwd = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="served-")))
        stack.enter_context(running_server([*cmd, f"port={port}"], url, timeout, cwd, log))
        yield url


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
    medclf("evaluate", f"model={run}", cwd=work, check=True)
    medclf("export", f"model={run}", "format=onnx", cwd=work, check=True)
    return run


def enumerated_keys(model_name: str = "custom_cnn") -> dict[str, tuple[str, ...]]:
    """Every config key whose schema is a list of named choices -> those choices."""
    from medclf.config_checks import schema_leaves

    return {
        key: expect.options
        for key, (expect, _) in schema_leaves(model_name).items()
        if expect is not None and expect.options
    }
