"""Find the samples of a dataset: a table of path, label, patient_id, split and metadata.

Supported layouts (``data.format``; ``auto`` detects them in this order):

1. ``manifest``: ``data.path`` is a CSV, or a folder holding ``manifest.csv``. Columns ``path``
   and ``label`` (other names via ``data.columns``), optional ``patient_id`` and ``split``;
   every other column (sex, age, site, ...) is kept as metadata for subgroup analysis. Paths
   are relative to the manifest's folder, or to ``data.image_root``.
2. ``npz``: a MedMNIST-style ``.npz`` (``train_images``/``train_labels``, ``val_*``,
   ``test_*``), or a folder holding exactly one.
3. ``folder``: a pre-split ImageFolder (``train/`` plus ``val/``, ``valid/`` or
   ``validation/`` and/or ``test/``, each with one folder per class), or one folder of class
   folders, or, with ``data.label_pattern`` (a regex with one group), a flat folder whose file
   names carry the label. A missing val or test split is carved out of train later.

Images are PNG/JPEG/TIFF/BMP and DICOM (``.dcm`` or extension-less with the DICM preamble).
A folder holding nothing but one sub-folder is read as that sub-folder (archives unpack so).
``data.patient_pattern`` (a regex with one group) takes each image's patient id from its file
name when no manifest or DICOM header gives one.

For DICOM rows without a patient id, the header's PatientID is used. Every patient id (a
manifest's too) is replaced by its keyed pseudonym (``medclf.data.pseudonym``) right here.
``data.class_map`` renames raw labels (e.g. ``{"0": normal, "1": pneumonia}``).

Class identity across splits: folder names are matched exactly, and a longer name is merged
into a shorter one when it extends it after a separator (``_``, ``-``, ``.`` or space) and the
two never occur in the same split. So ``adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib`` (train,
valid) and ``adenocarcinoma`` (test) are one class named ``adenocarcinoma``, while
``ground_glass`` is left alone because no split has a shorter name it extends.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from medclf.choices import FORMATS, NAME_ID_MODES
from medclf.data.dicom import dicom_patient_id, looks_like_dicom
from medclf.data.io import is_image_file, load_npz, npz_ref
from medclf.data.pseudonym import Pseudonymizer
from medclf.errors import MedclfError

log = logging.getLogger("medclf")

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


@dataclass(frozen=True)
class DiscoverOptions:
    """The ``data.*`` settings that decide how samples are found and labelled."""

    format: str = "auto"
    columns: Mapping[str, str] = field(default_factory=dict)
    image_root: str | None = None
    label_pattern: str | None = None
    class_map: Mapping[str, str] = field(default_factory=dict)
    patient_pattern: str | None = None  # regex, one group: the patient from each file name
    # (auto/none arrive here as None: a guess is not a patient id; see data.name_ids)
    pseudonym_key_file: str | None = None  # see medclf.data.pseudonym
    # manifest rows may name files outside the manifest's folder (or data.image_root)
    allow_outside_root: bool = False

    @classmethod
    def from_cfg(cls, data: Any) -> DiscoverOptions:
        """From the ``data`` config node (a DictConfig or a plain dict)."""
        image_root, pattern = data.get("image_root"), data.get("label_pattern")
        patient = data.get("patient_pattern")
        return cls(
            format=str(data.get("format") or "auto"),
            columns={str(k): str(v) for k, v in dict(data.get("columns") or {}).items() if v},
            image_root=str(image_root) if image_root else None,
            label_pattern=str(pattern) if pattern else None,
            class_map={str(k): str(v) for k, v in dict(data.get("class_map") or {}).items()},
            patient_pattern=None if patient in (None, *NAME_ID_MODES) else str(patient),
            pseudonym_key_file=str(data.get("pseudonym_key_file") or "") or None,
            allow_outside_root=bool(data.get("allow_outside_root", False)),
        )


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))


def _scan_class_tree(root: Path, split: str) -> list[tuple[str, str, str]]:
    """(path, folder name, split) for every image under ``root/<class>/``."""
    folders = _class_folders(root)
    if not folders:
        loose = [p for p in root.iterdir() if p.is_file() and is_image_file(p)]
        hint = (
            " (images must sit in one sub-folder per class, or set data.label_pattern to a "
            "regex that reads the label from the file name)"
            if loose
            else ""
        )
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


def _one_group_regex(key: str, pattern: str, example: str) -> re.Pattern[str]:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise MedclfError(f"data.{key}={pattern!r} is not a valid regex ({exc})") from exc
    if regex.groups < 1:
        raise MedclfError(
            f"data.{key}={pattern!r} needs one capture group around the value, e.g. {example!r}"
        )
    return regex


def _patients_from_names(df: pd.DataFrame, pattern: str) -> pd.DataFrame:
    """``data.patient_pattern``: the patient id of each row without one, from its file name
    (e.g. ``^(person\\d+)_`` for ``person1000_virus_1681.jpeg``)."""
    regex = _one_group_regex("patient_pattern", pattern, "^(person\\d+)_")
    missing = df["patient_id"].fillna("").astype(str).str.strip().eq("")
    names = df.loc[missing, "path"].map(lambda p: Path(str(p).split("::")[0]).name)
    found = names.map(lambda n: (m := regex.search(n)) and m.group(1))
    unmatched = names[found.isna() | found.eq("")]
    if len(unmatched):
        raise MedclfError(
            f"{len(unmatched)} file name(s) do not match data.patient_pattern={pattern!r} "
            f"(e.g. {unmatched.iloc[0]}); widen the pattern, e.g. '^([^_]+)_'"
        )
    df.loc[missing, "patient_id"] = found
    return df


def _from_pattern(root: Path, pattern: str) -> pd.DataFrame:
    regex = _one_group_regex("label_pattern", pattern, "CONTRAST_(\\d)")
    rows, unmatched = [], []
    for p in _images_in(root):
        m = regex.search(p.name)
        if m:
            rows.append((str(p.resolve()), m.group(1), ""))
        else:
            unmatched.append(p.name)
    if unmatched:
        raise MedclfError(
            f"{root}: {len(unmatched)} file name(s) do not match data.label_pattern={pattern!r} "
            f"(e.g. {unmatched[0]}); fix the pattern or move those files"
        )
    if not rows:
        raise MedclfError(f"{root}: no images found for data.label_pattern")
    df = pd.DataFrame(rows, columns=["path", "label", "split"])
    df["patient_id"] = ""
    return df[COLUMNS]


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


def _from_manifest(manifest: Path, opts: DiscoverOptions) -> pd.DataFrame:
    try:
        df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise MedclfError(f"{manifest}: cannot parse CSV manifest ({exc})") from exc
    unknown = sorted(set(opts.columns) - set(COLUMNS))
    if unknown:
        raise MedclfError(f"data.columns: unknown key(s) {unknown}; use {', '.join(COLUMNS)}")
    renames = {src: dst for dst, src in opts.columns.items() if src != dst}
    absent = sorted(set(renames) - set(df.columns))
    if absent:
        raise MedclfError(
            f"{manifest}: column(s) {absent} named in data.columns are not in the manifest "
            f"(columns: {', '.join(df.columns)})"
        )
    df = df.drop(columns=[c for c in renames.values() if c in df.columns]).rename(columns=renames)
    missing = {"path", "label"} - set(df.columns)
    if missing:
        raise MedclfError(
            f"{manifest}: manifest needs columns path,label (missing: {', '.join(sorted(missing))}"
            "); map other names with data.columns.path=COL data.columns.label=COL"
        )
    if df.empty:
        raise MedclfError(f"{manifest}: manifest has no rows")
    base = Path(opts.image_root).expanduser() if opts.image_root else manifest.parent
    df["path"] = _inside_root(manifest, base, df["path"].tolist(), opts.allow_outside_root)
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
    extras = [
        c for c in df.columns if c not in COLUMNS and c.strip() and not c.startswith("Unnamed")
    ]
    return df[COLUMNS + extras].copy()


def _inside_root(manifest: Path, base: Path, paths: list[str], allowed: bool) -> list[str]:
    """Each row's path resolved (symlinks too) against ``base``; a manifest from someone else
    must not reach ``../../etc/passwd``, ``/etc/shadow`` or ``/proc/self/environ``: a path
    outside ``base`` is refused naming its row, before any file is opened, unless
    ``data.allow_outside_root=true``."""
    root = base.resolve()
    out = []
    for row, raw in enumerate(paths, start=2):  # line 1 is the header
        resolved = (base / raw).resolve()
        if not allowed and not resolved.is_relative_to(root):
            raise MedclfError(
                f"{manifest}: row {row}: path {raw!r} resolves outside {root} ({resolved}); "
                "keep images under the manifest's folder or data.image_root, or set "
                "data.allow_outside_root=true if that is intended"
            )
        out.append(str(resolved))
    return out


def _from_npz(npz: Path) -> pd.DataFrame:
    arrays = load_npz(npz)
    rows = []
    for key in arrays:
        if not key.endswith("_images"):
            continue
        prefix = key[: -len("_images")]
        split = SPLIT_ALIASES.get(prefix.lower())
        labels_key = f"{prefix}_labels"
        if split is None or labels_key not in arrays:
            continue
        images, labels = arrays[key], arrays[labels_key].reshape(len(arrays[key]), -1)
        if labels.shape[1] != 1:
            raise MedclfError(
                f"{npz}: {labels_key} has {labels.shape[1]} columns (multi-label); medclf "
                "classifies one label per image"
            )
        rows += [(npz_ref(npz, key, i), str(int(labels[i, 0])), split) for i in range(len(images))]
    if not rows:
        raise MedclfError(
            f"{npz}: no <split>_images/<split>_labels arrays found (MedMNIST layout: "
            f"train_images, train_labels, val_*, test_*); keys: {', '.join(arrays)}"
        )
    df = pd.DataFrame(rows, columns=["path", "label", "split"])
    df["patient_id"] = ""
    return df[COLUMNS]


def _detect(root: Path, fmt: str) -> tuple[str, Path]:
    if fmt not in FORMATS:
        raise MedclfError(f"data.format={fmt!r} is not supported; use one of {', '.join(FORMATS)}")
    if root.is_file():
        suffix = root.suffix.lower()
        detected = {".csv": "manifest", ".npz": "npz"}.get(suffix)
        if detected is None or fmt not in ("auto", detected):
            raise MedclfError(
                f"data.path={root}: expected a folder, a CSV manifest or an .npz file"
                + (f" for data.format={fmt}" if fmt != "auto" else "")
            )
        return detected, root
    if fmt in ("auto", "manifest") and (root / MANIFEST_NAME).is_file():
        return "manifest", root / MANIFEST_NAME
    if fmt == "manifest":
        raise MedclfError(f"data.path={root}: no {MANIFEST_NAME} in this folder")
    npzs = sorted(root.glob("*.npz"))
    if fmt == "npz" or (fmt == "auto" and npzs and not _class_folders(root)):
        if len(npzs) != 1:
            raise MedclfError(
                f"data.path={root}: found {len(npzs)} .npz files; point data.path at one of them"
            )
        return "npz", npzs[0]
    return "folder", root


def _pseudonymize_patients(df: pd.DataFrame, key_file: str | None) -> pd.DataFrame:
    """Replace every patient id by its keyed pseudonym: a manifest's ids, and for DICOM rows
    without one, the header's PatientID. Nothing downstream ever sees a raw id."""
    keyed = Pseudonymizer(key_file)
    ids = df["patient_id"].fillna("").astype(str).str.strip()
    df["patient_id"] = [keyed(v) for v in ids]
    dicom = ids.eq("") & df["path"].map(lambda p: "::" not in p and looks_like_dicom(Path(p)))
    if dicom.any():
        df.loc[dicom, "patient_id"] = [
            dicom_patient_id(Path(p), keyed) for p in df.loc[dicom, "path"]
        ]
    return df


def _visible(folder: Path) -> list[Path]:
    # archive debris (macOS resource forks, dot files) is not part of the dataset
    return [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]


def descend_wrappers(root: Path, max_depth: int = 3) -> Path:
    """A folder that holds only one sub-folder (``chest_ct/`` -> ``chest_ct/Data/``, as
    archives unpack) stands for that sub-folder; says so once."""
    start = root
    for _ in range(max_depth):
        if not root.is_dir():
            break
        entries = _visible(root)
        if len(entries) != 1 or not entries[0].is_dir():
            break
        if entries[0].name.lower() in SPLIT_ALIASES:
            break  # a root holding only train/ is a split layout, not a wrapper
        inner = _visible(entries[0])
        if not any(p.is_dir() or p.name == MANIFEST_NAME or p.suffix == ".npz" for p in inner):
            break  # one folder of images is a (single) class folder, not a wrapper
        root = entries[0]
    if root != start:
        log.info("data.path=%s holds only %s; reading the dataset from there", start, root)
    return root


def discover(path: str | Path | None, options: DiscoverOptions | None = None) -> pd.DataFrame:
    """The sample table for ``data.path``; raises MedclfError with what to fix."""
    opts = options or DiscoverOptions()
    if path is None or str(path).strip() in ("", "None", "null"):
        raise MedclfError("data.path is not set; pass data.path=FOLDER (or run 'medclf demo')")
    root = Path(path).expanduser()
    if not root.exists():
        raise MedclfError(f"data.path={path}: no such file or folder")
    if not (root.is_dir() or root.is_file()):  # a device, a socket, a pipe
        raise MedclfError(
            f"data.path={path}: not a folder or a regular file; give a folder of images, "
            "a CSV manifest or an .npz"
        )
    if root.is_dir() and not any(root.iterdir()):
        raise MedclfError(f"data.path={path}: folder is empty")
    root = descend_wrappers(root)
    fmt, target = _detect(root, opts.format)
    if fmt == "manifest":
        df = _from_manifest(target, opts)
    elif fmt == "npz":
        df = _from_npz(target)
    elif opts.label_pattern:
        df = _from_pattern(target, opts.label_pattern)
    else:
        df = _from_folders(target)
    if opts.class_map:
        df["label"] = df["label"].map(lambda v: opts.class_map.get(v, v))
    if opts.patient_pattern:
        df = _patients_from_names(df, opts.patient_pattern)
    df = _pseudonymize_patients(df, opts.pseudonym_key_file)
    classes = sorted(df["label"].unique())
    if len(classes) < 2:
        raise MedclfError(
            f"data.path={path}: found only one class ({classes[0]}); "
            "a classifier needs at least two class folders"
        )
    return df.reset_index(drop=True)


def image_files(items: list[str]) -> list[Path]:
    """Image files named, and the image files under folders named (sorted, recursive): what
    ``predict`` and ``monitor`` take."""
    paths: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and is_image_file(q))
            if not found:
                raise MedclfError(f"{p}: folder contains no images")
            paths += found
        elif p.exists():
            paths.append(p)
        else:
            raise MedclfError(f"{p}: no such file or folder")
    return paths
