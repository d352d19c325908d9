"""Repeated, side-by-side timings for the benchmarks: each side runs ``repeats`` times,
alternating with the other, and is reported as min and median, so one noisy run on a shared
2-core machine neither makes nor breaks a claim. Ratios are given for both statistics."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Timing:
    """Seconds (or any per-run measurement) of one side, one value per repeat."""

    values: list[float] = field(default_factory=list)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def text(self, unit: str = "s", digits: int = 2) -> str:
        return (
            f"min {self.min:.{digits}f} {unit}, median {self.median:.{digits}f} {unit} "
            f"({len(self.values)} runs)"
        )


def alternate(sides: dict[str, Callable[[], float | None]], repeats: int) -> dict[str, Timing]:
    """Run every side ``repeats`` times, in turn (a, b, a, b, ...). A side returns its own
    measurement, or None to be timed by the wall clock here."""
    timings = {name: Timing() for name in sides}
    for _ in range(repeats):
        for name, run in sides.items():
            start = time.perf_counter()
            measured = run()
            timings[name].values.append(
                time.perf_counter() - start if measured is None else float(measured)
            )
    return timings


def ratio_text(slow: Timing, fast: Timing, digits: int = 1) -> str:
    """slow / fast, by min and by median: 'x.x (min) / y.y (median)'."""
    by_min, by_median = slow.min / fast.min, slow.median / fast.median
    return f"{by_min:.{digits}f}x (min) / {by_median:.{digits}f}x (median)"
