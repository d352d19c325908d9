"""What an exported ONNX file carries, named once: the metadata keys export writes and every
ONNX load reads, the ``metadata.json`` written beside the file, and the graph digest."""

from __future__ import annotations

import hashlib
from typing import Any

ONNX_META_PREPROCESSING = "medclf.preprocessing"
ONNX_META_DECISION = "medclf.decision"
ONNX_META_MODEL_NAME = "medclf.model_name"
ONNX_META_MODEL_VERSION = "medclf.model_version"
ONNX_META_GRAPH_SHA256 = "medclf.graph_sha256"
EXPORT_METADATA = "metadata.json"  # written beside model.onnx by export


def graph_sha256(model: Any) -> str:
    """sha256 of an ONNX model's graph (every node and every weight), as serialized
    deterministically; metadata is outside the graph, so the digest can be embedded there."""
    return hashlib.sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()
