"""ONNX export: dynamic batch, preprocessing and classes embedded, parity-checked.

The graph takes the normalized NCHW input at the trained size and returns ``logits`` and
``probabilities`` (calibrated: ``softmax(logits / T)`` with the run's fitted temperature). The
preprocessing record (size, channels, normalization, class names) and the decision record
(temperature, operating thresholds) are embedded as ONNX metadata and written to
``metadata.json``, so a consumer needs nothing else.
The ONNX file only lands in ``export/`` after the parity check on real test images passes.
Integrity: the ONNX metadata carries the sha256 of the graph (nodes and weights) and
``metadata.json`` the sha256 of the file; every load verifies both and refuses a mismatch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medclf.atomic import atomic_path, dumps_json, write_json
from medclf.data.transform import model_input
from medclf.errors import MedclfError
from medclf.inference import records
from medclf.inference.predictor import OnnxPredictor, TorchPredictor
from medclf.inference.release import release_record
from medclf.rundir import RunDir
from medclf.version import __version__

log = logging.getLogger("medclf")
PARITY_TOLERANCE = 1e-4
PARITY_MAX_IMAGES = 64
OPSET = 18


@dataclass
class ExportResult:
    onnx_path: Path
    parity: dict[str, Any]
    int8: dict[str, Any] | None = None  # the INT8 file's comparison with this one, when made


def _parity_images(run: RunDir, limit: int) -> list[str]:
    table = pd.read_csv(run.split, dtype=str, keep_default_na=False)
    for split in ("test", "val", "train"):
        paths = table.loc[table["split"] == split, "path"].tolist()
        if paths:
            return paths[:limit]
    raise MedclfError(f"{run.root}: split.csv lists no images for the parity check")


def parity_report(reference: TorchPredictor, candidate: OnnxPredictor, paths: list[str]) -> dict:
    """Largest probability difference, calibrated and at temperature 1: a large fitted
    temperature flattens the calibrated probabilities and would hide a logit error."""
    from scipy.special import softmax

    inputs = [model_input(reference.prep, p) for p in paths]
    ref_logits = reference.logits_arrays(inputs).astype(np.float64)
    ref = softmax(ref_logits / reference.decision.temperature, axis=1)
    got = candidate.predict_arrays(inputs)
    ref_raw = softmax(ref_logits, axis=1)
    got_raw = softmax(candidate.logits_arrays(inputs).astype(np.float64), axis=1)
    # batch-1 path too: a dynamic-batch bug often shows only at one of the two
    single = np.concatenate([candidate.predict_batch(x[None]) for x in inputs[:4]])
    diff = float(
        max(
            np.abs(ref - got).max(),
            np.abs(ref_raw - got_raw).max(),
            np.abs(ref[: len(single)] - single).max(),
        )
    )
    embedding = _embedding_diff(reference, candidate, inputs)
    return {
        "images": len(paths),
        "max_abs_diff": diff,
        "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean()),
        "tolerance": PARITY_TOLERANCE,
        "embedding_max_rel_diff": embedding,
        "passed": diff <= PARITY_TOLERANCE and embedding <= PARITY_TOLERANCE,
    }


def _embedding_diff(reference: TorchPredictor, candidate: OnnxPredictor, inputs: list) -> float:
    """Largest difference of the monitoring embeddings, relative to the largest value: the
    monitor compares ONNX-served traffic with a reference the PyTorch model embedded."""
    ref = reference.embeddings_arrays(inputs)
    got = candidate.embeddings_arrays(inputs)
    if ref is None or got is None:
        raise MedclfError("the exported graph has no embedding output")
    return float(np.abs(ref - got).max() / max(1e-12, float(np.abs(ref).max())))


def export_onnx(
    run_dir: str | Path, quantize: str | None = None, settings: Any = None
) -> ExportResult:
    """trace the best checkpoint -> embed the records and the graph digest -> check parity on
    test images -> keep model.onnx only if it passed -> write metadata.json; with
    ``quantize="int8"``, then the INT8 file beside it (``medclf.export.int8``; ``settings`` is
    the config's ``export`` section)."""
    import onnx

    run = RunDir.open(run_dir)
    reference = TorchPredictor(run.root)
    out_dir = run.export_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / records.FP32_FILE
    release = release_record(run, reference.version)
    # The graph is saved into atomic_path's temp file and checked there: only a file that
    # passed parity is renamed to model.onnx; any exception discards it.
    with atomic_path(final) as tmp_onnx:
        proto = _traced(reference)
        proto.producer_name, proto.producer_version = "medclf", __version__
        entries = _entries(reference, release)
        graph_digest = records.embed(proto, entries)
        onnx.checker.check_model(proto)
        onnx.save_model(proto, tmp_onnx)
        candidate = OnnxPredictor(tmp_onnx)
        parity = parity_report(reference, candidate, _parity_images(run, PARITY_MAX_IMAGES))
        write_json(out_dir / "parity.json", parity)
        if not parity["passed"]:
            raise MedclfError(
                f"ONNX parity check failed: max |p_onnx - p_torch| = {parity['max_abs_diff']:.2e} "
                f"> {PARITY_TOLERANCE:.0e} on {parity['images']} images; model.onnx not written "
                f"(details in {out_dir / 'parity.json'})"
            )
    metadata = _metadata(reference, final, candidate, graph_digest)
    metadata["release"] = release
    (out_dir / records.INT8_FILE).unlink(missing_ok=True)  # it belonged to the previous file
    write_json(out_dir / records.EXPORT_METADATA, metadata)
    if quantize != "int8":
        return ExportResult(onnx_path=final, parity=parity)
    from medclf.export.int8 import export_int8

    int8 = export_int8(run, final, candidate, entries, settings)
    metadata["int8"] = int8["record"]
    write_json(out_dir / records.EXPORT_METADATA, metadata)
    return ExportResult(onnx_path=final, parity=parity, int8=int8["comparison"])


def _traced(reference: TorchPredictor) -> Any:
    """The model with its calibrated softmax and its monitoring embedding
    (``models.embedding``), exported by torch.onnx (dynamo) with a dynamic batch dimension;
    returns the ONNX ModelProto."""
    import torch

    from medclf.models.embedding import WithEmbedding

    class Exported(torch.nn.Module):
        def __init__(self, model: torch.nn.Module, temperature: float) -> None:
            super().__init__()
            self.model = model
            self.temperature = temperature

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            logits, embedding = self.model(x)
            return logits, torch.softmax(logits / self.temperature, dim=1), embedding

    prep = reference.prep
    network = WithEmbedding(reference.model, prep.input_shape)
    wrapped = Exported(network, reference.decision.temperature).eval()
    example = torch.zeros(2, *prep.input_shape)
    try:
        program = torch.onnx.export(
            wrapped,
            (example,),
            None,
            dynamo=True,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["logits", "probabilities", "embedding"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},),
            external_data=False,
            verbose=False,
        )
    except Exception as exc:  # the exporter raises many internal types
        raise MedclfError(
            f"ONNX export of '{reference.name}' failed: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''} (run with --debug for details)"
        ) from exc
    return program.model_proto


def _entries(reference: TorchPredictor, release: dict[str, Any]) -> dict[str, str]:
    """The metadata an exported file carries: the preprocessing and decision records, the
    model's name and version, the release record and, when these weights were evaluated on
    their test split, the monitoring reference."""
    entries = {
        records.ONNX_META_PREPROCESSING: dumps_json(reference.prep.to_dict(), indent=None),
        records.ONNX_META_DECISION: dumps_json(reference.decision.to_dict(), indent=None),
        records.ONNX_META_MODEL_NAME: reference.name,
        records.ONNX_META_MODEL_VERSION: reference.version,
        records.ONNX_META_MEDCLF_VERSION: __version__,
        records.ONNX_META_RELEASE: dumps_json(release, indent=None),
    }
    profile = _monitor_reference(reference.run)
    if profile is not None and profile.model_version == reference.version:
        entries[records.ONNX_META_MONITOR_REFERENCE] = dumps_json(profile.to_json(), indent=None)
    elif profile is not None:
        log.warning(
            "%s is of other weights (evaluate the run again): not embedded",
            reference.run.monitor_reference,
        )
    return entries


def _monitor_reference(run: RunDir) -> Any:
    from medclf.monitoring.profile import read_profile

    return read_profile(run.monitor_reference) if run.monitor_reference.is_file() else None


def _metadata(
    reference: TorchPredictor, final: Path, candidate: OnnxPredictor, graph_digest: str
) -> dict[str, Any]:
    """metadata.json beside the file: its inputs and outputs, records and digests."""
    prep = reference.prep
    return {
        "format": "onnx",
        "opset": OPSET,
        "inputs": [
            {
                "name": "input",
                "shape": ["batch", *prep.input_shape],
                "dtype": "float32",
            }
        ],
        "outputs": [
            {"name": "logits", "shape": ["batch", len(prep.class_names)]},
            {"name": "probabilities", "shape": ["batch", len(prep.class_names)]},
        ],
        "model": {"name": reference.name, "version": reference.version},
        # checked by load_predictor before the file is served
        "file": {"name": final.name, "sha256": candidate.file_sha256},
        "graph_sha256": graph_digest,
        "preprocessing": prep.to_dict(),
        "decision": reference.decision.to_dict(),
        "medclf_version": __version__,
    }
