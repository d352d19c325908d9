"""``medclf monitor``: new images through the model, compared with its reference profile.

new images -> (in chunks: decode and fit with the model's preprocessing, intensity features,
calibrated probabilities, embeddings and decisions) -> input drift per feature (PSI and KS)
and in the model's embedding (MMD with a permutation p-value), prediction
drift (class-share PSI, "refer" share, confidence histogram), the label-free performance
estimate against the model's own expectation on its test split -> alerts by the
``monitor.*`` thresholds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medclf import embedding
from medclf.clustered import ks
from medclf.errors import MedclfError
from medclf.monitoring.drift import categorical_psi, mmd, psi
from medclf.monitoring.estimate import label_free
from medclf.monitoring.features import INTENSITY_FEATURES, intensity_features
from medclf.monitoring.profile import (
    MAX_EMBEDDING_ROWS,
    ReferenceProfile,
    profile_from_text,
    read_profile,
    refer_share,
    sampled,
)

CHUNK = 256  # images decoded at once: memory stays at a chunk of model inputs
CONFIDENCE_EDGES = np.linspace(0, 1, 11)


@dataclass
class Current:
    """The new images, as the model met them."""

    features: np.ndarray  # images x INTENSITY_FEATURES; a row of NaN where not recorded
    probabilities: np.ndarray  # images x classes, calibrated
    decisions: list[dict[str, Any]]
    unreadable: list[str] = field(default_factory=list)  # one message per skipped file
    times: list[dt.datetime] | None = None  # when each was predicted (from the audit log)
    # what labels=CSV can name each image by (monitoring.labels): key column -> one per row
    ids: dict[str, list[str]] = field(default_factory=dict)
    # images x embedding.SIZE, a row of NaN where not recorded; None when the model has none
    embeddings: np.ndarray | None = None

    def subset(self, rows: np.ndarray) -> Current:
        return Current(
            self.features[rows],
            self.probabilities[rows],
            [self.decisions[i] for i in rows],
            times=[self.times[i] for i in rows] if self.times else None,
            embeddings=None if self.embeddings is None else self.embeddings[rows],
        )


def current_from_audit(rows: list[dict[str, Any]], classes: tuple[str, ...]) -> Current:
    """Audit-log rows (``serving.audit.read_rows``) as the monitor's current sample."""
    if not rows:
        raise MedclfError("the audit log holds no prediction of this model in that period")
    probabilities, features, decisions, times, embeddings = [], [], [], [], []
    ids: dict[str, list[str]] = {}
    missing = np.full(embedding.SIZE, np.nan)
    try:
        for row in rows:
            shares = json.loads(row["probabilities"])
            probabilities.append([float(shares[c]) for c in classes])
            values = json.loads(row["features"]) if row["features"] else None
            features.append(values if values else [np.nan] * len(INTENSITY_FEATURES))
            vector = embedding.decode(row.get("embedding"))
            embeddings.append(missing if vector is None else vector)
            decisions.append({} if row["refer"] is None else {"refer": bool(row["refer"])})
            times.append(dt.datetime.fromisoformat(row["at"]))
            for key, column in (("request_id", "request_id"), ("sha256", "input_sha256")):
                ids.setdefault(key, []).append(str(row[column]))
    except (KeyError, TypeError, ValueError) as exc:
        raise MedclfError(f"an audit row does not match this model's classes ({exc})") from None
    return Current(
        np.asarray(features, np.float64).reshape(len(rows), len(INTENSITY_FEATURES)),
        np.asarray(probabilities, np.float64),
        decisions,
        times=times,
        ids=ids,
        embeddings=np.stack(embeddings),
    )


def reference_of(predictor: Any) -> ReferenceProfile:
    """The reference profile of a run (its file) or of an ONNX export (embedded)."""
    run = getattr(predictor, "run", None)
    if run is not None:
        if not run.monitor_reference.is_file():
            raise MedclfError(
                f"{run.root}: no {run.monitor_reference.name}; evaluate the run on its test "
                f"split first (medclf evaluate model={run.root})"
            )
        profile = read_profile(run.monitor_reference)
    else:
        text = getattr(predictor, "monitor_reference_text", None)
        if not text:
            raise MedclfError(
                f"model {predictor.name}: the export holds no monitoring reference (exported "
                "before its test evaluation, or by an earlier medclf); run 'medclf evaluate "
                "model=RUN' and 'medclf export model=RUN' again"
            )
        profile = profile_from_text(text, f"model {predictor.name}")
    if profile.model_version != predictor.version or profile.classes != predictor.class_names:
        raise MedclfError(
            f"model {predictor.name}: its monitoring reference describes other weights "
            f"(version {profile.model_version}, not {predictor.version}); evaluate it again"
        )
    return profile


def _read_one(prep: Any, path: Path) -> tuple[np.ndarray | None, str, str | None]:
    """(the image fitted by the model's preprocessing or None, the file's sha256, the
    refusal message or None): decoded and hashed in the same worker thread."""
    from medclf.data.transform import load

    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    try:
        return load(prep, path), digest, None
    except MedclfError as exc:
        return None, digest, str(exc)


def read_current(
    predictor: Any, paths: list[Path], progress: bool = True, root: Path | None = None
) -> Current:
    """``paths`` through the model in chunks; an unreadable file is skipped and reported.
    Each image is named by its path relative to ``root`` and by its file's sha256."""
    from medclf.data.parallel import map_images  # the decoding threads; no training code

    features, probabilities, embeddings, unreadable = [], [], [], []
    ids: dict[str, list[str]] = {"path": [], "sha256": []}
    for start in range(0, len(paths), CHUNK):
        chunk = paths[start : start + CHUNK]
        read = map_images(lambda p: _read_one(predictor.prep, p), chunk, "reading images", progress)
        unreadable += [error for _, _, error in read if error]
        fitted = []
        for path, (array, digest, _) in zip(chunk, read, strict=True):
            if array is not None:
                fitted.append(array)
                ids["path"].append((path.relative_to(root) if root else path).as_posix())
                ids["sha256"].append(digest)
        if not fitted:
            continue
        features.append(np.stack([intensity_features(a) for a in fitted]))
        inputs = [predictor.prep.normalize_array(a) for a in fitted]
        probs, embedded = predictor.predict_embedded_arrays(inputs)
        probabilities.append(probs.astype(np.float64))
        embeddings.append(embedded)
    if not features:
        first = f"; first: {unreadable[0]}" if unreadable else ""
        raise MedclfError(f"none of the {len(paths)} image(s) could be read{first}")
    probs = np.concatenate(probabilities)
    decisions = [predictor.decision.decide(p, predictor.class_names) for p in probs]
    vectors = None if any(e is None for e in embeddings) else np.concatenate(embeddings)
    return Current(
        np.concatenate(features), probs, decisions, unreadable, ids=ids, embeddings=vectors
    )


def _input_drift(reference: ReferenceProfile, current: Current, settings: Any) -> dict:
    """Per feature; empty when fewer than two images have recorded features (a raw
    tensor's audit rows, or rows older than the features column)."""
    alpha = float(settings.alpha) / len(INTENSITY_FEATURES)  # Bonferroni over the features
    recorded = current.features[~np.isnan(current.features).any(axis=1)]
    if len(recorded) < 2:
        return {}
    out = {}
    for j, name in enumerate(INTENSITY_FEATURES):
        ref, cur = reference.intensity[:, j], recorded[:, j]
        value = psi(ref, cur, int(settings.psi_bins))
        effect = reference.design_effects.get(name, 1.0)
        test = ks(ref, cur, effect)
        out[name] = {
            "psi": value,
            "ks_statistic": test.statistic,
            "p_value": test.p_value,
            "reference_mean": float(ref.mean()),
            "current_mean": float(cur.mean()),
            "design_effect": effect,
            "drift": bool(value > float(settings.psi_alert) and test.p_value < alpha),
        }
    return out


def _embedding_drift(reference: ReferenceProfile, current: Current, settings: Any) -> dict:
    """The kernel two-sample test of the current images' embeddings against the validation
    images' (seeded samples of at most ``MAX_EMBEDDING_ROWS`` each); empty when either side
    has fewer than two (a reference or an export from before embeddings, raw-tensor rows)."""
    if reference.embeddings is None or current.embeddings is None:
        return {}
    recorded = current.embeddings[~np.isnan(current.embeddings).any(axis=1)]
    if len(recorded) < 2 or len(reference.embeddings) < 2:
        return {}
    recorded = sampled(recorded, 0, MAX_EMBEDDING_ROWS)
    test = mmd(reference.embeddings, recorded, int(settings.mmd_permutations))
    return {
        "mmd2": test.statistic,
        "p_value": test.p_value,
        "reference_images": len(reference.embeddings),
        "current_images": len(recorded),
        "drift": bool(test.p_value < float(settings.alpha)),
    }


def _shares(probabilities: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    return np.bincount(probabilities.argmax(axis=1), minlength=len(classes))


def _held_out_refer_share(reference: ReferenceProfile) -> float | None:
    shares = [
        (reference.refer_share.get(s), len(p))
        for s, p in reference.probabilities.items()
        if reference.refer_share.get(s) is not None
    ]
    if not shares:
        return None
    return sum(share * n for share, n in shares) / sum(n for _, n in shares)


def _prediction_drift(reference: ReferenceProfile, current: Current, settings: Any) -> dict:
    """Class shares, "refer" share and confidence against the held-out images (validation
    and test together: twice the reference of either alone). The class shares drift when
    their PSI exceeds ``class_psi_alert`` and a chi-square test of the two count vectors
    rejects at ``alpha``: PSI alone is noisy when the held-out splits are small. The
    chi-square statistic is divided by the reference's design effect of the class (Rao and
    Scott's first-order correction for clustered samples)."""
    from scipy.stats import chi2, chi2_contingency

    classes = reference.classes
    ref_probs = np.concatenate(list(reference.probabilities.values()))
    ref_counts, cur_counts = _shares(ref_probs, classes), _shares(current.probabilities, classes)
    class_psi = categorical_psi(ref_counts, cur_counts)
    seen = (ref_counts + cur_counts) > 0  # a class neither predicted adds nothing to the test
    table = np.stack([ref_counts[seen], cur_counts[seen]])
    p_value = 1.0
    if seen.sum() > 1:
        test = chi2_contingency(table)
        effect = reference.design_effects.get("class", 1.0)
        p_value = float(chi2.sf(test.statistic / effect, test.dof))
    ref_refer, cur_refer = _held_out_refer_share(reference), refer_share(current.decisions)
    refer_drift = (
        ref_refer is not None
        and cur_refer is not None
        and cur_refer - ref_refer > float(settings.max_refer_increase)
    )
    return {
        "class_shares": {
            "reference": dict(zip(classes, (ref_counts / ref_counts.sum()).tolist(), strict=True)),
            "current": dict(zip(classes, (cur_counts / cur_counts.sum()).tolist(), strict=True)),
        },
        "class_psi": class_psi,
        "class_p_value": p_value,
        "class_drift": bool(
            class_psi > float(settings.class_psi_alert) and p_value < float(settings.alpha)
        ),
        "refer_share": {"reference": ref_refer, "current": cur_refer, "drift": bool(refer_drift)},
        "confidence_histogram": {
            "edges": CONFIDENCE_EDGES.tolist(),
            "reference": _histogram(ref_probs.max(axis=1)),
            "current": _histogram(current.probabilities.max(axis=1)),
        },
    }


def _histogram(values: np.ndarray) -> list[float]:
    counts = np.histogram(values, CONFIDENCE_EDGES)[0]
    return (counts / max(1, counts.sum())).tolist()


def _performance(reference: ReferenceProfile, current: Current, settings: Any) -> dict:
    kwargs = {"draws": int(settings.draws), "confidence": float(settings.confidence)}
    now = label_free(current.probabilities, reference.classes, **kwargs)
    baseline_sample = "test" if "test" in reference.probabilities else "validation"
    expected = label_free(reference.probabilities[baseline_sample], reference.classes, **kwargs)
    floor = expected.accuracy.value - float(settings.max_accuracy_drop)
    return {
        "accuracy": asdict(now.accuracy),
        "sensitivity": {c: asdict(e) for c, e in now.sensitivity.items()},
        "reference": {"sample": baseline_sample, "accuracy": asdict(expected.accuracy)},
        "drop": bool(now.accuracy.high < floor),
    }


def _mark_validity(performance: dict, inputs: dict, embedded: dict) -> None:
    """A confidence-based estimate assumes the inputs look like the reference: under input or
    embedding drift the model can be confidently wrong (the demo model after an 85% contrast
    change: 97% of images called ground glass, true accuracy about 0.27, estimate 0.991).
    There the estimate is marked invalid, with why, instead of standing as reassurance."""
    drifting = [name for name, f in inputs.items() if f["drift"]]
    if embedded.get("drift"):
        drifting.append("the model's embedding")
    performance["valid"] = not drifting
    if drifting:
        performance["invalid_reason"] = (
            f"input drift ({', '.join(drifting)}): a confidence-based estimate holds only while "
            "images look like the reference; label a sample (monitor labels=CSV) to measure"
        )


def windows(
    reference: ReferenceProfile, current: Current, settings: Any, seconds: float
) -> list[dict[str, Any]]:
    """The audit period in windows of ``seconds``: per window its images, class-share PSI,
    refer share, label-free accuracy and drifting features (the same rules as the whole)."""
    if not current.times:
        return []
    start = min(current.times)
    index = np.array([int((t - start).total_seconds() // seconds) for t in current.times])
    out = []
    for k in np.unique(index):
        part = current.subset(np.flatnonzero(index == k))
        if len(part.probabilities) < 2:
            continue
        drift = _prediction_drift(reference, part, settings)
        estimate = label_free(part.probabilities, reference.classes, draws=500)
        inputs = _input_drift(reference, part, settings)
        out.append(
            {
                "start": (start + dt.timedelta(seconds=float(k) * seconds)).isoformat(),
                "images": len(part.probabilities),
                "class_psi": drift["class_psi"],
                "refer_share": drift["refer_share"]["current"],
                "accuracy": asdict(estimate.accuracy),
                "drifting_features": [n for n, f in inputs.items() if f["drift"]],
            }
        )
    return out


def compare(
    reference: ReferenceProfile, current: Current, settings: Any, window_s: float | None = None
) -> dict[str, Any]:
    """Everything ``monitor.json`` holds, with the alerts the thresholds raise; audit-log
    traffic also in windows of ``window_s`` seconds."""
    inputs = _input_drift(reference, current, settings)
    embedded = _embedding_drift(reference, current, settings)
    predictions = _prediction_drift(reference, current, settings)
    performance = _performance(reference, current, settings)
    _mark_validity(performance, inputs, embedded)
    n = len(current.probabilities)
    alerts = [f"input drift: {name}" for name, f in inputs.items() if f["drift"]]
    if embedded.get("drift"):
        alerts.append(f"input drift: the model's embedding (MMD p={embedded['p_value']:.3f})")
    if predictions["class_drift"]:
        alerts.append(f"prediction drift: class shares (PSI {predictions['class_psi']:.2f})")
    if predictions["refer_share"]["drift"]:
        alerts.append("prediction drift: more 'refer' decisions")
    if performance["drop"]:
        alerts.append("performance: the label-free accuracy estimate dropped")
    enough = n >= int(settings.min_images)
    return {
        "images": n,
        "unreadable": len(current.unreadable),
        "reference_images": len(reference.intensity),
        "input_drift": inputs,
        "embedding_drift": embedded,
        "prediction_drift": predictions,
        "performance_estimate": performance,
        "alerts": alerts if enough else [],
        "too_few_images": not enough,
        "windows": windows(reference, current, settings, window_s) if window_s else [],
        "settings": {k: settings[k] for k in settings},
    }
