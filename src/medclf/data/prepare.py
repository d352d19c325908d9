"""From ``data.*`` settings to a checked, split sample table: the shared front half of
``medclf train``, ``medclf data check|stats|cache``.

discover (or a saved split.csv) -> scan every file once (hash, decodability, facts) ->
exclude unreadable files with a warning -> split (patients and identical images grouped) ->
data check report. Nothing here imports torch, so bad input fails in about a second.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from medclf.atomic import sweep_stale
from medclf.data.cache import ImageCache, build_cache
from medclf.data.check import check_dataset, near_duplicate_pairs
from medclf.data.discover import DiscoverOptions, discover
from medclf.data.name_ids import guessed_ids
from medclf.data.scan import scan, update_memo
from medclf.data.sources import resolve_source
from medclf.data.split import (
    NAME_GROUP,
    NEAR_GROUP,
    check_splits,
    group_keys,
    load_split,
    make_splits,
    with_near_groups,
)
from medclf.errors import MedclfError
from medclf.preprocessing import Preprocessing

log = logging.getLogger("medclf")


@dataclass
class PreparedData:
    table: pd.DataFrame  # readable samples: path, sha256, label, patient_id, split, metadata
    scanned: pd.DataFrame  # one scan row per readable sample, aligned with ``table``
    report: dict[str, Any]  # the data check (check.json)
    dataset: str
    memo: Path | None = None
    fresh_scan: pd.DataFrame | None = None
    # near-duplicate clusters and guessed patients of ``table``'s rows (aligned with it),
    # which the split kept together; ``groups()`` joins them with patients and contents
    group_columns: pd.DataFrame | None = None

    def groups(self) -> pd.Series:
        """Each row's group (``split.group_keys``): what k-fold assignment keeps together.
        Computed when asked (only ``train cv=K`` asks), not by every command."""
        extra = self.group_columns if self.group_columns is not None else pd.DataFrame()
        return group_keys(pd.concat([self.table, extra], axis=1))

    def build_cache(
        self, cache_dir: str | Path, prep: Preprocessing, progress: bool = True
    ) -> tuple[ImageCache, bool]:
        """The decode-once cache of these (readable) samples; see ``medclf.data.cache``."""
        return build_cache(
            cache_dir,
            list(self.table["path"]),
            list(self.table["sha256"]),
            list(self.scanned["bits"]),
            prep,
            progress=progress,
        )

    def save_memo(self) -> None:
        """Remember this scan (see ``medclf.data.scan``) for the next command."""
        if self.memo is not None and self.fresh_scan is not None:
            update_memo(self.memo, self.fresh_scan)


def _with_name_groups(table: pd.DataFrame, mode: Any) -> tuple[pd.DataFrame, bool]:
    """``data.patient_pattern=auto``: label the patients guessed from file names so splits that
    medclf makes keep each in one split (see ``medclf.data.name_ids``). Only for tables without
    patient ids, and only where a split is made; True when that happened."""
    missing = {"train", "val", "test"} - set(table["split"])
    if mode != "auto" or not missing or table["patient_id"].astype(str).ne("").any():
        return table, False
    ids = guessed_ids(table["path"])
    return table.assign(**{NAME_GROUP: ids.to_numpy()}), bool(ids.ne("").any())


def prepare_data(data: Any, progress: bool = True, save_memo: bool = True) -> PreparedData:
    """Run the front half of the pipeline for the ``data`` config node: discover (or read a
    saved split) -> scan -> exclude unreadable files -> split -> check.

    ``save_memo=False`` defers writing the scan memo to ``PreparedData.save_memo()``, for
    callers (train) that must write nothing before they are sure to start."""
    split_file = data.split_file
    if split_file:
        table, dataset = load_split(split_file), str(split_file)
    else:
        path = resolve_source(data.source, data.path)
        table, dataset = discover(path, DiscoverOptions.from_cfg(data)), str(path)
    cache_dir = data.cache_dir
    memo = Path(str(cache_dir)).expanduser() / "scan.csv" if cache_dir else None
    if memo is not None:
        sweep_stale(memo.parent, recursive=False)  # memo/cache writes killed mid-way
    scanned = scan(
        list(table["path"]),
        data.window,
        memo=memo,
        progress=progress,
        max_pixels=data.max_pixels,
    )
    table = _with_hashes(table, scanned, split_file)
    bad = scanned["error"].ne("").to_numpy()
    readable = _readable(table, scanned, bad)
    near_distance = int(data.near_duplicate_distance)
    # All near-duplicate pairs, once: they group the split and feed the report.
    scanned_ok = scanned[~bad].reset_index(drop=True)
    near_pairs = near_duplicate_pairs(
        scanned_ok["phash"],
        readable["split"],
        readable["sha256"],
        near_distance,
        across_splits_only=False,
        orbit=scanned_ok["phash_orbit"],
    )
    readable, names_kept, group_columns = _split(data, readable, near_pairs, bool(split_file))
    if bad.any():
        log.warning(
            "%d unreadable file(s) excluded (listed in the data check); first: %s",
            int(bad.sum()),
            scanned.loc[bad, "error"].iloc[0],
        )
    report = check_dataset(
        pd.concat([readable, table[bad]], ignore_index=True),
        scanned,
        near_duplicate_distance=near_distance,
        dataset=dataset,
        near_pairs=near_pairs,
        names_kept_together=names_kept,
    )
    prepared = PreparedData(
        readable, scanned_ok, report, dataset, memo, fresh_scan=scanned, group_columns=group_columns
    )
    if save_memo:
        prepared.save_memo()
    return prepared


def _with_hashes(table: pd.DataFrame, scanned: pd.DataFrame, split_file: Any) -> pd.DataFrame:
    """The content hash of every row; a saved split must find every file unchanged."""
    if not split_file:
        return table.assign(sha256=scanned["sha256"].to_numpy())
    changed = table["sha256"].to_numpy() != scanned["sha256"].to_numpy()
    changed &= scanned["error"].eq("").to_numpy()
    if changed.any():
        first = table.loc[changed, "path"].iloc[0]
        raise MedclfError(
            f"data.split_file={split_file}: {int(changed.sum())} image(s) changed since the "
            f"split was made (e.g. {first}); the split cannot be reproduced exactly"
        )
    return table


def _readable(table: pd.DataFrame, scanned: pd.DataFrame, bad: Any) -> pd.DataFrame:
    """The rows whose file decodes (``prepare_data`` warns about the others once the split
    has succeeded); a class with no readable image at all is an error."""
    readable = table[~bad].reset_index(drop=True)
    lost = sorted(set(table["label"]) - set(readable["label"]))
    if lost:
        first = scanned.loc[bad & table["label"].eq(lost[0]).to_numpy(), "error"].iloc[0]
        raise MedclfError(
            f"class {lost[0]}: every image is unreadable, e.g. {first}; fix or remove them"
        )
    return readable


def _split(
    data: Any, readable: pd.DataFrame, near_pairs: list, saved: bool
) -> tuple[pd.DataFrame, bool, pd.DataFrame]:
    """The splits: a saved split is checked as it is; otherwise missing splits are made with
    patients, identical images, near-duplicate clusters and guessed patients kept together.
    Returns (table, whether guessed patients were kept together, the near-duplicate and
    guessed-patient group columns, aligned with the table)."""
    if saved:
        check_splits(readable, sorted(readable["label"].unique()))
        return readable, False, with_near_groups(readable, near_pairs)[[NEAR_GROUP]]
    grouped, names_kept = _with_name_groups(
        with_near_groups(readable, near_pairs), data.patient_pattern
    )
    table = make_splits(
        grouped,
        list(data.split_ratios),
        int(data.split_seed),
        min_per_class=int(data.min_images_per_class),
    )
    group_cols = [c for c in (NEAR_GROUP, NAME_GROUP) if c in table]
    return table.drop(columns=group_cols), names_kept, table[group_cols]


def provisional_preprocessing(data: Any, table: pd.DataFrame) -> Preprocessing:
    """The record for these settings and classes, before statistics exist (identity
    normalization); it validates image_size, channels and window before anything heavy."""
    channels = int(data.channels)
    return Preprocessing(
        image_size=int(data.image_size),
        channels=channels,
        class_names=tuple(sorted(table["label"].unique())),
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
        normalize=str(data.normalize),
        window=data.window,
        resize=str(data.resize),
        trim=str(data.trim),
        max_pixels=int(data.max_pixels),
    )
