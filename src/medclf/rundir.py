"""The run directory: the unit users pass around (``runs/<run_group>/<time>-<model>/``).

Every path inside a run is named here once, so train, evaluate, export, predict and serve
agree on the layout.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from medclf.atomic import sweep_stale
from medclf.errors import MedclfError


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def split(self) -> Path:
        return self.root / "split.csv"

    @property
    def preprocessing(self) -> Path:
        return self.root / "preprocessing.json"

    @property
    def calibration(self) -> Path:
        """Temperature and operating thresholds fitted on validation by ``medclf evaluate``."""
        return self.root / "calibration.json"

    @property
    def model_card(self) -> Path:
        return self.root / "model_card.md"

    @property
    def monitor_reference(self) -> Path:
        """What live traffic is compared with (``monitoring.profile``), written by the test
        evaluation of these weights and embedded in their export."""
        return self.root / "monitor_reference.json"

    @property
    def data_check(self) -> Path:
        return self.root / "data_check.json"

    @property
    def best_ckpt(self) -> Path:
        return self.root / "weights" / "best.ckpt"

    @property
    def last_ckpt(self) -> Path:
        return self.root / "weights" / "last.ckpt"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def summary(self) -> Path:
        """Written when training finished (a resume refuses a finished run)."""
        return self.root / "train_summary.json"

    @property
    def curves_png(self) -> Path:
        return self.root / "training_curves.png"

    @property
    def profile_dir(self) -> Path:
        return self.root / "profile"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    def eval_dir(self, name: str) -> Path:
        return self.root / "eval" / name

    @property
    def name(self) -> str:
        return self.root.name

    @classmethod
    def create(
        cls, runs_root: str | Path, run_group: str, model_name: str, name: str | None = None
    ) -> RunDir:
        """A new run folder: ``<time>-<model>``, or ``name`` (``run_name``) when given."""
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path(runs_root) / run_group
        base.mkdir(parents=True, exist_ok=True)
        if name:
            return cls._named(base / name)
        safe_model = model_name.replace("/", "_")
        for n in range(1000):
            candidate = base / (f"{stamp}-{safe_model}" + (f"-{n}" if n else ""))
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            return cls(candidate)
        raise MedclfError(f"could not create a new run folder under {base}")

    @classmethod
    def check_name_free(cls, root: Path) -> None:
        """A run folder of a fixed name (``run_name``) may be new or hold no training (what
        ``dvc repro`` leaves after removing the train stage's outputs, before training
        again); one that holds weights or a finished training is refused."""
        run = cls(root)
        trained = [p for p in (run.best_ckpt, run.last_ckpt, run.summary) if p.exists()]
        if trained:
            raise MedclfError(
                f"{root} already holds a trained run ({trained[0].name}); choose another "
                "run_name, or remove that folder to train it again"
            )

    @classmethod
    def _named(cls, root: Path) -> RunDir:
        cls.check_name_free(root)
        root.mkdir(exist_ok=True)
        return cls(root)

    @classmethod
    def open(cls, path: str | Path, need_weights: bool = True) -> RunDir:
        """An existing run; the error says what to run first when something is missing."""
        root = Path(path).expanduser()
        if not root.is_dir():
            raise MedclfError(f"{path}: no such run folder (run 'medclf train' first)")
        run = cls(root)
        sweep_stale(root)  # temporaries of commands killed on this run (kill -9)
        for required in (run.config, run.preprocessing):
            if not required.is_file():
                raise MedclfError(
                    f"{path}: missing {required.name}; this is not a complete medclf run "
                    "(pass the folder 'medclf train' printed)"
                )
        if need_weights and not run.best_ckpt.is_file():
            raise MedclfError(
                f"{path}: no weights/best.ckpt; the run did not finish an epoch. "
                "Train again with 'medclf train'"
            )
        return run
