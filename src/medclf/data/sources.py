"""Remote dataset sources: ``data.source=kaggle:OWNER/DATASET[/SUBFOLDER]`` via kagglehub.

Online, kagglehub downloads (public datasets need no credentials; private ones read
``~/.kaggle/kaggle.json`` or KAGGLE_USERNAME/KAGGLE_KEY) into its cache and medclf trains from
there. A copy already in kagglehub's cache is used without touching the network. Offline, a
3-second reachability probe fails fast with manual download instructions instead of waiting
out kagglehub's retries.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from medclf.errors import MedclfError
from medclf.net import reachable

_KAGGLE = re.compile(r"^kaggle:(?P<owner>[\w.-]+)/(?P<dataset>[\w.-]+)(?:/(?P<sub>.+))?$")


def _cached_copy(owner: str, dataset: str) -> Path | None:
    from kagglehub.config import get_cache_folder

    versions = Path(get_cache_folder()) / "datasets" / owner / dataset / "versions"
    if not versions.is_dir():
        return None
    numbered = [p for p in versions.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(numbered, key=lambda p: int(p.name)) if numbered else None


def resolve_source(source: str | None, path: str | None) -> str | None:
    """The local ``data.path`` for ``data.source`` (or ``path`` unchanged when no source)."""
    if not source:
        return path
    if path:
        raise MedclfError(
            "set data.source or data.path, not both (a subfolder goes in the source: "
            "kaggle:OWNER/DATASET/SUBFOLDER)"
        )
    m = _KAGGLE.match(str(source).strip())
    if not m:
        raise MedclfError(
            f"data.source={source!r} is not supported; use kaggle:OWNER/DATASET[/SUBFOLDER] "
            "or leave it empty and set data.path"
        )
    owner, dataset, sub = m["owner"], m["dataset"], m["sub"]
    handle = f"{owner}/{dataset}"
    local = _cached_copy(owner, dataset)
    if local is None:
        from kagglehub.config import DEFAULT_KAGGLE_API_ENDPOINT

        endpoint = os.environ.get("KAGGLE_API_ENDPOINT", DEFAULT_KAGGLE_API_ENDPOINT)
        if not reachable(endpoint):
            raise MedclfError(
                f"data.source={source}: Kaggle ({endpoint}) is not reachable from this machine. "
                f"Download https://www.kaggle.com/datasets/{handle} by hand (or with "
                f"'kaggle datasets download {handle}' elsewhere), unzip it, and pass "
                "data.path=FOLDER instead of data.source"
            )
        import kagglehub

        try:
            local = Path(kagglehub.dataset_download(handle))
        except Exception as exc:  # kagglehub raises HTTP, auth and IO errors of many types
            raise MedclfError(
                f"data.source={source}: download failed ({exc}). For private datasets put your "
                "API token in ~/.kaggle/kaggle.json (or KAGGLE_USERNAME/KAGGLE_KEY); or "
                "download by hand and pass data.path=FOLDER"
            ) from exc
    target = local / sub if sub else local
    if not target.exists():
        raise MedclfError(f"data.source={source}: {sub!r} not found in the dataset at {local}")
    return str(target)
