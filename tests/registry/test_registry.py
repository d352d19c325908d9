"""The release path through a real MLflow registry (a sqlite store; a real `mlflow server`
process in test_registry_server.py): register -> gated promote -> serve models:/NAME@ALIAS ->
rollback, and each refusal as one line with nothing half-registered."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import medclf, served

pytestmark = pytest.mark.slow
NAME = "chest-demo"


def _release(trained_run: Path, folder: Path, gates_pass: bool) -> Path:
    """A copy of the run, evaluated (with gates it passes, or the packaged ones it fails) and
    exported, as `register` wants it."""
    run = folder / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "eval"))
    lenient = ["eval.gates.accuracy=null", "eval.gates.sensitivity=null"] if gates_pass else []
    medclf("evaluate", f"model={run}", "eval.n_bootstrap=50", *lenient, check=True)
    # INT8 once: the good release shows it is logged beside the model
    int8 = ["quantize=int8", "export.int8_max_drop=0.5"] if gates_pass else []
    medclf("export", f"model={run}", *int8, check=True)
    return run


def _one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def _probabilities(model: str, image: str, *settings: str, cwd: Path) -> dict[str, float]:
    out = medclf("predict", f"model={model}", image, *settings, "--json", cwd=cwd, check=True)
    return json.loads(out.stdout)["results"][0]["probabilities"]


@pytest.fixture(scope="module")
def releases(trained_run: Path, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("releases")
    return {
        "good": _release(trained_run, root / "good", gates_pass=True),
        "failing": _release(trained_run, root / "failing", gates_pass=False),
    }


@pytest.mark.heavy  # about 80 s (two services, an evaluation); CI runs it with make test-heavy
def test_register_promote_serve_and_roll_back(releases, tmp_path: Path):
    store = [f"mlflow.tracking_uri=sqlite:///{tmp_path / 'registry.db'}", "runs_root=runs"]
    good, failing = releases["good"], releases["failing"]
    image = _test_image(good)

    # v1: gates passed, so the alias is set at registration
    proc = medclf("register", str(good), f"name={NAME}", "alias=production", *store, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"registered: models:/{NAME}/1, alias production" in proc.stdout
    # v2: gates failed; registered, but promotion is refused, then forced with a reason
    medclf(
        "register", str(failing), f"name={NAME}", "tag.site=A b", *store, cwd=tmp_path, check=True
    )
    from mlflow.tracking import MlflowClient

    tags = MlflowClient(tracking_uri=store[0].split("=", 1)[1]).get_model_version(NAME, "2").tags
    assert tags["site"] == "A b" and tags["medclf.gates.passed"] == "false"
    refused = _one_error_line(medclf("registry", "promote", NAME, "2", *store, cwd=tmp_path))
    assert "failed its gates" in refused and "alias=production not set" in refused
    assert "reason=" in _one_error_line(
        medclf("registry", "promote", NAME, "2", "--force", *store, cwd=tmp_path)
    )
    medclf(
        "registry",
        "promote",
        NAME,
        "2",
        "--force",
        "reason=pilot at site A",
        *store,
        cwd=tmp_path,
        check=True,
    )
    shown = medclf("registry", "show", NAME, *store, cwd=tmp_path, check=True).stdout
    assert f"{NAME}/1: accuracy" in shown and "gates passed" in shown
    assert f"{NAME}/2 [production]" in shown and "gates FAILED (accuracy >= 0.85" in shown
    assert "forced: production.by=" in shown and "production.reason=pilot at site A" in shown
    listed = medclf("registry", "list", *store, cwd=tmp_path, check=True).stdout
    assert f"{NAME}: 2 version(s); production=v2" in listed
    compared = medclf("registry", "compare", NAME, "--metric", "accuracy", *store, cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    ranks = [ln for ln in compared.stdout.splitlines() if re.match(r"^│ \d", ln)]
    assert [ln[2] for ln in ranks] == ["1", "2"]  # both copies of one run: equal accuracy
    assert sum("production" in ln for ln in ranks) == 1

    # the service gives exactly the probabilities of the run production came from, and says
    # which version it serves; after a rollback, a restarted service serves v1
    v1 = _probabilities(str(good / "export" / "model.onnx"), image, cwd=tmp_path)
    v2 = _probabilities(str(failing / "export" / "model.onnx"), image, cwd=tmp_path)
    assert _served_answer(image, store, tmp_path) == (v2, {"name": NAME, "version": "2"})
    assert (tmp_path / "runs" / "registry-cache" / NAME).is_dir()  # downloaded once, cached
    back = medclf("registry", "rollback", NAME, *store, cwd=tmp_path, check=True).stdout
    assert f"{NAME}@production: version 2 -> version 1" in back
    assert _served_answer(image, store, tmp_path) == (v1, {"name": NAME, "version": "1"})
    line = _one_error_line(medclf("registry", "rollback", NAME, *store, cwd=tmp_path))
    assert "no earlier version recorded" in line  # v1 was the first: nothing to go back to
    _evaluate_and_compare_registered(image, v1, store, tmp_path)


def _served_answer(image: str, store: list[str], cwd: Path) -> tuple[dict, dict]:
    """(probabilities, registered version) from a real service of models:/NAME@production."""
    with (
        served(f"models:/{NAME}@production", extra=tuple(store), cwd=cwd) as url,
        open(image, "rb") as fh,
    ):
        answer = httpx.post(f"{url}/predict", files={"file": fh}, timeout=30).json()
        health = httpx.get(f"{url}/health", timeout=10).json()
    registered = health["model"]["registered"]
    assert registered.pop("alias") == "production"
    return answer["probabilities"], registered


def _evaluate_and_compare_registered(image: str, v1: dict, store: list[str], cwd: Path):
    """evaluate and compare take a registered version like a run folder."""
    out = medclf("evaluate", f"model=models:/{NAME}/1", "eval.n_bootstrap=20", *store, cwd=cwd)
    assert out.returncode == 0, out.stderr
    (folder,) = (cwd / "runs" / "registry-cache" / NAME).glob("1-*")
    evaluated = folder / "eval" / "test-onnx"
    # the release folder: the run's files at their places, the INT8 file beside, no weights
    for kept in ("config.yaml", "split.csv", "export/model.int8.onnx", "eval/test/gates.json"):
        assert (folder / kept).is_file(), kept
    assert not (folder / "weights").exists()
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert metrics["model"]["registered"] == {"name": NAME, "version": "1"}
    import pandas as pd

    row = pd.read_csv(evaluated / "predictions.csv").set_index("path").loc[image]
    assert {c: row[f"prob_{c}"] for c in v1} == pytest.approx(v1, abs=1e-6)
    refused = _one_error_line(
        medclf("evaluate", f"model=models:/{NAME}/1", "backend=torch", *store, cwd=cwd)
    )
    assert "holds its ONNX file, not its PyTorch weights" in refused
    # the registered test evaluations (v2 is fetched here), ranked like runs
    compared = medclf("compare", f"models:/{NAME}/2", f"models:/{NAME}@production", *store, cwd=cwd)
    assert compared.returncode == 0, compared.stderr
    table = pd.read_csv(cwd / "compare.csv")
    assert sorted(table["run"]) == [f"models:/{NAME}/1", f"models:/{NAME}/2"]
    assert (table["size_mb"] > 0).all() and (table["params_m"] > 0).all()


def _test_image(run: Path) -> str:
    import pandas as pd

    table = pd.read_csv(run / "split.csv")
    return str(table.loc[table["split"] == "test", "path"].iloc[0])


@pytest.mark.heavy  # about 2 minutes with its two evaluated, exported releases; CI runs it
def test_each_refusal_is_one_line_and_registers_nothing(releases, tmp_path: Path):
    store = [f"mlflow.tracking_uri=sqlite:///{tmp_path / 'registry.db'}", "runs_root=runs"]
    good = releases["good"]
    unevaluated = tmp_path / "unevaluated"
    shutil.copytree(good, unevaluated, ignore=shutil.ignore_patterns("eval"))
    medclf("export", f"model={unevaluated}", check=True)  # its release record: no evaluation
    unexported = tmp_path / "unexported"
    shutil.copytree(good, unexported, ignore=shutil.ignore_patterns("export"))
    no_weights = tmp_path / "no_weights"
    shutil.copytree(good, no_weights, ignore=shutil.ignore_patterns("best.ckpt"))
    cases = {
        "bad name": (["register", str(good), "name=a/b"], "a registered model name is"),
        "bad alias": (
            ["register", str(good), f"name={NAME}", "alias=latest"],
            "neither 'latest'",
        ),
        "no evaluation": (
            ["register", str(unevaluated), f"name={NAME}", "alias=production"],
            "has no test evaluation",
        ),
        "no export": (
            ["register", str(unexported), f"name={NAME}"],
            "no export to register; run 'medclf export",
        ),
        "not a run": (["register", str(tmp_path), f"name={NAME}"], "missing config.yaml"),
        "no weights": (["register", str(no_weights), f"name={NAME}"], "no weights/best.ckpt"),
        "unknown alias": (
            ["predict", f"model=models:/{NAME}@staging", _test_image(good)],
            "no such",
        ),
    }
    for label, (words, needle) in cases.items():
        line = _one_error_line(medclf(*words, *store, cwd=tmp_path))
        assert needle in line, (label, line)
    listed = medclf("registry", "list", *store, cwd=tmp_path, check=True).stdout
    assert "no registered models" in listed  # nothing half-registered

    start = time.monotonic()
    line = _one_error_line(
        medclf("registry", "list", "mlflow.tracking_uri=http://127.0.0.1:9", cwd=tmp_path)
    )
    assert "does not answer" in line and time.monotonic() - start < 20


@pytest.mark.heavy  # about 40 s; CI runs it with make test-heavy
def test_a_version_whose_artifacts_were_deleted_is_named(releases, tmp_path: Path):
    store = [f"mlflow.tracking_uri=sqlite:///{tmp_path / 'registry.db'}", "runs_root=runs"]
    medclf("register", str(releases["good"]), f"name={NAME}", *store, cwd=tmp_path, check=True)
    shutil.rmtree(tmp_path / "runs" / "mlartifacts")  # the artifact store lost the files
    line = _one_error_line(
        medclf(
            "predict",
            f"model=models:/{NAME}/1",
            _test_image(releases["good"]),
            *store,
            cwd=tmp_path,
        )
    )
    assert f"models:/{NAME}/1" in line and "could not be downloaded" in line
    assert not list((tmp_path / "runs" / "registry-cache").rglob("1-*"))  # no half download
