"""Does ``medclf monitor``'s label-free accuracy estimate track the accuracy the model really
reaches, and is it marked invalid where it does not?

Per seed, a new set of phantoms from the generator the model was trained on (other patients)
goes through the model as it is and at ``--strengths`` contrast changes (pixel values scaled
by each factor). For each set: the monitor's estimate with its interval, whether it was
marked valid, and the realised accuracy against the phantoms' true labels (known here; what
``monitor labels=CSV`` measures). The estimate is only a claim where it is valid: what
matters is that valid estimates cover the realised accuracy, and that the invalid ones are
exactly those that would have reassured wrongly.

    .venv/bin/python benchmarks/label_free_estimate.py model=RUN_OR_ONNX \\
        [--seeds 5] [--per-class 30] [--size 128] [--strengths 1 0.95 0.9 0.85]

On the demo model (``make demo``): --size 128, the size it was trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from monitor_false_alarms import _contrast  # pixel values scaled: one copy

from medclf.config import compose
from medclf.data.synth import generate
from medclf.inference.predictor import load_predictor
from medclf.monitoring.monitor import compare, read_current, reference_of


def one_set(predictor: Any, reference: Any, folder: Path, settings: Any) -> dict[str, Any]:
    paths = sorted(folder.rglob("*.png"))
    current = read_current(predictor, paths, False)
    truth = np.array([list(predictor.class_names).index(p.parent.name) for p in paths])
    realised = float(np.mean(current.probabilities.argmax(axis=1) == truth))
    estimate = compare(reference, current, settings)["performance_estimate"]
    accuracy = estimate["accuracy"]
    return {
        "estimate": accuracy["value"],
        "low": accuracy["low"],
        "high": accuracy["high"],
        "valid": estimate["valid"],
        "realised": realised,
        "covered": accuracy["low"] <= realised <= accuracy["high"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model=RUN or model=FILE.onnx")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--strengths", type=float, nargs="+", default=[1.0, 0.95, 0.9, 0.85])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    predictor = load_predictor(args.model.removeprefix("model="))
    reference, settings = reference_of(predictor), compose([]).monitor
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="label-free-") as tmp:
        for seed in range(2000, 2000 + args.seeds):
            for factor in args.strengths:
                folder = Path(tmp) / f"{seed}-{factor:g}"
                generate(folder, per_class=args.per_class, size=args.size, seed=seed)
                if factor != 1.0:
                    _contrast(folder, factor)
                rows.append(
                    {
                        "seed": seed,
                        "contrast": factor,
                        **one_set(predictor, reference, folder, settings),
                    }
                )
    print(f"{args.seeds} seeds x {4 * args.per_class} images; contrast 1 = unshifted")
    print("contrast  realised  estimate [interval]      valid  covered")
    for factor in args.strengths:
        part = [r for r in rows if r["contrast"] == factor]
        for r in part:
            print(
                f"{factor:8g}  {r['realised']:8.3f}  {r['estimate']:.3f} [{r['low']:.3f}, "
                f"{r['high']:.3f}]  {r['valid']!s:5s}  {r['covered']}"
            )
    valid = [r for r in rows if r["valid"]]
    wrong = [r for r in valid if not r["covered"]]
    print(
        f"valid estimates: {len(valid)}/{len(rows)}; "
        f"valid but not covering the realised: {len(wrong)}"
    )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
