"""Keyed patient pseudonyms: HMAC-SHA256 of the patient id under a per-project secret.

A plain hash of a patient id is reversible by guessing: medical record numbers are short and
structured (``MRN12345`` falls to 12,346 guesses in a hundredth of a second). Keyed with a
secret that never leaves the project, the pseudonym is stable across runs (splits and
leakage checks need that) and useless to anyone without the key.

The key is, in order: the environment variable ``MEDCLF_PSEUDONYM_KEY`` (any string), or the
file ``data.pseudonym_key_file`` (default ``runs/pseudonym.key``, outside every run folder),
created once with 32 random bytes and mode 0600 the first time a patient id is seen.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

from medclf.errors import MedclfError

log = logging.getLogger("medclf")
KEY_ENV = "MEDCLF_PSEUDONYM_KEY"
DEFAULT_KEY_FILE = "runs/pseudonym.key"
PREFIX = "p"
DIGITS = 15  # 60 bits: no collision among a billion patients is expected


def _create_key_file(path: Path) -> None:
    """Write a new key atomically (temp file + hard link): two processes starting at once
    both end up with the one key that won."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)
            log.info("created the patient pseudonym key %s (mode 0600); keep it private", path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def load_key(key_file: str | os.PathLike[str] | None = None) -> bytes:
    """The project's pseudonym key (see module docstring); creates the key file if needed."""
    from_env = os.environ.get(KEY_ENV, "")
    if from_env:
        return from_env.encode("utf-8")
    path = Path(key_file or DEFAULT_KEY_FILE).expanduser()
    if not path.exists():
        try:
            _create_key_file(path)
        except OSError as exc:
            raise MedclfError(
                f"data.pseudonym_key_file={path}: cannot create the pseudonym key ({exc}); "
                f"point data.pseudonym_key_file at a writable place or set {KEY_ENV}"
            ) from exc
    try:
        mode = path.stat().st_mode
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise MedclfError(
            f"data.pseudonym_key_file={path}: cannot read the pseudonym key ({exc})"
        ) from exc
    if len(key) < 16:
        raise MedclfError(
            f"data.pseudonym_key_file={path}: key is too short (under 16 characters); delete "
            "the file to make a new one (pseudonyms then change) or restore the original"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s: pseudonym key is readable by others; run chmod 600 %s", path, path)
    return key.encode("ascii")


def pseudonym(patient_id: str, key: bytes) -> str:
    """The keyed pseudonym of one patient id: ``p`` + 15 hex digits of HMAC-SHA256."""
    digest = hmac.new(key, patient_id.strip().encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:DIGITS]


class Pseudonymizer:
    """Maps patient ids to pseudonyms, reading (or creating) the key only when first needed."""

    def __init__(self, key_file: str | os.PathLike[str] | None = None) -> None:
        self.key_file = key_file
        self._key: bytes | None = None

    def __call__(self, patient_id: str) -> str:
        raw = str(patient_id).strip()
        if not raw:
            return ""
        if self._key is None:
            self._key = load_key(self.key_file)
        return pseudonym(raw, self._key)
