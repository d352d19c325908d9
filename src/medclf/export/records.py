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
