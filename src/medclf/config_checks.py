"""Range and type checks of config values, in one table, run when a config is composed.

Hydra/OmegaConf check that a key exists; nothing checks that ``data.batch_size=0`` or
``eval.ci_level=2`` makes sense, and such values used to surface as tracebacks after work had
been done (a half-written run folder, inference over a whole test split). Every rule lives
here so a value is refused with one line before any file is read or written. (A typed config
schema is planned to take this table over; until then new value rules go here.)
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from medclf import choices
from medclf.errors import MedclfError
from medclf.geometry import RESIZE_MODES, TRIM_MODES
from medclf.tta import TTA_MODES

Check = Callable[[Any], bool]


@dataclass(frozen=True)
class Rule:
    check: Check
    expected: str  # completes "expected ..." in the error message
    nullable: bool = False
    options: tuple[str, ...] = ()  # an enumeration: the nearest one is suggested


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def integer(lo: int | None = None, hi: int | None = None, nullable: bool = False) -> Rule:
    def check(v: Any) -> bool:
        return _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi)

    bounds = " and ".join(
        b for b in (f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else "") if b
    )
    return Rule(check, f"an integer{' ' + bounds if bounds else ''}", nullable)


def number(
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    nullable: bool = False,
) -> Rule:
    def check(v: Any) -> bool:
        return (
            _is_number(v)
            and (gt is None or v > gt)
            and (ge is None or v >= ge)
            and (lt is None or v < lt)
        )

    parts = [f"> {gt}" if gt is not None else "", f">= {ge}" if ge is not None else ""]
    parts.append(f"< {lt}" if lt is not None else "")
    bounds = " and ".join(p for p in parts if p)
    return Rule(check, f"a number{' ' + bounds if bounds else ''}", nullable)


def choice(*options: Any, nullable: bool = False) -> Rule:
    """One of ``options``, compared as text (``train.precision=32`` arrives as an int)."""
    names = tuple(map(str, options))
    return Rule(
        lambda v: not isinstance(v, (dict, list)) and str(v) in names,
        "one of " + ", ".join(names),
        nullable,
        names,
    )


def _split_ratios(v: Any) -> bool:
    if not isinstance(v, Sequence) or isinstance(v, str) or len(v) != 3:
        return False
    if not all(_is_number(r) and 0 <= r <= 1 for r in v):
        return False
    return v[0] > 0 and abs(sum(v) - 1.0) <= 1e-6


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}


def parse_duration(value: Any) -> float | None:
    """``train.time_budget``: seconds from ``900``, ``"15m"``, ``"1.5h"``; None = no budget."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise MedclfError(
                f"train.time_budget={value}: use seconds (900) or a duration like 15m or 1.5h"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]
    if seconds <= 0:
        raise MedclfError(f"train.time_budget={value}: must be positive")
    return seconds


def _one_group_regex_or(*words: str) -> Rule:
    """A word from ``words`` or a regex with exactly one capture group."""

    def check(v: Any) -> bool:
        if not isinstance(v, str):
            return False
        if v in words:
            return True
        try:
            return re.compile(v).groups == 1
        except re.error:
            return False

    return Rule(check, f"one of {', '.join(words)}, or a regex with one group", True, words)


def _duration(v: Any) -> bool:
    try:
        return parse_duration(v) is not None
    except MedclfError:
        return False


RULES: dict[str, Rule] = {
    "recipe": choice("auto", "none"),
    "model.pretrained": Rule(lambda v: v in (True, False, "auto"), "true, false or auto"),
    "seed": integer(),
    "data.batch_size": integer(lo=1),
    "data.num_workers": integer(lo=0),
    "data.split_ratios": Rule(
        _split_ratios, "three fractions (train, val, test) that sum to 1, e.g. [0.7,0.15,0.15]"
    ),
    "data.split_seed": integer(),
    "data.image_size": integer(lo=8, nullable=True),
    "data.channels": choice(1, 3),
    "data.format": choice(*choices.FORMATS),
    "data.normalize": choice(*choices.NORMALIZE),
    "model.head": choice(*choices.HEADS, nullable=True),
    "data.resize": choice(*RESIZE_MODES),
    "data.trim": choice(*TRIM_MODES),
    "data.max_pixels": integer(lo=1),
    "data.min_images_per_class": integer(lo=1),
    "data.near_duplicate_distance": integer(lo=-1, hi=256),
    "data.patient_pattern": _one_group_regex_or(*choices.NAME_ID_MODES),
    "train.max_epochs": integer(lo=1),
    "train.min_epochs": integer(lo=1, nullable=True),
    "train.time_budget": Rule(_duration, "seconds (900) or a duration like 15m or 1.5h", True),
    "train.lr": number(gt=0),
    "train.optimizer": choice(*choices.OPTIMIZERS),
    "train.scheduler.name": choice(*choices.SCHEDULERS),
    "train.loss.name": choice(*choices.LOSSES),
    "train.sampler": choice(*choices.SAMPLERS, nullable=True),
    "train.profiler": choice(*choices.PROFILERS, nullable=True),
    "train.precision": choice(*choices.PRECISIONS),
    "train.monitor_mode": choice(*choices.MONITOR_MODES),
    "train.weight_decay": number(ge=0),
    "train.accumulate_grad_batches": integer(lo=1),
    "train.grad_clip": number(gt=0, nullable=True),
    "train.limit_train_batches": number(gt=0, nullable=True),
    "train.loss.label_smoothing": number(ge=0, lt=1),
    "train.ema.decay": number(gt=0, lt=1),
    "train.early_stopping.patience": integer(lo=0),
    "eval.n_bootstrap": integer(lo=0),
    "eval.ci_level": number(gt=0, lt=1),
    "eval.ci_method": choice("bca", "percentile", "basic"),
    "eval.calibration_bins": integer(lo=1),
    "eval.latency_runs": integer(lo=0),
    "eval.top_losses": integer(lo=0),
    "eval.gradcam_per_class": integer(lo=0),
    "eval.age_band_years": number(gt=0),
    "eval.gates_on": choice("point", "ci"),
    "eval.tta": choice(*TTA_MODES),
    "eval.conformal_alpha": number(gt=0, lt=1, nullable=True),
}


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def check_values(cfg: DictConfig, sections: Sequence[str] | None = None) -> None:
    """Raise MedclfError naming the first key whose value breaks its rule. ``sections``
    limits the check to keys under those top-level names (e.g. ``["eval"]``)."""
    for key, rule in RULES.items():
        if sections is not None and key.split(".", 1)[0] not in sections:
            continue
        value = _plain(OmegaConf.select(cfg, key, default="__absent__"))
        if isinstance(value, str) and value == "__absent__":
            continue
        if value is None and rule.nullable:
            continue
        if not rule.check(value):
            shown = "null" if value is None else value
            near = difflib.get_close_matches(str(value), rule.options, n=1, cutoff=0.5)
            raise MedclfError(
                f"{key}={shown} is not valid: expected {rule.expected}"
                + (" (or null)" if rule.nullable else "")
                + (f". Did you mean {near[0]}?" if near else "")
            )
    if (sections is None or "train" in sections) and "train" in cfg:
        from medclf.training.monitor import resolve_monitor

        resolve_monitor(str(cfg.train.monitor), str(cfg.train.monitor_mode))
