import numpy as np

from medclf.formatting import estimate, interval, metrics_line, number


def test_numbers_read_alike_and_undefined_values_say_so():
    assert number(0.91234) == "0.912" and number(0.5, 2) == "0.50"
    assert number(None) == number(float("nan")) == number(np.float32("nan")) == "n/a"
    assert number(np.float64(0.25)) == "0.250"


def test_a_metric_reads_with_its_interval_only_when_it_has_one():
    m = {"value": 0.912, "ci_low": 0.871, "ci_high": 0.945}
    assert estimate(m) == "0.912 (0.871-0.945)" and estimate(m, 2) == "0.91 (0.87-0.94)"
    assert interval(m, sep=" - ") == "0.871 - 0.945"
    assert estimate({"value": 0.5, "ci_low": None, "ci_high": None}) == "0.500"
    assert estimate({"value": 0.5, "ci_low": float("nan"), "ci_high": 0.6}) == "0.500"
    assert estimate({"value": float("nan")}) == estimate(None) == "n/a"


def test_a_training_epoch_line():
    assert metrics_line({"epoch": 3.0, "val/loss": 0.23104}) == "epoch=3, val/loss=0.2310"
