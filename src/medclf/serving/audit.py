"""The audit log: one row per answered prediction, durable before the answer is sent.

A row holds the request id, time, route, the input's sha256, the model's name, version and
registered version, the probabilities and decision, the latency, and the client's study id
(``X-Study-ID``) as a keyed pseudonym (``data.pseudonym``: HMAC under the project's key), never
the id itself, pixels, file names or DICOM patient fields. Any SQLAlchemy URL
(``serve.audit_url``; PostgreSQL for several servers); the default is a SQLite file in WAL
mode with ``synchronous=FULL``, so a committed row survives a killed process and a power cut.

Rows are group-committed: requests that finish together share one transaction (one fsync),
and each request awaits the commit of its rows before it answers. A request whose rows cannot
be written is answered 503: the service never gives an answer it did not record.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
)

from medclf.errors import MedclfError
from medclf.serving.worker import ThreadWorker

SCHEMA = MetaData()
PREDICTIONS = Table(
    "predictions",
    SCHEMA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("at", String(32), nullable=False, index=True),  # ISO 8601 UTC, sortable
    Column("route", String(64), nullable=False),
    Column("item", Integer, nullable=False),  # the file's place in a batch request
    Column("input_sha256", String(64), nullable=False, index=True),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("registered_name", String(200)),
    Column("registered_version", String(32)),
    Column("probabilities", Text, nullable=False),  # JSON {class: p}
    Column("predicted_class", String(200), nullable=False),
    Column("decision_label", String(200)),
    Column("refer", Boolean),
    Column("decision", Text, nullable=False),  # JSON, the whole decision record
    Column("latency_ms", Float, nullable=False),
    Column("study", String(32)),  # keyed pseudonym of X-Study-ID
    # JSON list: the image's intensity features (monitoring.features), for input drift; null
    # for a raw tensor (/v2) and in rows written before medclf recorded them
    Column("features", Text),
    # the model's monitoring embedding (medclf.embedding: 32 float32, base64), for MMD
    # drift; null for a model exported without one and in older rows
    Column("embedding", Text),
)
# columns added after the first release: added to an existing table when it is opened
ADDED_COLUMNS = {"features": "TEXT", "embedding": "TEXT"}


@dataclass(frozen=True)
class AuditRow:
    request_id: str
    route: str
    item: int
    input_sha256: str
    model_name: str
    model_version: str
    registered_name: str | None
    registered_version: str | None
    probabilities: str
    predicted_class: str
    decision_label: str | None
    refer: bool | None
    decision: str
    latency_ms: float
    study: str | None
    features: str | None = None
    embedding: str | None = None
    at: str = ""


def row_for(record: dict[str, Any], model: dict[str, Any], **fields: Any) -> AuditRow:
    """The row of one prediction record (``Predictor.describe``) of the model ``info()``."""
    registered = model.get("registered") or {}
    decision = record["decision"]
    return AuditRow(
        model_name=str(model["name"]),
        model_version=str(model["version"]),
        registered_name=registered.get("name"),
        registered_version=registered.get("version"),
        probabilities=json.dumps(record["probabilities"]),
        predicted_class=record["prediction"]["class"],
        decision_label=decision.get("label"),
        refer=decision.get("refer"),
        decision=json.dumps(decision, default=str),
        **fields,
    )


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def open_engine(url: str) -> Any:
    """An engine on ``url`` with the table created; a SQLite file's folder is created."""
    try:
        if url.startswith("sqlite:///"):
            folder = Path(url.removeprefix("sqlite:///")).expanduser().parent
            folder.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        SCHEMA.create_all(engine)
        _add_missing_columns(engine)
    except Exception as exc:  # OSError; SQLAlchemy's ArgumentError, OperationalError, ImportError
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise MedclfError(
            f"serve.audit_url={url}: the audit log cannot be opened ({first}); give a writable "
            "SQLAlchemy URL (sqlite:///runs/audit.db, postgresql://...) or serve.audit_url=null "
            "to serve without one"
        ) from None
    return engine


def _add_missing_columns(engine: Any) -> None:
    """An audit log written by an earlier medclf gains the columns added since (null in
    its old rows); nothing else about it changes."""
    from sqlalchemy import inspect, text

    present = {c["name"] for c in inspect(engine).get_columns(PREDICTIONS.name)}
    with engine.begin() as connection:
        for name, sql_type in ADDED_COLUMNS.items():
            if name not in present:
                connection.execute(
                    text(f"ALTER TABLE {PREDICTIONS.name} ADD COLUMN {name} {sql_type}")
                )


class AuditLog(ThreadWorker):
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = open_engine(url)
        self._pending: list[tuple[list[AuditRow], asyncio.Future]] = []
        self._wake: asyncio.Event | None = None
        super().__init__("medclf-audit")

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._launch(self._commit_loop())

    async def stop(self) -> None:
        await super().stop()
        self.engine.dispose()

    async def record(self, rows: list[AuditRow]) -> None:
        """Returns once ``rows`` are committed; raises if they could not be."""
        if not rows:
            return
        assert self._wake is not None, "AuditLog.start() was not awaited"
        future = asyncio.get_running_loop().create_future()
        self._pending.append((rows, future))
        self._wake.set()
        await future

    async def _commit_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            taken, self._pending = self._pending, []
            if not taken:
                continue
            rows = [row for group, _ in taken for row in group]
            try:
                await self.in_thread(self._write, rows)
            except Exception as exc:  # the database's own error, for each waiting request
                for _, future in taken:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in taken:
                if not future.done():
                    future.set_result(None)

    def _write(self, rows: list[AuditRow]) -> None:
        at = datetime.now(UTC).isoformat(timespec="microseconds")
        values = [{**asdict(r), "at": r.at or at} for r in rows]
        with self.engine.begin() as connection:
            connection.execute(insert(PREDICTIONS), values)


def since_time(text: str | None, now: datetime | None = None) -> str | None:
    """``--since``: an ISO date or time (UTC unless it says otherwise), or a duration back from
    now (``90m``, ``24h``, ``7d``), as the sortable text the ``at`` column holds."""
    from medclf.schema_kinds import parse_duration

    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        try:
            seconds = parse_duration(text.strip(), key="--since")
        except MedclfError:
            raise MedclfError(
                f"--since {text}: use a duration back from now (90m, 24h, 7d) or an ISO date "
                "or time (2026-12-01, 2026-12-01T08:00)"
            ) from None
        when = (now or datetime.now(UTC)) - timedelta(seconds=float(seconds or 0))
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def export(url: str, out: Path, fmt: str, since: str | None) -> int:
    """The rows at or after ``since`` (all: None) into ``out`` as CSV or Parquet, oldest
    first, in chunks (an audit log can outgrow memory); returns the row count. Written to a
    temporary file renamed at the end: an interrupted export leaves nothing."""
    import pandas as pd
    from sqlalchemy import select

    from medclf.atomic import atomic_path

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise MedclfError(f"serve.audit_url={url}: no audit log there (nothing served yet?)")
    engine = open_engine(url)
    query = select(PREDICTIONS).order_by(PREDICTIONS.c.at, PREDICTIONS.c.id)
    if since:
        query = query.where(PREDICTIONS.c.at >= since)
    rows, writer = 0, None
    try:
        with engine.connect() as connection, atomic_path(out) as tmp:
            for chunk in pd.read_sql(query, connection, chunksize=50_000):
                if fmt == "csv":
                    chunk.to_csv(tmp, mode="a", header=rows == 0, index=False)
                else:
                    writer = _parquet_chunk(writer, tmp, chunk)
                rows += len(chunk)
            if writer is not None:
                writer.close()
            elif rows == 0:
                empty = pd.DataFrame(columns=[c.name for c in PREDICTIONS.columns])
                _ = empty.to_csv(tmp, index=False) if fmt == "csv" else empty.to_parquet(tmp)
    finally:
        engine.dispose()
    return rows


def read_rows(url: str, since: str | None, model_version: str, most: int) -> list[dict[str, Any]]:
    """The rows of one model version at or after ``since``, oldest first: time,
    probabilities, refer, features, embedding, request id and input sha256 (what ``medclf monitor``
    compares, and what labels name); more than ``most``
    is refused (``monitor.max_images``) before they are held in memory."""
    from sqlalchemy import select

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise MedclfError(f"audit={url}: no audit log there (nothing served yet?)")
    engine = open_engine(url)
    names = ("at", "probabilities", "refer", "features", "embedding", "request_id", "input_sha256")
    columns = [PREDICTIONS.c[n] for n in names]
    query = (
        select(*columns)
        .where(PREDICTIONS.c.model_version == model_version)
        .order_by(PREDICTIONS.c.at, PREDICTIONS.c.id)
    )
    if since:
        query = query.where(PREDICTIONS.c.at >= since)
    try:
        with engine.connect() as connection:
            rows = [dict(r._mapping) for r in connection.execute(query.limit(most + 1))]
    finally:
        engine.dispose()
    if len(rows) > most:
        raise MedclfError(
            f"audit={url}: more than monitor.max_images={most} predictions of this model "
            "since then; narrow since= or raise the limit"
        )
    return rows


def _parquet_chunk(writer: Any, path: Path, chunk: Any) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(chunk, preserve_index=False)
    writer = writer or pq.ParquetWriter(path, table.schema)
    writer.write_table(table)
    return writer
