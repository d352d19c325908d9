"""The container images (docker/): these machines cannot pull base images, so the Dockerfiles
are linted with hadolint, and the serving image's own build and entry commands, read from its
Dockerfile, are run in a fresh virtual environment: it must serve an ONNX file with torch
absent."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import REPO, _free_port

DOCKER = REPO / "docker"
SERVE_DOCKERFILE = DOCKER / "serve.Dockerfile"
# what the slim install must not hold (import names)
TRAINING_STACK = ("torch", "torchvision", "timm", "lightning", "sklearn", "pandas")


def _requirement_names(path: Path) -> list[str]:
    lines = [ln.split("#")[0].strip() for ln in path.read_text().splitlines()]
    return [re.split(r"[\[=<>~! ]", ln)[0].lower().replace("_", "-") for ln in lines if ln]


def test_dockerfiles_pass_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    files = sorted(DOCKER.glob("*.Dockerfile"))
    assert {f.name for f in files} == {"serve.Dockerfile", "train.Dockerfile"}
    proc = subprocess.run([str(hadolint), *map(str, files)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_serving_requirements_are_pinned_by_the_lock_and_leave_out_training():
    locked = set(_requirement_names(REPO / "requirements" / "lock.txt"))
    serving = _requirement_names(REPO / "requirements" / "serve.txt")
    assert serving, "requirements/serve.txt lists nothing"
    assert sorted(set(serving) - locked) == []  # each gets its version from the lock
    assert not set(serving) & {"torch", "torchvision", "timm", "lightning", "mlflow", "pandas"}


def test_compose_wires_the_slim_image_registry_and_postgres_on_loopback():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"serve", "mlflow", "postgres"}
    build = services["serve"]["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == SERVE_DOCKERFILE
    command = " ".join(services["serve"]["command"])
    assert "mlflow.tracking_uri=http://mlflow:5000" in command
    assert "serve.audit_url=postgresql+psycopg://" in command
    for service in services.values():  # published ports only on the host's loopback
        assert all(str(p).startswith("127.0.0.1:") for p in service.get("ports", []))
    # every variable the file requires is in the example environment file
    required = set(re.findall(r"\$\{(\w+):\?", (DOCKER / "compose.yaml").read_text()))
    example = (DOCKER / ".env.example").read_text()
    assert required and all(re.search(rf"^{v}=", example, re.M) for v in required)


def _dockerfile(path: Path) -> list[tuple[str, str]]:
    """(instruction, arguments) of each instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return [tuple(ln.split(None, 1)) for ln in lines]  # type: ignore[misc]


def _build_stage_as_the_image_does(root: Path) -> tuple[Path, dict[str, object]]:
    """The serving Dockerfile's build stage with /src and /opt/medclf under ``root``: its
    COPY lines copy from this checkout, its RUN lines run in ``sh``. Returns the virtual
    environment and the final stage's ENTRYPOINT, CMD and HEALTHCHECK."""
    src, venv = root / "src", root / "venv"
    stages: list[list[tuple[str, str]]] = []
    for op, args in _dockerfile(SERVE_DOCKERFILE):
        if op == "FROM":
            stages.append([])
        stages[-1].append((op, args))
    build, final = stages
    for op, args in build:
        if op == "COPY":  # Docker's rules: a folder's contents go into the destination
            *sources, dest = args.split()
            target = src / dest
            target.mkdir(parents=True, exist_ok=True)
            for s in sources:
                if (REPO / s).is_dir():
                    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
                    shutil.copytree(REPO / s, target, ignore=skip, dirs_exist_ok=True)
                else:
                    shutil.copy2(REPO / s, target)
        elif op == "RUN":
            where = {"/opt/medclf": str(venv), "/src": str(src)}
            command = " ".join(where.get(word, word) for word in args.split())
            env = {**os.environ, "PYTHON": sys._base_executable}
            env.pop("PYTHONPATH", None)
            proc = subprocess.run(
                ["sh", "-c", command], cwd=src, env=env, capture_output=True, text=True
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
    entry = {op: args for op, args in final if op in ("ENTRYPOINT", "CMD", "HEALTHCHECK")}
    health = json.loads(entry["HEALTHCHECK"].split(" CMD ", 1)[1])
    return venv, {
        "entrypoint": json.loads(entry["ENTRYPOINT"]),
        "cmd": json.loads(entry["CMD"]),
        "healthcheck": health,
    }


@pytest.mark.heavy
def test_the_slim_serving_install_answers_predict_without_torch(
    trained_run: Path, tiny_synth: Path, tmp_path: Path
):
    """The serving image's build commands, run here (the package registry is reached, as
    'make install' does), make an environment that lacks torch and still serves the ONNX
    export; a run folder (the PyTorch backend) is refused in one line."""
    venv, image = _build_stage_as_the_image_does(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    probe = "import importlib.util as u; print([m for m in %r if u.find_spec(m)])"
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe % (TRAINING_STACK,)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert found.stdout.strip() == "[]"

    port = _free_port()
    words = [w for w in image["cmd"] if not w.startswith(("model=", "host=", "port="))]
    onnx = trained_run / "export" / "model.onnx"
    cmd = [*image["entrypoint"], *words, f"model={onnx}", "host=127.0.0.1", f"port={port}"]
    data = tmp_path / "data"  # the image's WORKDIR: the audit log goes there
    data.mkdir()
    server = subprocess.Popen(
        cmd, cwd=data, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        health = [a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in image["healthcheck"]]
        assert _healthy_in_time(health, env, server), server.stdout.read()[-3000:]
        png = next(tiny_synth.rglob("*.png"))
        answer = httpx.post(f"{url}/predict", files={"file": png.read_bytes()}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"]["name"] == trained_run.name
        assert "medclf_predictions_total" in httpx.get(f"{url}/metrics").text
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert (data / "runs" / "audit.db").is_file()

    refused = subprocess.run(
        [*image["entrypoint"], f"model={trained_run}", f"port={_free_port()}"],
        cwd=data, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith("error: this needs 'torch'"), refused.stderr
    assert "Traceback" not in refused.stderr


def _healthy_in_time(health: list[str], env: dict[str, str], server: subprocess.Popen) -> bool:
    """The image's HEALTHCHECK command, retried as Docker would, until it passes."""
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        if subprocess.run(health, env=env, capture_output=True).returncode == 0:
            return True
        time.sleep(1)
    return False


def test_a_package_the_slim_install_lacks_is_one_error_line(capsys: pytest.CaptureFixture):
    import typer

    from medclf.cli_common import handles_errors

    @handles_errors
    def needs(name: str) -> None:
        raise ModuleNotFoundError(f"No module named '{name}'", name=name)

    with pytest.raises(typer.Exit) as exited:
        needs("torch.nn")
    assert exited.value.exit_code == 2
    assert capsys.readouterr().err.startswith("error: this needs 'torch', which this install")
    with pytest.raises(ModuleNotFoundError):  # a bug of ours, not a slim install: traceback
        needs("medclf.nowhere")
