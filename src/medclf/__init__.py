"""medclf: from a folder of medical images to a validated, exported and served classifier.

The Python API (``medclf.api``), imported when first used so that ``import medclf`` stays
light::

    import medclf
    run = medclf.train(data="chest_ct/Data", model="resnet18")
    report = run.evaluate(split="test")
    preds = medclf.load(run.export()).predict(["scan.png"])
"""

from __future__ import annotations

from typing import Any

from medclf.version import __version__ as __version__

__all__ = [
    "Gate",
    "Gates",
    "Metric",
    "Metrics",
    "Model",
    "Prediction",
    "Registered",
    "Report",
    "Run",
    "evaluate",
    "export",
    "load",
    "register",
    "synth",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from medclf import api

        return getattr(api, name)
    raise AttributeError(f"module 'medclf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
