"""How a key of the config schema is declared: a type with a range, a list of named choices,
or a check of its own, each carrying the words an error message and ``medclf config show
--keys`` use to say what the key accepts (``Expect``)."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from medclf.errors import MedclfError


@dataclass(frozen=True)
class Expect:
    """What a key accepts, in words ("an integer >= 1"), and the words a typo is matched
    against for "Did you mean ...?"."""

    text: str
    options: tuple[str, ...] = ()


def _as_text(value: Any) -> Any:
    """Choices compare as text: ``train.precision=32`` arrives from the command line as 32."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def choice(options: tuple[Any, ...]) -> Any:
    names = tuple(str(o) for o in options)
    if all(isinstance(o, str) for o in options):
        return Annotated[
            Literal[names], BeforeValidator(_as_text), Expect("one of " + ", ".join(names), names)
        ]
    return Annotated[Literal[options], Expect("one of " + ", ".join(names), names)]


def integer(lo: int | None = None, hi: int | None = None) -> Any:
    bounds = [f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else ""]
    text = " and ".join(b for b in bounds if b)
    return Annotated[int, Field(ge=lo, le=hi), Expect("an integer" + (f" {text}" if text else ""))]


def number(
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> Any:
    bounds = [
        f"{op} {v}" for op, v in ((">", gt), (">=", ge), ("<", lt), ("<=", le)) if v is not None
    ]
    text = " and ".join(bounds)
    return Annotated[
        float, Field(gt=gt, ge=ge, lt=lt, le=le), Expect("a number" + (f" {text}" if text else ""))
    ]


def checked(check: Callable[[Any], Any], text: str, options: tuple[str, ...] = ()) -> Any:
    """Any value that ``check`` accepts; ``check`` raises ValueError (or MedclfError) if not."""

    def run(value: Any) -> Any:
        try:
            check(value)
        except MedclfError as exc:
            raise ValueError(str(exc)) from None
        return value

    return Annotated[Any, AfterValidator(run), Expect(text, options)]


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}


def parse_duration(value: Any, key: str = "train.time_budget") -> float | None:
    """Seconds from ``900``, ``"15m"``, ``"1.5h"``, ``"7d"`` (``train.time_budget``, ``audit
    export --since``); None stays None (no budget); ``key`` names the setting in messages."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise MedclfError(f"{key}={value}: use seconds (900) or a duration like 15m or 1.5h")
        seconds = float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]
    if seconds <= 0:
        raise MedclfError(f"{key}={value}: must be positive")
    return seconds
