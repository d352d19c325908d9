"""How often ``medclf monitor`` raises an alert on new images of the training scanner (false
alarms), and how often it flags the same images at 85% contrast (power), over seeds.

Each seed draws a new set of phantoms from the generator the model was trained on (a
different seed: the same distribution, other patients) and a second set whose pixel values
are scaled by ``--contrast``; both go through the model and ``monitor.monitor.compare`` at
the default thresholds. Reported per alert kind and overall, with Clopper-Pearson 95%
intervals (the rates are estimates from ``--seeds`` draws).

    .venv/bin/python benchmarks/monitor_false_alarms.py model=RUN_OR_ONNX \\
        [--seeds 20] [--per-class 40] [--size 128] [--contrast 0.85]

On the demo model (``make demo``): --size 128, the size it was trained on.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.stats import binomtest

from medclf.config import compose
from medclf.data.synth import generate
from medclf.inference.predictor import load_predictor
from medclf.monitoring.monitor import compare, read_current, reference_of


def _kinds(alerts: list[str]) -> set[str]:
    """The alert's kind: 'input drift: mean' -> 'input drift', 'prediction drift: ...'."""
    return {a.split(":")[0] + (": embedding" if "embedding" in a else "") for a in alerts}


def _contrast(folder: Path, factor: float) -> None:
    for path in folder.rglob("*.png"):
        pixels = np.asarray(Image.open(path)).astype(np.float64) * factor
        Image.fromarray(np.round(pixels).astype(np.uint16)).save(path)


def alarms(
    model: str, seeds: int, per_class: int, size: int, contrast: float, first_seed: int = 1000
) -> dict[str, Any]:
    """Per seed, the alert kinds raised on an unshifted and on a contrast-shifted set."""
    predictor = load_predictor(model)
    reference = reference_of(predictor)
    settings = compose([]).monitor
    out: dict[str, Any] = {"same": [], "shifted": []}
    with tempfile.TemporaryDirectory(prefix="monitor-alarms-") as tmp:
        for seed in range(first_seed, first_seed + seeds):
            for name in ("same", "shifted"):
                folder = Path(tmp) / f"{name}-{seed}"
                generate(folder, per_class=per_class, size=size, seed=seed)
                if name == "shifted":
                    _contrast(folder, contrast)
                paths = sorted(folder.rglob("*.png"))
                result = compare(reference, read_current(predictor, paths, False), settings)
                out[name].append(_kinds(result["alerts"]))
    return out


def rate(hits: int, n: int) -> str:
    interval = binomtest(hits, n).proportion_ci(0.95, method="exact")
    return f"{hits}/{n} = {hits / n:.2f} [{interval.low:.2f}, {interval.high:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model=RUN or model=FILE.onnx (evaluated on its test split)")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--contrast", type=float, default=0.85)
    args = parser.parse_args()
    model = args.model.removeprefix("model=")
    found = alarms(model, args.seeds, args.per_class, args.size, args.contrast)
    images = 4 * args.per_class
    print(f"{args.seeds} seeds, {images} images a set, default monitor thresholds")
    labels = {"same": "false alarms (same scanner)", "shifted": f"flagged at {args.contrast:g}x"}
    for name, label in labels.items():
        runs = found[name]
        print(f"{label}: any alert {rate(sum(bool(k) for k in runs), len(runs))}")
        for kind in sorted(set().union(*runs)):
            print(f"  {kind}: {rate(sum(kind in k for k in runs), len(runs))}")


if __name__ == "__main__":
    main()
