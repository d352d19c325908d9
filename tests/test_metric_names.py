import pytest

from medclf.config import compose
from medclf.errors import MedclfError
from medclf.metric_names import best_epoch_metric


@pytest.mark.parametrize(
    ("name", "mode", "resolved"),
    [
        ("val/loss", "auto", ("val/loss", "min")),
        ("val/accuracy", "auto", ("val/acc", "max")),
        ("val/ACC", "max", ("val/acc", "max")),
        ("val/macro_auc", "auto", ("val/auc_macro", "max")),
        ("val/auc_macro", "auto", ("val/auc_macro", "max")),
        ("val/f1_macro", "auto", ("val/f1_macro", "max")),
        ("train/accuracy", "auto", ("train/acc", "max")),
        ("lr/head", "max", ("lr/head", "max")),
    ],
)
def test_monitor_names_resolve_through_the_metric_alias_table(name, mode, resolved):
    assert best_epoch_metric(name, mode) == resolved


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["train.monitor=val/macro_auc", "train.monitor_mode=min"], "would keep the worst epoch"),
        (["train.monitor=val/sensitivity"], "training logs val/loss, val/acc"),
        (["train.monitor=train/macro_auc"], "training logs train/loss, train/acc"),
        (["train.monitor=lr/head"], "train.monitor_mode=max or min"),
    ],
)
def test_a_monitor_that_cannot_pick_the_best_epoch_is_refused_at_compose(overrides, needle):
    with pytest.raises(MedclfError, match=needle):
        compose(overrides)
