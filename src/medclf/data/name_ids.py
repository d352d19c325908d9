"""Patient ids guessed from file names, for folders that carry no patient ids.

Public folders often name the patient at the start of each file name:
``person1000_bacteria_2931.jpeg`` and ``person1000_virus_1681.jpeg`` (one child, two
images), ``IM-0115-0001.jpeg``, ``00000001_000.png`` (NIH ChestX-ray14: patient, follow-up).
When medclf carves validation or test images out of such a folder, images of one patient
must not land on both sides, or validation scores the model on patients it trained on (one
chest X-ray set: validation accuracy 0.98, test 0.79).

The guess is deliberately narrow, because a wrong guess costs more than no guess: a prefix
that is really a word shared by a whole class (``NORMAL2-IM-0535-0001.jpeg``) would put that
class into one split. So an id is an optional word, an optional separator and a number,
followed by ``_`` or ``-`` (``person1000``, ``IM-0115``, ``00000001``); a prefix counts only
when at least two files share it and it is not an outlier among the shared prefixes (at most
``OUTLIER`` times their median size, and at least ``MIN_CAP``): a word on a thousand files among
ids on two or three each is not a patient. The guess is used only to keep groups together when
medclf makes splits (``data.patient_pattern=auto``); it is never a patient id for intervals or
reports, because it is a guess. ``data.patient_pattern=REGEX`` gives exact ids.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

_ID_PREFIX = re.compile(r"^([A-Za-z]*[_-]?\d+)[_-]")
OUTLIER = 10  # a shared prefix on more than 10x the median shared size is a word, not an id
MIN_CAP = 10
MIN_SHARED_PREFIXES = 2  # one shared prefix is a coincidence or a word
MIN_SHARE = 0.2  # of all files, in shared prefixes, before names count as patient-coded


def file_names(paths: pd.Series) -> pd.Series:
    """The file name of each path (a ``file.npz::key`` entry is named by its file)."""
    return paths.map(lambda p: Path(str(p).split("::")[0]).name)


def guessed_ids(paths: pd.Series) -> pd.Series:
    """A guessed patient id per path ("" where none), on the same index; all "" unless the
    names as a whole look patient-coded (see the module docstring)."""
    names = file_names(paths)
    prefixes = names.map(lambda n: ((m := _ID_PREFIX.match(n)) and m.group(1)) or "")
    sizes = prefixes[prefixes != ""].value_counts()
    shared = sizes[sizes > 1]
    if len(shared):
        cap = max(MIN_CAP, OUTLIER * float(shared.median()))
        shared = shared[shared <= cap]
    if len(shared) < MIN_SHARED_PREFIXES or shared.sum() < MIN_SHARE * len(names):
        return pd.Series("", index=paths.index)
    return prefixes.where(prefixes.isin(shared.index), "")


def patient_coded_names(paths: pd.Series, splits: pd.Series | None = None) -> dict[str, Any] | None:
    """What the data check says about patient-coded names: how many files share how many
    id-like prefixes, with an example, and (given each path's split) how many guessed
    patients occur in more than one split; None when names do not look patient-coded."""
    ids = guessed_ids(paths)
    coded = ids[ids != ""]
    if coded.empty:
        return None
    example = str(coded.value_counts().index[0])
    names = file_names(paths)
    spread = splits[coded.index].groupby(coded).nunique() if splits is not None else None
    return {
        "files": len(coded),
        "prefixes": int(coded.nunique()),
        "example": example,
        "example_names": sorted(names[coded.index[coded == example]].head(2)),
        "in_several_splits": int((spread > 1).sum()) if spread is not None else 0,
    }
