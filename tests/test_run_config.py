"""A run folder's config.yaml is read as untrusted: no interpolation, no tags, the schema."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from medclf.errors import MedclfError
from medclf.run_config import load_run_config
from tests.conftest import medclf


def _config(trained_run: Path, tmp_path: Path, old: str, new: str) -> Path:
    text = (trained_run / "config.yaml").read_text()
    assert old in text, old
    out = tmp_path / "config.yaml"
    out.write_text(text.replace(old, new, 1))
    return out


def test_a_genuine_run_config_loads_validated(trained_run: Path) -> None:
    cfg = load_run_config(trained_run / "config.yaml")
    assert cfg.model.name == "custom_cnn" and cfg.data.image_size == 32
    assert cfg.data.ordinal == "auto"  # a key the run did not have is added at its default


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("name: custom_cnn", "name: ${oc.env:HOME}", "model.name='${oc.env:HOME}' is an interp"),
        ("name: custom_cnn", "name: !!python/object/apply:os.getcwd []", "tags such as"),
        ("batch_size: ", "bogus_key: 1\n  batch_size: ", "bogus_key"),
        ("image_size: 32", "image_size: -3", "data.image_size=-3 is not valid"),
        ("image_size: 32", "image_size: ${data.batch_size}", "data.image_size="),
    ],
    ids=["env-resolver", "python-tag", "unknown-key", "bad-value", "interpolation"],
)
def test_planted_run_configs_are_refused_naming_file_and_key(
    trained_run: Path, tmp_path: Path, old: str, new: str, needle: str
) -> None:
    path = _config(trained_run, tmp_path, old, new)
    with pytest.raises(MedclfError) as exc:
        load_run_config(path)
    assert str(exc.value).startswith(f"{path}: ") and needle in str(exc.value)


def test_an_environment_variable_never_reaches_the_model_card(
    trained_run: Path, tmp_path: Path
) -> None:
    """The planted env resolver through the CLI: one error line, the secret nowhere."""
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    planted = _config(trained_run, tmp_path, "name: custom_cnn", "name: ${oc.env:MEDCLF_SECRET}")
    shutil.copy(planted, run / "config.yaml")
    env_secret = "s3cr3t-value"
    proc = medclf(
        "evaluate", f"model={run}", "eval.n_bootstrap=0", cwd=tmp_path,
        env={**os.environ, "MEDCLF_SECRET": env_secret},
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "interpolation" in errors[0]
    assert env_secret not in proc.stdout + proc.stderr
    assert not any(env_secret in p.read_text(errors="ignore") for p in run.rglob("*.md"))
