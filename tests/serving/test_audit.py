"""audit export --since: durations back from now and ISO times, as the log's sortable text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from medclf.errors import MedclfError
from medclf.serving.audit import since_time

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", "2026-12-01T12:00:00.000000+00:00"),
        ("90m", "2026-12-02T10:30:00.000000+00:00"),
        ("7d", "2026-11-25T12:00:00.000000+00:00"),
        ("2026-12-01", "2026-12-01T00:00:00.000000+00:00"),
        ("2026-12-01T08:00+02:00", "2026-12-01T06:00:00.000000+00:00"),
    ],
)
def test_since_is_a_duration_back_from_now_or_an_iso_time(text: str, expected: str):
    assert since_time(text, NOW) == expected


def test_since_refuses_anything_else_naming_both_forms():
    with pytest.raises(MedclfError, match=r"duration back from now .* or an ISO date"):
        since_time("yesterday", NOW)
    assert since_time(None) is None
