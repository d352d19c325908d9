import hashlib
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from medclf.data.pseudonym import KEY_ENV, Pseudonymizer, load_key, pseudonym
from medclf.errors import MedclfError


@pytest.fixture
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


def test_pseudonym_is_keyed_not_a_plain_hash(no_env_key, tmp_path: Path):
    key = load_key(tmp_path / "pseudonym.key")
    value = pseudonym("MRN12345", key)
    assert value != "p" + hashlib.sha256(b"MRN12345").hexdigest()[:15]
    assert value.startswith("p") and len(value) == 16
    # guessing every MRN up to 12345 without the key finds nothing
    plain = {"p" + hashlib.sha256(f"MRN{i}".encode()).hexdigest()[:15] for i in range(12346)}
    assert value not in plain


def test_key_file_is_made_once_private_and_stable(no_env_key, tmp_path: Path):
    key_file = tmp_path / "runs" / "pseudonym.key"
    first = Pseudonymizer(key_file)("MRN12345")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == ["pseudonym.key"]  # no temp left
    # another process, same key file: same pseudonym (splits and leakage checks rely on it)
    code = (
        "from medclf.data.pseudonym import Pseudonymizer;"
        f"print(Pseudonymizer({str(key_file)!r})('MRN12345'))"
    )
    env_free = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert env_free.stdout.strip() == first
    assert Pseudonymizer(tmp_path / "other.key")("MRN12345") != first  # another project
    assert Pseudonymizer(key_file)("") == ""  # no id, no pseudonym, no key needed


def test_env_var_overrides_the_key_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv(KEY_ENV, "a-shared-secret-for-several-machines")
    value = Pseudonymizer(tmp_path / "never.key")("MRN12345")
    assert value == pseudonym("MRN12345", b"a-shared-secret-for-several-machines")
    assert not (tmp_path / "never.key").exists()


def test_a_damaged_key_file_is_a_clear_error(no_env_key, tmp_path: Path):
    (tmp_path / "k").write_text("short\n")
    with pytest.raises(MedclfError, match="key is too short"):
        load_key(tmp_path / "k")
