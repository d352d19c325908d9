"""Reading torch files that came from someone else, without running code from them.

A ``.ckpt``/``.pth`` file is a pickle: unpickled in full (``torch.load`` without the
weights-only guard) it can call any Python function (``os.system`` included) before the caller
sees a single tensor. Every torch
file medclf reads goes through ``load_torch_file``: ``weights_only=True`` (tensors, plain
containers and numbers only) and any refusal or damage becomes one ``MedclfError`` line.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path
from typing import Any

from medclf.errors import MedclfError


def load_torch_file(path: str | Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; ``what`` names the file's role
    in error messages (e.g. ``resume=RUN: weights/last.ckpt``)."""
    import torch

    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message spans many lines; its first names the refused global
        found = re.search(r"GLOBAL (\S+)", str(exc))
        detail = f"it asks for {found[1]}" if found else ""
        raise MedclfError(
            f"{what}: refused to load: the file holds Python objects other than tensors and "
            f"plain values{f' ({detail})' if detail else ''}, and loading them could run code. "
            "Use a file written by medclf (or a plain state dict), not one from an unknown source"
        ) from exc
    except (RuntimeError, OSError, EOFError, ValueError, MemoryError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedclfError(f"{what}: cannot read ({first}); it may be truncated") from exc


def file_sha256(path: str | Path) -> str:
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
