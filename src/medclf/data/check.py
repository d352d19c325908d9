"""The data check: what is in a dataset, and where it leaks.

Input is the split table (path, label, patient_id, split) joined with the file scan
(``medclf.data.scan``). Findings:

- counts per class per split, formats, PIL modes / DICOM photometrics, bit depths, size range;
- unreadable files (listed, and excluded from training; they take no part in the duplicate,
  leakage and patient findings below, since they are in no split);
- tiny images (a side under ``TINY_SIDE`` px), which are kept but warned about;
- exact duplicates (same content hash) within and across splits;
- near-duplicates across splits: pHash Hamming distance <= ``near_duplicate_distance`` bits
  of 256, to the image or to any of its flips and right-angle rotations (augmented releases
  copy those across splits); identical content is reported as exact, not again as near;
- label conflicts: identical content filed under two or more labels;
- patients in more than one split;
- class imbalance of the training split (largest / smallest class).

Leakage (anything shared across splits) and label conflicts fail the check: ``--strict``
exits non-zero, and ``data.strict=true`` makes ``medclf train`` refuse to start.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from medclf.data.discover import SPLITS
from medclf.data.io import TINY_SIDE
from medclf.data.name_ids import patient_coded_names
from medclf.data.shift import shift_lines, split_shift

CHECK_VERSION = 1
_MAX_LISTED = 200  # per finding in check.json; counts are always complete


def _file(row: dict[str, Any]) -> dict[str, str]:
    return {"path": row["path"], "split": row["split"], "label": row["label"]}


def _hash_words(hexes: Iterable[str]) -> np.ndarray:
    """Hex pHashes -> (N, words) uint64, for XOR + popcount distances."""
    return np.stack([np.frombuffer(bytes.fromhex(h), dtype=">u8") for h in hexes]).astype(np.uint64)


def near_duplicate_pairs(
    phash: pd.Series,
    split: pd.Series,
    sha: pd.Series,
    max_distance: int,
    across_splits_only: bool = True,
    orbit: pd.Series | None = None,
) -> list[tuple[int, int, int]]:
    """(i, j, distance) for images whose pHashes differ by at most ``max_distance`` bits and
    whose contents are not identical (those are exact duplicates), by default only pairs in
    different splits; sorted by (i, j). Multi-index hashing (``data.near_index``) where it
    prunes, every pair compared otherwise: the same pairs either way.

    With ``orbit`` (the scan's ``phash_orbit``), an image also pairs with a flipped or
    rotated copy of another: each image's pHash is compared with the other's eight dihedral
    views, and a pair's distance is the smallest over them."""
    from medclf.data.near_index import pairs_within, usable

    if max_distance < 0 or len(phash) < 2:
        return []
    idx = np.flatnonzero(phash.to_numpy() != "")
    if len(idx) < 2:
        return []
    hashes = _hash_words(phash.to_numpy()[idx])
    words, owner = _with_views(hashes, None if orbit is None else orbit.to_numpy()[idx])
    splits = split.to_numpy()[idx][owner]
    shas = sha.to_numpy()[idx][owner]
    if usable(words.shape[1] * 64, max_distance):
        a, b, dist = pairs_within(words, max_distance)
        keep = shas[a] != shas[b]
        if across_splits_only:
            keep &= splits[a] != splits[b]
        a, b, dist = a[keep], b[keep], dist[keep]
    else:
        found = _every_pair(
            words, np.arange(len(words)), splits, shas, max_distance, across_splits_only
        )
        a, b, dist = (np.array([p[k] for p in found], dtype=np.int64) for k in range(3))
    n = len(idx)
    # a view of one image against a view of the other repeats an image-against-view pair
    keep = (owner[a] != owner[b]) & ((a < n) | (b < n))
    first, second = np.minimum(owner[a], owner[b])[keep], np.maximum(owner[a], owner[b])[keep]
    closest: dict[tuple[int, int], int] = {}
    for i, j, d in zip(first.tolist(), second.tolist(), dist[keep].tolist(), strict=True):
        pair = (int(idx[i]), int(idx[j]))
        closest[pair] = min(int(d), closest.get(pair, 257))
    return [(i, j, d) for (i, j), d in sorted(closest.items())]


def _with_views(hashes: np.ndarray, orbit: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(rows to compare, the image each row belongs to): the pHashes, then each image's seven
    dihedral views (an image without them repeats its own hash, which pairs with nothing new)."""
    n = len(hashes)
    if orbit is None or not any(orbit):
        return hashes, np.arange(n)
    hex_len = hashes.shape[1] * 16
    views = [hashes]
    for k in range(7):
        part = [o[k * hex_len : (k + 1) * hex_len] if len(o) == 7 * hex_len else "" for o in orbit]
        view = hashes.copy()
        present = np.array([bool(h) for h in part])
        if present.any():
            view[present] = _hash_words([h for h in part if h])
        views.append(view)
    return np.concatenate(views), np.tile(np.arange(n), 8)


def _every_pair(
    hashes: np.ndarray,
    idx: np.ndarray,
    splits: np.ndarray,
    shas: np.ndarray,
    max_distance: int,
    across_splits_only: bool,
) -> list[tuple[int, int, int]]:
    """Brute force on 64-bit words, chunked: quadratic, for distances the index cannot prune."""
    pairs: list[tuple[int, int, int]] = []
    # First word only (a lower bound on the full distance) prunes nearly every pair; the
    # survivors get the full distance. Blocks keep each XOR matrix near 2e7 words.
    first = hashes[:, 0]
    chunk = max(1, min(4096, 20_000_000 // len(idx)))
    for start in range(0, len(idx), chunk):
        stop = min(start + chunk, len(idx))
        lower = np.bitwise_count(first[start:stop, None] ^ first[None, :])
        rows, cols = np.nonzero(lower <= max_distance)
        keep = (rows + start < cols) & (shas[rows + start] != shas[cols])
        if across_splits_only:
            keep &= splits[rows + start] != splits[cols]
        a, b = rows[keep] + start, cols[keep]
        dist = np.bitwise_count(hashes[a] ^ hashes[b]).sum(axis=-1)
        close = dist <= max_distance
        pairs += [
            (int(idx[i]), int(idx[j]), int(d))
            for i, j, d in zip(a[close], b[close], dist[close], strict=True)
        ]
    return pairs


def check_dataset(
    table: pd.DataFrame,
    scanned: pd.DataFrame,
    near_duplicate_distance: int,
    dataset: str = "",
    near_pairs: list[tuple[int, int, int]] | None = None,
    names_kept_together: bool = False,
) -> dict[str, Any]:
    """The check report as a JSON-ready dict (see the module docstring), one section per
    finding.

    ``near_pairs`` may carry the caller's near-duplicate pairs over the readable rows (in
    table order, any splits), so the O(N^2) search runs once per dataset.
    ``names_kept_together`` says that the splits made by the caller kept each guessed
    patient (``medclf.data.name_ids``) in one split."""
    df = _with_facts(table, scanned)
    # Excluded (unreadable) files take no part in duplicate, leakage or patient accounting:
    # they are in no split, and counting them would report leakage in a clean dataset.
    readable = df[df["error"] == ""]
    classes = sorted(df["label"].unique())
    splits = [s for s in SPLITS if s in set(df["split"])] or [""]
    exact, conflicts = _exact_duplicates(readable)
    near = _near_duplicates(readable, near_pairs, near_duplicate_distance)
    patients, leaked = _patients(readable, splits)
    leakage = bool(exact["groups_across_splits"] or near["pairs_across_splits"] or leaked)
    return {
        "version": CHECK_VERSION,
        "dataset": dataset,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": len(df),
        "readable": len(readable),
        "classes": classes,
        "counts": {
            (s or "all"): {c: int(((df["split"] == s) & (df["label"] == c)).sum()) for c in classes}
            for s in splits
        },
        "formats": _formats(readable),
        "unreadable": [
            {"path": r["path"], "split": r["split"], "label": r["label"], "reason": r["error"]}
            for r in df[df["error"] != ""].to_dict("records")
        ],
        "tiny_images": _tiny(readable),
        "exact_duplicates": exact,
        "near_duplicates": near,
        "label_conflicts": conflicts[:_MAX_LISTED],
        "label_conflict_count": len(conflicts),
        "patients": patients,
        "patient_coded_names": None if patients else _patient_coded(readable, names_kept_together),
        "patients_in_several_splits": leaked[:_MAX_LISTED],
        "patients_in_several_splits_count": len(leaked),
        "imbalance": _imbalance(readable, splits),
        "split_shift": split_shift(readable, near_pairs) if len(splits) > 1 else None,
        "leakage": leakage,
        "passed": not leakage and not conflicts,
    }


def _with_facts(table: pd.DataFrame, scanned: pd.DataFrame) -> pd.DataFrame:
    """The table with each file's scanned facts (hash, error, format, size, pHash, ...)."""
    df = table.reset_index(drop=True).copy()
    # A manifest may list one file twice (e.g. under two labels): facts are per path.
    facts = scanned.drop_duplicates("path").set_index("path")
    scan_cols = ("sha256", "error", "kind", "mode", "bits", "width", "height", "phash")
    scan_cols += ("phash_orbit",)
    for col in (*scan_cols, "intensity_mean", "intensity_std"):
        if col in facts:
            df[col] = df["path"].map(facts[col])
    return df


def _formats(readable: pd.DataFrame) -> dict[str, Any]:
    def span(col: str) -> list[int]:
        return [int(readable[col].min()), int(readable[col].max())] if len(readable) else []

    return {
        "kind": _tally(readable["kind"]),
        "mode": _tally(readable["mode"]),
        "bits": _tally(readable["bits"].astype(str)),
        "width": span("width"),
        "height": span("height"),
    }


def _tiny(readable: pd.DataFrame) -> dict[str, Any]:
    tiny = readable[(readable["width"] < TINY_SIDE) | (readable["height"] < TINY_SIDE)]
    return {
        "min_side": TINY_SIDE,
        "count": len(tiny),
        "files": [
            {**_file(r), "width": int(r["width"]), "height": int(r["height"])}
            for r in tiny.head(_MAX_LISTED).to_dict("records")
        ],
    }


def _exact_duplicates(readable: pd.DataFrame) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Groups of identical content within and across splits, and label conflicts (identical
    content under two or more labels)."""
    groups, conflicts = [], []
    within = across = 0
    for sha, g in readable[readable["sha256"] != ""].groupby("sha256", sort=True):
        if len(g) < 2:
            continue
        files = [_file(r) for r in g.to_dict("records")]
        n_splits = g["split"].nunique()
        across += n_splits > 1
        within += n_splits == 1
        groups.append({"sha256": sha, "across_splits": bool(n_splits > 1), "files": files})
        if g["label"].nunique() > 1:
            conflicts.append({"sha256": sha, "labels": sorted(g["label"].unique()), "files": files})
    section = {
        "groups_within_split": within,
        "groups_across_splits": across,
        "files_in_groups": sum(len(g["files"]) for g in groups),
        "groups": groups[:_MAX_LISTED],
    }
    return section, conflicts


def _near_duplicates(
    readable: pd.DataFrame, near_pairs: list[tuple[int, int, int]] | None, distance: int
) -> dict[str, Any]:
    """Near-duplicate pairs across splits, closest first."""
    rpos = readable.reset_index(drop=True)
    if near_pairs is None:
        orbit = rpos.get("phash_orbit")
        near_pairs = near_duplicate_pairs(
            rpos["phash"], rpos["split"], rpos["sha256"], distance, orbit=orbit
        )
    split_of, label_of = rpos["split"].to_numpy(), rpos["label"].to_numpy()
    near = sorted(
        ((i, j, d) for i, j, d in near_pairs if split_of[i] != split_of[j]), key=lambda t: t[2]
    )
    return {
        "max_distance": distance,
        "pairs_across_splits": len(near),
        "pairs_with_different_labels": sum(label_of[i] != label_of[j] for i, j, _ in near),
        "pairs": [  # only the listed pairs are materialized; the counts cover all
            {
                "a": _file(rpos.iloc[i].to_dict()),
                "b": _file(rpos.iloc[j].to_dict()),
                "distance": d,
                "same_label": bool(label_of[i] == label_of[j]),
            }
            for i, j, d in near[:_MAX_LISTED]
        ],
    }


def _patients(readable: pd.DataFrame, splits: list[str]) -> tuple[dict[str, int], list[dict]]:
    """(patients per split, patients found in more than one split); empty without ids."""
    with_pid = readable[readable["patient_id"] != ""]
    if with_pid.empty:
        return {}, []
    per_split = {
        (sp or "all"): int(with_pid.loc[with_pid["split"] == sp, "patient_id"].nunique())
        for sp in splits
    }
    if len(splits) < 2:
        return per_split, []
    spread = with_pid.groupby("patient_id")["split"].agg(lambda s: sorted(set(s)))
    leaked = [{"patient_id": pid, "splits": s} for pid, s in spread.items() if len(s) > 1]
    return per_split, leaked


def _imbalance(readable: pd.DataFrame, splits: list[str]) -> dict[str, Any]:
    """Largest / smallest class of the training split (of everything when unsplit)."""
    train = readable[readable["split"] == "train"] if "train" in splits else readable
    per_class = train["label"].value_counts()
    return {
        "split": "train" if "train" in splits else "all",
        "ratio": float(per_class.max() / max(per_class.min(), 1)) if len(per_class) else 0.0,
        "largest": str(per_class.idxmax()) if len(per_class) else "",
        "smallest": str(per_class.idxmin()) if len(per_class) else "",
    }


def _patient_coded(readable: pd.DataFrame, kept_together: bool) -> dict[str, Any] | None:
    """Names that look patient-coded, and how many guessed patients straddle splits."""
    coded = patient_coded_names(readable["path"], readable["split"])
    if coded is not None:
        coded["kept_together"] = kept_together
    return coded


def _tally(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.value_counts().sort_index().items()}


# Long on purpose: one sentence per finding, worst first; the order is the point.
def summary_lines(report: dict[str, Any]) -> list[str]:
    """The findings as short sentences, worst first; empty findings are said to be empty."""
    lines = []
    ex = report["exact_duplicates"]
    near = report["near_duplicates"]
    n_unreadable = len(report["unreadable"])
    if n_unreadable:
        first = report["unreadable"][0]["reason"]
        lines.append(f"unreadable files: {n_unreadable} (excluded from training); first: {first}")
    if ex["groups_across_splits"]:
        lines.append(
            f"LEAKAGE exact duplicates across splits: {ex['groups_across_splits']} group(s)"
        )
    if near["pairs_across_splits"]:
        lines.append(
            f"LEAKAGE near-duplicates across splits (pHash distance <= {near['max_distance']}, "
            "flipped and rotated copies included): "
            f"{near['pairs_across_splits']} pair(s)"
        )
    if report["patients_in_several_splits_count"]:
        lines.append(
            f"LEAKAGE patients in more than one split: {report['patients_in_several_splits_count']}"
        )
    if report["label_conflict_count"]:
        c = report["label_conflicts"][0]
        lines.append(
            f"LABEL CONFLICT identical content under different labels: "
            f"{report['label_conflict_count']} (e.g. {' vs '.join(c['labels'])}: "
            f"{c['files'][0]['path']})"
        )
    tiny = report.get("tiny_images", {})
    if tiny.get("count"):
        t = tiny["files"][0]
        lines.append(
            f"TINY images smaller than {tiny['min_side']} px: {tiny['count']} (predictions on "
            f"them are unreliable); e.g. {t['path']} ({t['width']}x{t['height']})"
        )
    lines += shift_lines(report.get("split_shift"))
    coded = report.get("patient_coded_names")
    if coded:
        done = "the splits made here keep each in one split; " if coded["kept_together"] else ""
        if coded["in_several_splits"]:
            done = f"{coded['in_several_splits']} of them occur in more than one split; " + done
        lines.append(
            f"PATIENTS? {coded['files']} file names share {coded['prefixes']} prefixes that look "
            f"like patient ids (e.g. {', '.join(coded['example_names'])}); {done}set "
            "data.patient_pattern (e.g. '^([^_-]+)[_-]') for exact patient ids"
        )
    if report.get("patients"):
        per = ", ".join(f"{s} {n}" for s, n in report["patients"].items())
        lines.append(f"patients per split: {per}")
    if ex["groups_within_split"]:
        lines.append(f"exact duplicates within a split: {ex['groups_within_split']} group(s)")
    imb = report["imbalance"]
    if imb["ratio"] == 1.0:
        lines.append(f"classes balanced ({imb['split']})")
    elif imb["ratio"]:
        lines.append(
            f"class imbalance ({imb['split']}): {imb['ratio']:.2f}:1 "
            f"({imb['largest']} / {imb['smallest']})"
        )
    if report["passed"]:
        lines.append("no leakage and no label conflicts found")
    return lines


def print_check(report: dict[str, Any]) -> None:
    """The report as one table (classes x splits) plus the findings, on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120, highlight=False)
    counts = report["counts"]
    console.print(f"{report['dataset']}: {report['files']} files, {report['readable']} readable")
    table = Table()
    table.add_column("class")
    for split in counts:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    for c in report["classes"]:
        row = [counts[s].get(c, 0) for s in counts]
        table.add_row(c, *map(str, row), str(sum(row)))
    totals = [sum(counts[s].values()) for s in counts]
    table.add_row("total", *map(str, totals), str(sum(totals)), style="bold")
    console.print(table)
    fmt = report["formats"]
    if fmt["width"]:
        sizes = f"{fmt['width'][0]}-{fmt['width'][1]} x {fmt['height'][0]}-{fmt['height'][1]} px"
        console.print(
            f"formats: {_inline(fmt['kind'])}; modes: {_inline(fmt['mode'])}; "
            f"bits: {_inline(fmt['bits'])}; sizes {sizes}"
        )
    for line in summary_lines(report):
        style = "bold red" if line.startswith(("LEAKAGE", "LABEL CONFLICT")) else None
        console.print(line, style=style)


def _inline(tally: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in tally.items())
