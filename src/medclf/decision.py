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
  A record without thresholds decides by argmax (what ``eval.decision=auto`` keeps when the
  thresholds did not beat argmax on cross-fitted validation).

With ``conformal`` set (``eval.conformal_alpha``), the decision also carries the
``prediction_set``: every class the split-conformal rule keeps (``medclf.conformal``); more
than one class means "refer": the model cannot narrow it down at the promised coverage.
``tta`` names the test-time augmentation the logits are averaged over (``medclf.tta``).

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

# 2: tta and conformal (an older medclf would ignore them and answer differently)
RECORD_VERSION = 2


@dataclass(frozen=True)
class DecisionRecord:
    temperature: float = 1.0
    rule: str = "argmax"
    thresholds: dict[str, float] = field(default_factory=dict)
    positive_class: str | None = None  # binary tasks: the class the threshold is for
    fitted_on: dict[str, Any] = field(default_factory=dict)  # split, images, model version
    tta: str = "none"
    conformal: dict[str, Any] = field(default_factory=dict)  # ConformalFit.to_dict()
    version: int = RECORD_VERSION

    def __post_init__(self) -> None:
        from medclf.tta import TTA_MODES

        if not (self.temperature > 0 and np.isfinite(self.temperature)):
            raise MedclfError(f"calibration temperature must be > 0, got {self.temperature}")
        if self.tta not in TTA_MODES:
            raise MedclfError(f"decision record: tta must be one of {', '.join(TTA_MODES)}")
        if self.conformal and not 0 <= float(self.conformal.get("qhat", -1)) <= 1:
            raise MedclfError("decision record: conformal qhat must be in [0, 1]")

    def prediction_set(self, probs: np.ndarray, class_names: tuple[str, ...]) -> list[str] | None:
        """The conformal set for one image, most probable first; None without a fit."""
        if not self.conformal:
            return None
        from medclf.conformal import set_mask

        mask = set_mask(probs, float(self.conformal["qhat"]))
        return [class_names[i] for i in np.argsort(probs)[::-1] if mask[i]]

    def decide(self, probs: np.ndarray, class_names: tuple[str, ...]) -> dict[str, Any]:
        """The decision for one image's calibrated probabilities."""
        out = self._thresholded(probs, class_names)
        pset = self.prediction_set(probs, class_names)
        if pset is not None:
            out["prediction_set"] = pset
            out["set_coverage"] = 1 - float(self.conformal["alpha"])
            out["refer"] = len(pset) > 1
        return out

    def _thresholded(self, probs: np.ndarray, class_names: tuple[str, ...]) -> dict[str, Any]:
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
                tta=str(d.get("tta", "none")),
                conformal=dict(d.get("conformal") or {}),
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
