"""What an exported ONNX file carries, named once: the metadata keys export writes and every
ONNX load reads, the ``metadata.json`` written beside the file, and the graph digest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from medclf.errors import MedclfError

ONNX_META_PREPROCESSING = "medclf.preprocessing"
ONNX_META_DECISION = "medclf.decision"
ONNX_META_MODEL_NAME = "medclf.model_name"
ONNX_META_MODEL_VERSION = "medclf.model_version"
ONNX_META_GRAPH_SHA256 = "medclf.graph_sha256"
ONNX_META_RELEASE = "medclf.release"  # training data, test metrics and gates, versions, time
ONNX_META_QUANTIZATION = "medclf.quantization"  # only in an INT8 file: how it was quantized
ONNX_META_MEDCLF_VERSION = "medclf.version"
# what live traffic is compared with (monitoring.profile), when the weights were evaluated
ONNX_META_MONITOR_REFERENCE = "medclf.monitor_reference"
EXPORT_METADATA = "metadata.json"  # written beside model.onnx by export
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
# protobuf cannot serialize a single-file ONNX model of 2 GiB or more, and export writes one
# file: anything larger is not a medclf export, and is refused before it is read
MAX_ONNX_BYTES = 2 * 2**30


def graph_sha256(model: Any) -> str:
    """sha256 of an ONNX model's graph (every node and every weight), as serialized
    deterministically; metadata is outside the graph, so the digest can be embedded there."""
    return hashlib.sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()


def embed(model: Any, entries: dict[str, str]) -> str:
    """Replace the model's metadata with ``entries`` plus the sha256 of its graph, which every
    load verifies (a damaged or altered graph is refused); returns that digest."""
    del model.metadata_props[:]
    digest = graph_sha256(model)
    for key, value in {**entries, ONNX_META_GRAPH_SHA256: digest}.items():
        model.metadata_props.add(key=key, value=value)
    return digest


def verified_metadata(path: Path, data: bytes) -> dict[str, str]:
    """The medclf metadata of ONNX ``data`` read from ``path``, after checking that the graph
    and weights match the digest recorded at export (refused otherwise)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise MedclfError(f"model={path}: not a readable ONNX file ({exc})") from exc
    meta = {p.key: p.value for p in model.metadata_props}
    if ONNX_META_PREPROCESSING not in meta:
        raise MedclfError(
            f"model={path}: ONNX file has no medclf preprocessing metadata; "
            "export it with 'medclf export model=RUN'"
        )
    recorded = meta.get(ONNX_META_GRAPH_SHA256)
    if not recorded:
        raise MedclfError(
            f"model={path}: ONNX file carries no graph digest, so its weights cannot be "
            "verified; export it again with this medclf ('medclf export model=RUN')"
        )
    actual = graph_sha256(model)
    if actual != recorded:
        raise MedclfError(
            f"model={path}: the graph and weights do not match the digest recorded at export "
            f"({recorded[:12]}... vs {actual[:12]}...); the file was changed or damaged. "
            "Export it again with 'medclf export model=RUN'"
        )
    return meta


def recorded_file_sha256(onnx_path: Path) -> str | None:
    """The sha256 that ``metadata.json`` beside ``onnx_path`` records for that file (the fp32
    or the INT8 export), if any."""
    sidecar = onnx_path.with_name(EXPORT_METADATA)
    if not sidecar.is_file():
        return None
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        files = [meta.get("file") or {}, (meta.get("int8") or {}).get("file") or {}]
    except (ValueError, AttributeError, UnicodeDecodeError) as exc:
        raise MedclfError(f"{sidecar}: not readable JSON ({exc})") from exc
    for record in files:  # model.onnx, and model.int8.onnx when one was exported
        if isinstance(record, dict) and record.get("name") == onnx_path.name:
            return record.get("sha256") or None
    return None
