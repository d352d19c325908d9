"""The service's settings (``conf/serve/default.yaml``), read once when ``medclf serve``
composes its config: checked there by the schema, before the model is loaded."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from medclf.serving.limits import BodyLimits

API_KEY_ENV = "MEDCLF_API_KEY"


@dataclass(frozen=True)
class ServeSettings:
    """Every field comes from the config (the defaults live in the YAML file only)."""

    host: str
    port: int
    workers: int
    threads: int | None
    decode_threads: int
    max_batch: int
    max_wait_ms: float
    max_upload_mb: float
    max_files: int
    max_concurrent_uploads: int
    upload_wait_s: float
    body_timeout: float
    body_min_rate: float  # KiB/s
    api_key: str | None = field(repr=False)  # never printed
    cors_origins: tuple[str, ...]
    docs: bool
    audit_url: str | None  # None: no audit log
    pseudonym_key_file: str | None  # data.pseudonym_key_file: hashes study ids

    @classmethod
    def from_cfg(cls, cfg: Any) -> ServeSettings:
        """From the composed config's ``serve`` section (and the pseudonym key file of
        ``data``); the API key from it or from the environment."""
        serve = cfg.serve
        values = {k: serve[k] for k in cls.__dataclass_fields__ if k in serve}
        values["pseudonym_key_file"] = cfg.data.get("pseudonym_key_file")
        values["cors_origins"] = tuple(values.get("cors_origins") or ())
        values["api_key"] = values.get("api_key") or os.environ.get(API_KEY_ENV) or None
        return cls(**values)

    def to_json(self) -> str:
        """For the worker processes of ``serve.workers`` (handed over in their environment)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        values = json.loads(text)
        values["cors_origins"] = tuple(values.get("cors_origins") or ())
        return cls(**values)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    def body_limits(self) -> BodyLimits:
        return BodyLimits(self.max_upload_bytes, self.body_timeout, self.body_min_rate * 1024)

    def too_large(self) -> str:
        return (
            f"request body larger than serve.max_upload_mb ({self.max_upload_mb:g} MiB): send "
            "smaller files, or fewer per request"
        )

    def limits(self) -> dict[str, Any]:
        """The limits clients meet, for /metadata and the startup line."""
        return {
            "max_upload_mb": self.max_upload_mb,
            "max_files": self.max_files,
            "max_batch": self.max_batch,
            "max_wait_ms": self.max_wait_ms,
            "max_concurrent_uploads": self.max_concurrent_uploads,
            "body_timeout": self.body_timeout,
            "body_min_rate": self.body_min_rate,
        }
