"""Ordered grades: whether a task's classes are grades, and each class's grade.

Knee osteoarthritis (Kellgren-Lawrence 0-4), diabetic retinopathy (0-4) and tumour grades are
ordered: calling grade 1 a grade 0 is a smaller error than calling grade 4 a grade 0, which
accuracy and unweighted kappa cannot tell apart. For such tasks evaluation adds quadratic
weighted kappa and the mean absolute grade error (``evaluation.metrics``). ``data.ordinal``:
``true`` or ``false``, or ``auto``: ordered when there are at least three classes and every
class name is one integer with a shared prefix (``0``..``4``, ``KL0``..``KL4``,
``grade_1``..``grade_3``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from medclf.errors import MedclfError

ORDINAL_MODES = ("auto", True, False)
_GRADE = re.compile(r"^(\D*?)[ _\-]?(\d{1,6})$")


def _numbered(classes: Sequence[str]) -> list[int] | None:
    """Each name's integer when all names are ``PREFIX<integer>`` with one prefix."""
    matches = [_GRADE.match(str(c).strip()) for c in classes]
    if not all(matches) or len({m.group(1).lower() for m in matches}) != 1:
        return None
    values = [int(m.group(2)) for m in matches]
    return values if len(set(values)) == len(values) else None


def class_grades(classes: Sequence[str], setting: Any = "auto") -> tuple[float, ...] | None:
    """Each class's grade, aligned with ``classes``, or None for an unordered task. Named
    grades order by their integer; ``true`` on names without integers keeps the class order."""
    if setting is False or str(setting).lower() == "false":
        return None
    numbered = _numbered(classes)
    if setting is True or str(setting).lower() == "true":
        if len(classes) < 2:
            raise MedclfError("data.ordinal=true needs at least two classes")
        return tuple(float(v) for v in (numbered or range(len(classes))))
    if numbered is None or len(classes) < 3:
        return None
    return tuple(float(v) for v in numbered)
