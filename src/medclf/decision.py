"""The decision record: temperature and operating thresholds, shared by evaluate, predict,
serve and export the way ``Preprocessing`` is.

``medclf evaluate`` fits both on the validation split and saves ``calibration.json`` in the run
folder; ``export`` embeds it in the ONNX file. Probabilities everywhere are the calibrated
``softmax(logits / temperature)``. Thresholds apply to those probabilities one-vs-rest; the
``decision`` of a prediction is:

- ``flagged``: every class whose probability reaches its threshold;
- ``label``: the most probable flagged class. Binary tasks threshold the positive class only,
  so the label is the negative class when the positive one is not flagged. In a multiclass
  task the label is null when no class reaches its threshold: the image needs a reader.

Without a record (a run never evaluated) the temperature is 1 and the decision is the argmax.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medclf.atomic import write_json
from medclf.errors import MedclfError

RECORD_VERSION = 1


@dataclass(frozen=True)
class DecisionRecord:
    temperature: float = 1.0
    rule: str = "argmax"
    thresholds: dict[str, float] = field(default_factory=dict)
    positive_class: str | None = None  # binary tasks: the class the threshold is for
    fitted_on: dict[str, Any] = field(default_factory=dict)  # split, images, model version
    version: int = RECORD_VERSION

    def __post_init__(self) -> None:
        if not (self.temperature > 0 and np.isfinite(self.temperature)):
            raise MedclfError(f"calibration temperature must be > 0, got {self.temperature}")

    def decide(self, probs: np.ndarray, class_names: tuple[str, ...]) -> dict[str, Any]:
        """The decision for one image's calibrated probabilities."""
        order = np.argsort(probs)[::-1]
        if not self.thresholds:
            top = class_names[int(order[0])]
            return {"label": top, "flagged": [top], "rule": "argmax"}
        flagged = [
            class_names[i]
            for i in order
            if class_names[i] in self.thresholds and probs[i] >= self.thresholds[class_names[i]]
        ]
        if flagged:
            label: str | None = flagged[0]
        elif self.positive_class is not None and len(class_names) == 2:
            label = next(c for c in class_names if c != self.positive_class)
        else:
            label = None
        return {
            "label": label,
            "flagged": flagged,
            "rule": self.rule,
            "thresholds": dict(self.thresholds),
        }

    def check_classes(self, class_names: tuple[str, ...], source: str) -> None:
        unknown = sorted(set(self.thresholds) - set(class_names))
        if unknown:
            raise MedclfError(
                f"{source}: thresholds for {unknown}, which are not among the model's classes "
                f"{list(class_names)}; re-run 'medclf evaluate' to refit them"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecisionRecord:
        if int(d.get("version", 0)) > RECORD_VERSION:
            raise MedclfError("calibration record is newer than this medclf; upgrade medclf")
        try:
            return cls(
                temperature=float(d.get("temperature", 1.0)),
                rule=str(d.get("rule", "argmax")),
                thresholds={str(k): float(v) for k, v in (d.get("thresholds") or {}).items()},
                positive_class=d.get("positive_class"),
                fitted_on=dict(d.get("fitted_on") or {}),
                version=int(d.get("version", RECORD_VERSION)),
            )
        except (TypeError, ValueError) as exc:
            raise MedclfError(f"malformed calibration record: {exc}") from exc

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load_file(cls, path: Path) -> DecisionRecord:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise MedclfError(f"{path}: cannot read calibration record ({exc})") from exc
