"""Find the samples of a dataset: a table of path, label, patient_id and (if given) split.

Supported layouts, detected in this order:

1. ``data.path`` is a CSV manifest, or a folder holding ``manifest.csv``: columns ``path`` and
   ``label`` (paths relative to the manifest), optional ``patient_id`` and ``split``.
2. A pre-split ImageFolder: ``train/`` plus ``val/``, ``valid/`` or ``validation/`` and/or
   ``test/``, each holding one folder per class. A missing val or test split is carved out of
   train later (stratified, patient-grouped).
3. One folder of class folders, split later (70/15/15 by default).

Class identity across splits: folder names are matched exactly, and a longer name is merged
into a shorter one when it extends it after a separator (``_``, ``-``, ``.`` or space) and the
two never occur in the same split. So ``adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib`` (train,
valid) and ``adenocarcinoma`` (test) are one class named ``adenocarcinoma``, while
``ground_glass`` is left alone because no split has a shorter name it extends.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medclf.data.io import is_image_file
from medclf.errors import MedclfError

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
SPLITS = ("train", "val", "test")
MANIFEST_NAME = "manifest.csv"
_SEPARATORS = ("_", "-", ".", " ")
COLUMNS = ["path", "label", "patient_id", "split"]


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))


def _scan_class_tree(root: Path, split: str) -> list[tuple[str, str, str]]:
    """(path, folder name, split) for every image under ``root/<class>/``."""
    folders = _class_folders(root)
    if not folders:
        loose = [p for p in root.iterdir() if p.is_file() and is_image_file(p)]
        hint = " (images must sit in one sub-folder per class)" if loose else ""
        raise MedclfError(f"{root}: no class folders found{hint}")
    rows = []
    for folder in folders:
        images = _images_in(folder)
        if not images:
            raise MedclfError(
                f"{folder}: class folder has no images (.png/.jpg/.tif/...); "
                "add images or remove the folder"
            )
        rows += [(str(p.resolve()), folder.name, split) for p in images]
    return rows


def canonical_class_names(names_by_split: dict[str, set[str]]) -> dict[str, str]:
    """Map every folder name to its class name, following the rule in the module docstring."""
    all_names = sorted(set().union(*names_by_split.values()), key=lambda n: (len(n), n))
    together = {n: {s for s, names in names_by_split.items() if n in names} for n in all_names}
    mapping: dict[str, str] = {}
    for name in all_names:
        target = name
        for short in all_names:  # shortest first, so the shortest matching prefix wins
            if len(short) >= len(name):
                break
            extends = any(name.startswith(short + sep) for sep in _SEPARATORS)
            if extends and not (together[name] & together[short]):
                target = mapping.get(short, short)
                break
        mapping[name] = target
    return mapping


def _from_folders(root: Path) -> pd.DataFrame:
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    split_dirs = {SPLIT_ALIASES[k]: v for k, v in subdirs.items() if k in SPLIT_ALIASES}
    if "train" in split_dirs:
        rows = []
        for split, folder in sorted(split_dirs.items()):
            rows += _scan_class_tree(folder, split)
    elif split_dirs:
        found = ", ".join(sorted(p.name for p in split_dirs.values()))
        raise MedclfError(
            f"{root}: found split folder(s) {found} but no train/ folder; "
            "add train/ or point data.path at a folder of class folders"
        )
    else:
        rows = _scan_class_tree(root, "")
    df = pd.DataFrame(rows, columns=["path", "folder", "split"])
    by_split = {s: set(g["folder"]) for s, g in df.groupby("split")}
    mapping = canonical_class_names(by_split)
    df["label"] = df["folder"].map(mapping)
    df["patient_id"] = ""
    return df[COLUMNS]


def _from_manifest(manifest: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise MedclfError(f"{manifest}: cannot parse CSV manifest ({exc})") from exc
    missing = {"path", "label"} - set(df.columns)
    if missing:
        raise MedclfError(
            f"{manifest}: manifest needs columns path,label (missing: {', '.join(sorted(missing))})"
        )
    if df.empty:
        raise MedclfError(f"{manifest}: manifest has no rows")
    base = manifest.parent
    df["path"] = [str((base / p).resolve()) for p in df["path"]]
    absent = [p for p in df["path"] if not Path(p).is_file()]
    if absent:
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        raise MedclfError(f"{manifest}: listed file not found: {absent[0]}{more}")
    df["patient_id"] = df["patient_id"] if "patient_id" in df.columns else ""
    if "split" in df.columns:
        bad = sorted(set(df["split"].str.lower()) - set(SPLIT_ALIASES) - {""})
        if bad:
            raise MedclfError(
                f"{manifest}: unknown split value(s) {bad}; use train, val or test (or leave empty)"
            )
        df["split"] = df["split"].str.lower().map(lambda s: SPLIT_ALIASES.get(s, ""))
    else:
        df["split"] = ""
    return df[COLUMNS].copy()


def discover(path: str | Path | None) -> pd.DataFrame:
    """The sample table for ``data.path``; raises MedclfError with what to fix."""
    if path is None or str(path).strip() in ("", "None", "null"):
        raise MedclfError("data.path is not set; pass data.path=FOLDER (or run 'medclf demo')")
    root = Path(path).expanduser()
    if not root.exists():
        raise MedclfError(f"data.path={path}: no such file or folder")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise MedclfError(f"data.path={path}: expected a folder or a CSV manifest")
        df = _from_manifest(root)
    elif (root / MANIFEST_NAME).is_file():
        df = _from_manifest(root / MANIFEST_NAME)
    else:
        if not any(root.iterdir()):
            raise MedclfError(f"data.path={path}: folder is empty")
        df = _from_folders(root)
    classes = sorted(df["label"].unique())
    if len(classes) < 2:
        raise MedclfError(
            f"data.path={path}: found only one class ({classes[0]}); "
            "a classifier needs at least two class folders"
        )
    return df.reset_index(drop=True)
