"""The console summary of an evaluation: headline numbers with intervals, per-class
sensitivity/specificity, calibration, operating point, gates and where the files are."""

from __future__ import annotations

import typer

from medclf.formatting import estimate as fmt
from medclf.formatting import number

HEADLINE = (
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "macro_auc",
    "mcc",
    "quadratic_kappa",
    "mean_absolute_error",
)


# Long on purpose: the console summary, printed line by line in the order users read it.
def print_summary(report) -> None:
    """``report``: the ``medclf.api.Report`` of one evaluation."""
    m = report.record
    ev = m["evaluated"]
    ci = m["confidence_intervals"]
    echo = typer.echo
    # no patient ids: say what the bootstrap resamples instead of "0 patients"
    who = f", {ev['patients']} patients" if ev["patients"] else ", no patient ids"
    echo(
        f"{ev['name']}: {ev['images']} images{who} "
        f"({int(ci['level'] * 100)}% CI, {ci['method']} bootstrap over {ci['unit']}s)"
    )
    for key in HEADLINE:
        if key in m["overall"]:
            echo(f"  {key:<20} {fmt(m['overall'][key])}")
    for c, pc in m["per_class"].items():
        echo(
            f"  {c:<20} sensitivity {fmt(pc['sensitivity'], 2):<18} "
            f"specificity {fmt(pc['specificity'], 2):<18} n={ev['class_counts'][c]}"
        )
    cal = m["calibration"]
    echo(
        f"calibration: T={number(cal['after']['temperature'], 2)} ECE "
        f"{number(cal['before']['ece'])} -> {number(cal['after']['ece'])}, Brier "
        f"{number(cal['before']['brier'])} -> {number(cal['after']['brier'])}"
    )
    gap = m.get("validation_gap") or {}
    if gap.get("easier"):
        echo(f"WARNING {gap['note']}")
    t_fit = (cal.get("fitted_on") or {}).get("temperature_fit")
    if t_fit and not t_fit["kept"]:
        echo(f"  {t_fit['reason']}")
    op = m["operating_point"]
    if op["thresholds"]:
        parts = [
            f"{c} >= {number(t)} (sens {number(op['per_class'][c]['sensitivity']['value'], 2)}, "
            f"spec {number(op['per_class'][c]['specificity']['value'], 2)})"
            for c, t in op["thresholds"].items()
        ]
        echo(f"operating point ({op['rule']}): " + "; ".join(parts))
    decided = (op.get("fitted_on") or {}).get("decision_fit")
    if decided and not op["thresholds"]:
        echo(f"decision: {decided['reason']}")
    shares = m.get("class_shares")
    if shares:
        echo(
            f"{shares['positive_class']} share -> PPV / NPV of this decision: "
            + "; ".join(
                f"{r['split']} {number(r['share'], 2)} -> {number(r['ppv'], 2)} / "
                f"{number(r['npv'], 2)}"
                for r in shares["rows"]
            )
        )
    lat = m["latency"]
    if lat.get("runs"):
        echo(
            f"latency: p50 {lat['latency_p50_ms']:.1f} ms, p95 {lat['latency_p95_ms']:.1f} ms; "
            f"{lat['throughput_images_per_s']:.0f} images/s at batch {lat['batch_size']}"
        )
    tta = m.get("tta") or {}
    if tta.get("with"):
        echo(
            f"test-time augmentation ({tta['mode']}): accuracy {fmt(tta['without']['accuracy'])}"
            f" without, {fmt(tta['with']['accuracy'])} with; macro AUC "
            f"{fmt(tta['without']['macro_auc'])} -> {fmt(tta['with']['macro_auc'])}"
        )
    conf = m.get("conformal") or {}
    if conf:
        echo(
            f"conformal sets ({conf['method'].upper()}, target {conf['target_coverage']:.0%}): "
            f"coverage {fmt(conf['coverage'])}, mean size {fmt(conf['mean_set_size'], 2)}, "
            f"refer {fmt(conf['refer_share'])}"
        )
        lo, hi = conf["expected_coverage_95"]
        if not lo <= conf["coverage"]["value"] <= hi:
            echo(
                f"COVERAGE {number(conf['coverage']['value'])} is outside "
                f"[{number(lo)}, {number(hi)}], the "
                f"95% range for images like the {conf['n']} validation images: these images "
                "differ from them (see the data check's SPLIT SHIFT) and the sets' promise does "
                "not carry over"
            )
    gates = report.gates
    verdict = "passed" if gates.passed else f"FAILED: {', '.join(g.gate for g in gates.failed)}"
    echo(f"gates: {verdict}")
    echo(f"report: {report.html}")
    echo(f"results: {report.folder}")
