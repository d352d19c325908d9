"""``medclf compare`` ranks evaluated runs by the chosen metric, in the right direction."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from tests.conftest import medclf


def _variant(run: Path, dest: Path, auc: float, ece: float) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("export", "logs"))
    path = dest / "eval/test/metrics.json"
    m = json.loads(path.read_text())
    m["overall"]["macro_auc"].update(value=auc, ci_low=auc - 0.05, ci_high=min(1, auc + 0.05))
    m["overall"]["ece"]["value"] = ece
    path.write_text(json.dumps(m))
    return dest


def test_compare_ranks_runs_and_writes_csv_and_html(trained_run: Path, tmp_path: Path) -> None:
    low = _variant(trained_run, tmp_path / "run_low", auc=0.61, ece=0.02)
    high = _variant(trained_run, tmp_path / "run_high", auc=0.93, ece=0.09)
    proc = medclf("compare", str(low), str(high), "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "compare.csv")
    assert list(table["run"]) == ["run_high", "run_low"]
    assert table.loc[0, "macro_auc"] == "0.930 (0.880-0.980)"
    assert {"gates", "latency_p95_ms", "params_m", "size_mb", "ece_calibrated"} <= set(table)
    assert table["params_m"].iloc[0] > 0
    html = (tmp_path / "compare.html").read_text()
    assert html.index("run_high") < html.index("run_low")
    # a lower-is-better metric ranks the other way
    proc = medclf(
        "compare",
        str(low),
        str(high),
        "--metric",
        "expected_calibration_error",
        "--out",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(pd.read_csv(tmp_path / "compare.csv")["run"]) == ["run_low", "run_high"]


def test_compare_names_the_run_that_needs_evaluating(trained_run: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(trained_run, bare, ignore=shutil.ignore_patterns("eval", "export"))
    proc = medclf("compare", str(trained_run), str(bare), cwd=tmp_path)
    assert proc.returncode == 2
    assert (
        f"{bare}: no eval/test/metrics.json; run 'medclf evaluate model={bare}' first"
        in proc.stderr
    )
    proc = medclf("compare", str(trained_run), "--metric", "sensitivity", cwd=tmp_path)
    assert proc.returncode == 2 and "not an overall metric" in proc.stderr
