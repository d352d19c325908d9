"""Headless matplotlib, set up in one place for every figure medclf draws (evaluation reports,
training curves, monitoring reports, tuning plots): the Agg backend, chosen before pyplot is
first imported, so no figure ever needs a display."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (imported on first use: matplotlib is heavy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
