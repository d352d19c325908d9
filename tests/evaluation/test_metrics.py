"""Every metric agrees with scikit-learn on fixed fixtures, ties and edge cases included."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from medclf.errors import MedclfError
from medclf.evaluation.calibration import brier_score
from medclf.evaluation.metrics import MetricSuite, average_precision, roc_auc_ovr
from medclf.metric_names import METRICS, resolve_metric


def _fixture(n: int, k: int, seed: int, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    if ties:
        logits = np.round(logits)  # many equal scores: tie handling must match sklearn
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


def _values(suite: MetricSuite, y, probs) -> dict[str, float]:
    return dict(zip(suite.keys(), suite.compute(y, probs), strict=True))


@pytest.mark.parametrize(("k", "ties"), [(2, False), (3, True), (4, False), (5, True)])
def test_overall_and_per_class_match_sklearn(k: int, ties: bool) -> None:
    y, probs = _fixture(157, k, seed=k, ties=ties)
    names = tuple(f"c{i}" for i in range(k))
    v = _values(MetricSuite(names), y, probs)
    pred = probs.argmax(1)
    labels = list(range(k))
    kw = {"labels": labels, "zero_division": 0}
    assert v["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert v["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    for avg in ("macro", "weighted"):
        assert v[f"{avg}_precision"] == pytest.approx(
            skm.precision_score(y, pred, average=avg, **kw)
        )
        assert v[f"{avg}_recall"] == pytest.approx(skm.recall_score(y, pred, average=avg, **kw))
        assert v[f"{avg}_f1"] == pytest.approx(skm.f1_score(y, pred, average=avg, **kw))
    assert v["cohen_kappa"] == pytest.approx(skm.cohen_kappa_score(y, pred))
    assert v["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    if k == 2:
        assert v["macro_auc"] == pytest.approx(skm.roc_auc_score(y, probs[:, 1]))
    else:
        assert v["macro_auc"] == pytest.approx(
            skm.roc_auc_score(y, probs, multi_class="ovr", average="macro")
        )
        for top in (2, 3):
            if top < k:
                assert v[f"top{top}_accuracy"] == pytest.approx(
                    skm.top_k_accuracy_score(y, probs, k=top, labels=labels)
                )
    assert ("top2_accuracy" in v) == (k > 2)
    assert v["brier"] == pytest.approx(brier_score(probs, y))
    prec, rec, f1, _ = skm.precision_recall_fscore_support(y, pred, **kw)
    cm = skm.confusion_matrix(y, pred, labels=labels)
    for i, c in enumerate(names):
        tn = cm.sum() - cm[i].sum() - cm[:, i].sum() + cm[i, i]
        assert v[f"sensitivity[{c}]"] == pytest.approx(rec[i])
        assert v[f"ppv[{c}]"] == pytest.approx(prec[i])
        assert v[f"f1[{c}]"] == pytest.approx(f1[i])
        assert v[f"specificity[{c}]"] == pytest.approx(tn / (cm.sum() - cm[i].sum()))
        assert v[f"npv[{c}]"] == pytest.approx(tn / (cm.sum() - cm[:, i].sum()))
        assert v[f"roc_auc[{c}]"] == pytest.approx(skm.roc_auc_score(y == i, probs[:, i]))
        assert v[f"pr_auc[{c}]"] == pytest.approx(skm.average_precision_score(y == i, probs[:, i]))


def test_binary_reports_at_the_threshold_and_threshold_free() -> None:
    y, probs = _fixture(200, 2, seed=11)
    suite = MetricSuite(("neg", "pos"), positive=1, thresholds={1: 0.3})
    v = _values(suite, y, probs)
    at = (probs[:, 1] >= 0.3).astype(int)
    assert v["operating_sensitivity[pos]"] == pytest.approx(skm.recall_score(y, at))
    assert v["operating_ppv[pos]"] == pytest.approx(skm.precision_score(y, at))
    assert v["operating_specificity[pos]"] == pytest.approx(skm.recall_score(1 - y, 1 - at))
    assert v["operating_accuracy"] == pytest.approx(skm.accuracy_score(y, at))
    assert v["operating_balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, at))
    # threshold-free and argmax values are unaffected by the threshold
    assert v["macro_auc"] == pytest.approx(skm.roc_auc_score(y, probs[:, 1]))
    assert v["accuracy"] == pytest.approx(skm.accuracy_score(y, probs.argmax(1)))
    assert v["operating_accuracy"] != v["accuracy"]


def test_zero_division_and_missing_class_follow_sklearn() -> None:
    y = np.array([0, 0, 1, 1, 0])
    probs = np.array([[0.9, 0.1, 0.0]] * 5)  # class 2 never true nor predicted
    v = _values(MetricSuite(("a", "b", "c")), y, probs)
    assert v["ppv[b]"] == 0.0 and v["sensitivity[b]"] == 0.0
    assert v["macro_f1"] == pytest.approx(
        skm.f1_score(y, probs.argmax(1), labels=[0, 1, 2], average="macro", zero_division=0)
    )
    assert np.isnan(v["roc_auc[c]"]) and np.isnan(v["pr_auc[c]"])
    assert v["macro_auc"] == pytest.approx(np.mean([v["roc_auc[a]"], v["roc_auc[b]"]]))
    assert v["mcc"] == pytest.approx(skm.matthews_corrcoef(y, probs.argmax(1)))


def test_rank_auc_and_average_precision_on_heavy_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300).astype(bool)
    score = rng.integers(0, 4, 300) / 4 + 0.2 * y
    assert roc_auc_ovr(y, score) == pytest.approx(skm.roc_auc_score(y, score))
    assert average_precision(y, score) == pytest.approx(skm.average_precision_score(y, score))


def test_alias_table_names_each_metric_once() -> None:
    assert resolve_metric("Recall").name == "sensitivity"
    assert resolve_metric("TPR").name == resolve_metric("sensitivity").name
    assert resolve_metric("precision").name == "ppv"
    assert resolve_metric("kappa").name == "cohen_kappa"
    assert resolve_metric("auc").name == "macro_auc"
    names = [a for m in METRICS for a in (m.name, *m.aliases)]
    assert len(names) == len(set(names))
    with pytest.raises(MedclfError, match="unknown metric 'sensitivty'"):
        resolve_metric("sensitivty")


def test_named_values_put_every_computed_value_in_its_section_once() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    probs = rng.dirichlet([1, 1], 80)
    suite = MetricSuite(("normal", "nodule"), positive=1, thresholds={1: 0.4})
    values = dict(zip(suite.keys(), suite.compute(y, probs), strict=True))
    named = suite.named({**values, "latency_p95_ms": 3.0})
    assert named["overall"]["accuracy"] == values["accuracy"]
    assert named["per_class"]["nodule"]["sensitivity"] == values["sensitivity[nodule]"]
    op = named["operating_point"]
    assert op["per_class"]["nodule"]["sensitivity"] == values["operating_sensitivity[nodule]"]
    assert op["accuracy"] == values["operating_accuracy"] and "normal" not in op["per_class"]
    placed = (
        len(named["overall"])
        + sum(len(v) for v in named["per_class"].values())
        + sum(len(v) for v in op["per_class"].values())
        + sum(1 for k in op if k != "per_class")
    )
    assert placed == len(values)  # each once; latency is not the suite's, so left out
    assert "latency_p95_ms" not in named["overall"]


def test_ordered_grades_match_sklearn_kappa_and_mae() -> None:
    """Knee-OA-like grades named out of order ("10" sorts before "2"): the quadratic kappa
    and grade error follow the grades, not the class order."""
    from medclf.data.ordinal import class_grades

    names = ("0", "1", "10", "2", "3")  # class index order as a string sort gives it
    grades = class_grades(names)
    assert grades == (0.0, 1.0, 10.0, 2.0, 3.0)
    y, probs = _fixture(211, 5, seed=11)
    pred = probs.argmax(1)
    v = _values(MetricSuite(names, grades=grades), y, probs)
    g = np.asarray(grades)
    order = sorted(set(g))
    assert v["quadratic_kappa"] == pytest.approx(
        skm.cohen_kappa_score(g[y], g[pred], weights="quadratic", labels=order)
    )
    assert v["mean_absolute_error"] == pytest.approx(skm.mean_absolute_error(g[y], g[pred]))
    assert resolve_metric("qwk").name == "quadratic_kappa"
    assert not resolve_metric("mae").higher_is_better
    # unordered tasks do not report them
    assert "quadratic_kappa" not in set(MetricSuite(names).keys())


@pytest.mark.parametrize(
    ("names", "setting", "expected"),
    [
        (("0", "1", "2", "3", "4"), "auto", (0.0, 1.0, 2.0, 3.0, 4.0)),
        (("KL0", "KL1", "KL2"), "auto", (0.0, 1.0, 2.0)),
        (("grade_1", "grade_3", "grade_2"), "auto", (1.0, 3.0, 2.0)),
        (("0", "1"), "auto", None),  # binary: nothing to order
        (("cat1", "dog2", "x3"), "auto", None),  # different prefixes
        (("normal", "glioma", "meningioma"), "auto", None),
        (("mild", "moderate", "severe"), True, (0.0, 1.0, 2.0)),
        (("0", "1", "2"), False, None),
    ],
)
def test_which_class_names_are_grades(names, setting, expected) -> None:
    from medclf.data.ordinal import class_grades

    assert class_grades(names, setting) == expected
