import pytest

from medclf.config import compose
from medclf.errors import MedclfError


def test_packaged_defaults_pass():
    compose([])  # raises if a shipped default broke its own rule


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_size=0", "data.batch_size=0 is not valid: expected an integer >= 1"),
        ("data.batch_size=1.5", "expected an integer >= 1"),
        ("data.split_ratios=[0.5,0.6,0.1]", "three fractions (train, val, test) that sum to 1"),
        ("data.split_ratios=[0.7,0.3]", "data.split_ratios=[0.7, 0.3] is not valid"),
        ("data.max_pixels=-1", "data.max_pixels=-1 is not valid"),
        ("data.image_size=4", "expected an integer >= 8 (or null)"),
        ("eval.n_bootstrap=abc", "eval.n_bootstrap=abc is not valid: expected an integer >= 0"),
        ("eval.ci_level=2", "eval.ci_level=2 is not valid: expected a number > 0 and < 1"),
        ("eval.calibration_bins=0", "expected an integer >= 1"),
        ("eval.ci_method=foo", "expected one of bca, percentile, basic"),
        ("eval.gates_on=maybe", "expected one of point, ci"),
        ("train.lr=-1", "train.lr=-1 is not valid: expected a number > 0"),
        ("train.loss.label_smoothing=1", "expected a number >= 0 and < 1"),
        ("train.max_epochs=true", "train.max_epochs=True is not valid"),
    ],
)
def test_values_out_of_range_fail_at_compose(override: str, message: str):
    with pytest.raises(MedclfError) as info:
        compose([override])
    text = str(info.value)
    assert message in text and "\n" not in text


@pytest.mark.parametrize(
    "override",
    ["data.image_size=null", "train.grad_clip=1.0", "data.split_ratios=[0.8,0.1,0.1]"],
)
def test_valid_values_pass(override: str):
    compose([override])


def test_evaluation_settings_are_checked_after_merging_the_runs_own(tmp_path):
    from omegaconf import OmegaConf

    from medclf.evaluation.settings import evaluation_config

    saved = compose([])
    OmegaConf.update(saved, "eval.ci_level", 1.5, force_add=True)  # a hand-edited run config
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(saved))
    with pytest.raises(MedclfError, match=r"eval\.ci_level=1\.5 is not valid"):
        evaluation_config(tmp_path / "config.yaml", [])
