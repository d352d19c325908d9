"""audit export --since: durations back from now and ISO times, as the log's sortable text."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
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


def test_an_audit_log_of_an_earlier_medclf_gains_the_added_columns(tmp_path):
    """Opened by this medclf, an old log keeps its rows (features and embedding null) and
    takes new ones; the monitor reads both, and says that the old rows recorded neither."""
    import json
    import sqlite3

    from medclf.monitoring.monitor import current_from_audit
    from medclf.serving.audit import PREDICTIONS, open_engine, read_rows

    db = tmp_path / "old.db"
    added = ("features", "embedding", "id")
    columns = [c.name for c in PREDICTIONS.columns if c.name not in added]
    with sqlite3.connect(db) as old:
        old.execute(
            "CREATE TABLE predictions (id INTEGER PRIMARY KEY, "
            + ", ".join(f"{c} TEXT" for c in columns)
            + ")"
        )
        values = {c: "x" for c in columns}
        values.update(at="2026-12-01T08:00:00+00:00", model_version="v1", refer=None,
                      probabilities=json.dumps({"a": 0.9, "b": 0.1}))  # fmt: skip
        marks = ", ".join("?" * len(values))
        old.execute(
            f"INSERT INTO predictions ({', '.join(values)}) VALUES ({marks})", list(values.values())
        )
    open_engine(f"sqlite:///{db}").dispose()
    with sqlite3.connect(db) as upgraded:
        names = [r[1] for r in upgraded.execute("PRAGMA table_info(predictions)")]
    assert {"features", "embedding"} <= set(names)
    rows = read_rows(f"sqlite:///{db}", None, "v1", most=10)
    assert len(rows) == 1 and rows[0]["features"] is None and rows[0]["embedding"] is None
    current = current_from_audit(rows, ("a", "b"))
    assert current.probabilities.tolist() == [[0.9, 0.1]]
    assert np.isnan(current.features).all() and np.isnan(current.embeddings).all()
    with pytest.raises(MedclfError, match=r"monitor\.max_images=0"):
        read_rows(f"sqlite:///{db}", None, "v1", most=0)
