"""medclf tune: search files checked before any trial, two workers sharing one journal
study, a pruned trial, and the study's summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medclf.errors import MedclfError
from medclf.tune import SURPLUS, Study, check_search, read_search, work
from tests.conftest import medclf

pytestmark = pytest.mark.slow
TINY = ["data.image_size=32", "train.max_epochs=3", "train.progress_bar=false", "logger=[]"]


def _trials(storage: Path, name: str):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    journal = optuna.storages.JournalStorage(JournalFileBackend(str(storage)))
    return optuna.load_study(study_name=name, storage=journal).get_trials()


@pytest.mark.heavy  # ~25-40 s of two processes: make test measured 22 min, CI runs this
def test_two_workers_share_one_study_and_run_exactly_the_trials(tiny_synth: Path, tmp_path):
    storage = tmp_path / "shared" / "journal.log"
    words = [f"data.path={tiny_synth}", *TINY, "trials=4", "study=shared",
             f"storage={storage}", f"runs_root={tmp_path / 'runs'}"]  # fmt: skip
    workers = [
        subprocess.Popen([sys.executable, "-m", "medclf", "tune", *words], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = _trials(storage, "shared")
    ran = [t for t in trials if not t.user_attrs.get(SURPLUS)]
    assert sorted(t.number for t in ran) == [0, 1, 2, 3]  # none lost, none twice
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in ran)
    assert len({t.user_attrs["run"] for t in ran}) == 4
    assert len({tuple(sorted(t.params.items())) for t in ran}) == 4  # no draw repeated
    folders = sorted(p.name for p in (tmp_path / "runs" / "tune-shared").iterdir())
    assert folders == ["trial-0000", "trial-0001", "trial-0002", "trial-0003"]
    record = json.loads((tmp_path / "runs/tune-shared/trial-0002/trial.json").read_text())
    assert record["study"] == "shared" and record["trial"] == 2
    best = json.loads((tmp_path / "runs" / "tune" / "shared" / "best.json").read_text())
    assert best["complete"] + best["pruned"] == 4 and best["best"]["run"]
    assert (tmp_path / "runs" / "tune" / "shared" / "history.png").stat().st_size > 1000
    assert any("best: trial" in out for out, _ in outputs)


def test_a_trial_worse_than_the_pruner_allows_stops_early(tiny_synth: Path, tmp_path: Path):
    """A real Optuna pruner (threshold: any validation loss above 0 after the first epoch)
    stops the trial after its second epoch; its run folder stays, marked pruned."""
    import optuna

    study = Study("pruned", str(tmp_path / "journal.log"), tmp_path / "study")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = [f"data.path={tiny_synth}", *TINY, "train.max_epochs=5", "logger=[mlflow]",
            f"mlflow.tracking_uri={tracking}", f"runs_root={tmp_path / 'runs'}"]  # fmt: skip
    pruner = optuna.pruners.ThresholdPruner(upper=0.0, n_warmup_steps=1)
    opened = work(study, read_search("default"), base, 1, 0, None, pruner)
    (trial,) = opened.get_trials()
    assert trial.state.name == "PRUNED"
    assert sorted(trial.intermediate_values) == [0, 1]  # reported twice, stopped at once
    record = json.loads((tmp_path / "runs/tune-pruned/trial-0000/trial.json").read_text())
    assert record["pruned_at"] == 1
    summary = json.loads((tmp_path / "runs/tune-pruned/trial-0000/train_summary.json").read_text())
    assert summary["epochs"] <= 2
    from mlflow.tracking import MlflowClient  # the trial is a child of the study's run

    client = MlflowClient(tracking_uri=tracking)
    parent = opened.user_attrs["mlflow_parent_run"]
    (child,) = client.search_runs([client.get_run(parent).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent}'")  # fmt: skip
    assert child.data.tags["medclf.run_dir"].endswith("trial-0000")


def _verdicts(tmp_path: Path, epochs: int, steps: int) -> list[bool]:
    """The default pruner's verdicts on a third trial scoring far below two earlier ones."""
    study = Study(f"warm{epochs}", str(tmp_path / f"j{epochs}.log"), tmp_path / "study")
    opened = study.open(0, "max", epochs=epochs)
    for _ in range(2):  # the median rule starts with the third trial
        done = opened.ask()
        for epoch in range(epochs):
            done.report(0.9, step=epoch)
        opened.tell(done, 0.9)
    late = opened.ask()
    verdicts = []
    for epoch in range(steps):
        late.report(0.1, step=epoch)
        verdicts.append(late.should_prune())
    return verdicts


def test_the_default_pruner_waits_a_quarter_of_the_epochs(tmp_path: Path):
    """Median pruning spares a trial's first quarter of epochs (early epochs of a run from
    scratch say little), and at least its first epoch in short trials."""
    assert _verdicts(tmp_path, epochs=12, steps=4) == [False, False, False, True]
    assert _verdicts(tmp_path, epochs=3, steps=2) == [False, True]


def test_search_files_are_checked_before_any_trial(tmp_path: Path):
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text("params:\n  train.lrr: {type: float, low: 0.001, high: 0.1}\n")
    with pytest.raises(MedclfError, match=r"train\.lrr"):
        check_search(read_search(str(bad_key)), [])
    bad_value = tmp_path / "bad_value.yaml"
    bad_value.write_text("params:\n  train.optimizer: {type: categorical, choices: [adamw, x]}\n")
    with pytest.raises(MedclfError, match=r"train\.optimizer"):
        check_search(read_search(str(bad_value)), [])
    for text, message in [
        ("params:\n  train.lr: {type: float, low: 0.1, high: 0.01}\n", "low < high"),
        ("params:\n  train.lr: {type: float, low: 0, high: 0.1, log: true}\n", "low > 0"),
        ("params:\n  train.lr: {low: 0.1, high: 1}\n", "type:"),
        ("params: []\n", "mapping 'params'"),
    ]:
        path = tmp_path / "s.yaml"
        path.write_text(text)
        with pytest.raises(MedclfError, match=message):
            read_search(str(path))
    for preset in ("default", "augmentation", "architecture", "input_size", "broad"):
        check_search(read_search(preset), [])  # every packaged preset composes


def test_the_command_refuses_bad_words_in_one_line(tmp_path: Path):
    for words, message in [
        (["trials=0"], "trials=0"),
        (["trials=2", "search=nope"], "search=nope: no such preset"),
        (["trials=2", "study=a/b"], "study=a/b"),
        ([], "trials=N is required"),
        (["trials=2", "cv=3"], "cv=3: a tune trial is one run"),
    ]:
        proc = medclf("tune", "data.path=x", *words, cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr.startswith("error: "), proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_worker_that_saw_fewer_finished_trials_keeps_the_fuller_summary(tmp_path: Path):
    """Two workers share a study: the one that finished first must not overwrite best.json
    with its older view once the other has written the complete one."""
    import optuna

    from medclf.tune import summarize

    def add(opened, n: int) -> None:
        x = optuna.distributions.FloatDistribution(0, 10)
        for i in range(n):
            trial = optuna.trial.create_trial(
                params={"x": float(i)}, distributions={"x": x}, value=float(i),
                user_attrs={"run": f"r{i}"},
            )  # fmt: skip
            opened.add_trial(trial)

    study = Study("s", str(tmp_path / "journal.log"), tmp_path / "study")
    study.folder.mkdir(parents=True)
    best = study.folder / "best.json"
    best.write_text(json.dumps({"complete": 3, "pruned": 1, "failed": 0}))
    opened = optuna.create_study()
    add(opened, 2)
    assert summarize(study, opened)["complete"] == 2
    assert json.loads(best.read_text())["complete"] == 3  # the fuller one stays
    add(opened, 3)
    summarize(study, opened)
    assert json.loads(best.read_text())["complete"] == 5
