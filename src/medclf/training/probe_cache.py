"""Step timings the recipe measured, remembered per kind of hardware.

The recipe sizes a run (input size, epochs, bf16 or not) from how long one optimizer step
takes. Timed afresh each run, the same data and budget got 64, 96 or 160 px on different hours
of one machine, as other work on it came and went. A step's time is a property of the
hardware, the model and the input shape, so it is measured once and kept in ``probe.json``
beside the decode cache (``data.cache_dir``); delete the file to measure again, for example
after a driver or BIOS change. The file is read as untrusted JSON: anything not a positive
finite number for a known key is ignored and measured again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("medclf")
FILE_NAME = "probe.json"
MAX_ENTRIES = 512  # bounded: each is one (hardware, model, shape, numerics) combination
MAX_BYTES = 1_000_000


class ProbeCache:
    """``step_seconds(key, measure)``: the remembered time for ``key``, else ``measure()``."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(str(folder)).expanduser() / FILE_NAME

    @staticmethod
    def digest(key: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]

    def _read(self) -> dict[str, float]:
        try:
            if self.path.stat().st_size > MAX_BYTES:
                return {}
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict):
            return {}
        return {
            k: float(v)
            for k, v in raw.items()
            if isinstance(k, str)
            and isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            and v > 0
        }

    def step_seconds(self, key: dict[str, Any], measure: Callable[[], float]) -> float:
        entries = self._read()
        name = self.digest(key)
        if name in entries:
            return entries[name]
        seconds = float(measure())
        entries[name] = seconds
        if len(entries) > MAX_ENTRIES:  # keep the newest: dicts keep insertion order
            entries = dict(list(entries.items())[-MAX_ENTRIES:])
        try:
            from medclf.atomic import write_json

            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, entries)
        except OSError as exc:  # a read-only cache folder only costs a probe next time
            log.debug("probe timings not saved to %s: %s", self.path, exc)
        return seconds
