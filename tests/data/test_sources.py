"""kaggle: sources fail fast offline with instructions, and use kagglehub's cache when present."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from medclf.data.sources import resolve_source
from medclf.errors import MedclfError


@pytest.fixture
def offline_kaggle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    # A closed local port stands in for an unreachable Kaggle: no real network is touched.
    monkeypatch.setenv("KAGGLE_API_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    return tmp_path / "kagglehub"


def test_offline_download_fails_fast_with_manual_instructions(offline_kaggle: Path):
    start = time.perf_counter()
    with pytest.raises(MedclfError) as err:
        resolve_source("kaggle:mohamedhanyyy/chest-ctscan-images", None)
    assert time.perf_counter() - start < 5
    msg = str(err.value)
    assert "kaggle.com/datasets/mohamedhanyyy/chest-ctscan-images" in msg
    assert "data.path=" in msg


def test_a_copy_in_the_kagglehub_cache_is_used_without_network(offline_kaggle: Path):
    data = offline_kaggle / "datasets" / "owner" / "ds" / "versions"
    (data / "1" / "Data").mkdir(parents=True)
    (data / "3" / "Data").mkdir(parents=True)
    assert resolve_source("kaggle:owner/ds/Data", None) == str(data / "3" / "Data")
    with pytest.raises(MedclfError, match="'nope' not found"):
        resolve_source("kaggle:owner/ds/nope", None)


@pytest.mark.parametrize(
    ("source", "path", "needle"),
    [
        ("s3://bucket/x", None, "not supported"),
        ("kaggle:owner/ds", "/data", "not both"),
    ],
)
def test_bad_sources_are_explained(source, path, needle):
    with pytest.raises(MedclfError, match=needle):
        resolve_source(source, path)


def test_no_source_keeps_the_path():
    assert resolve_source(None, "/data/x") == "/data/x"
