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
        ("data.image_size=4", "expected an integer >= 8 and <= 4096 (or null)"),
        ("eval.n_bootstrap=abc", "eval.n_bootstrap=abc is not valid: expected an integer >= 0"),
        ("eval.ci_level=2", "eval.ci_level=2 is not valid: expected a number > 0 and < 1"),
        ("eval.calibration_bins=0", "expected an integer >= 1"),
        ("eval.ci_method=foo", "expected one of bca, percentile, basic"),
        ("eval.gates_on=maybe", "expected one of point, ci"),
        ("train.lr=-1", "train.lr=-1 is not valid: expected a number > 0"),
        ("train.loss.label_smoothing=1", "expected a number >= 0 and < 1"),
        ("train.max_epochs=true", "train.max_epochs=True is not valid"),
        # values that were checked by hand at run time before the schema took them over
        ("data.augment.hflip=1.5", "data.augment.hflip=1.5 is not valid: expected a number >= 0"),
        ("data.augment.scale=[1.2,0.8]", "expected null or a [min, max] pair with 0 <= min <= max"),
        ("data.augment.gamma=1.0", "data.augment.gamma=1.0 is not valid: expected null or a [min"),
        ("data.augment.translate=1", "expected a number >= 0 and < 1"),
        (
            "data.window=lungs",
            "data.window=lungs is not valid: expected one of dicom, minmax, lung",
        ),
        ("data.window=[40,0]", "or [center, width]"),
        ("data.label_pattern=([a-z]+)_(\\d)", "expected a regex with one group (or null)"),
        ("train.trainable=some", "expected all, head, or N (the last N backbone blocks"),
        ("train.loss.class_weights=equal", "expected null, balanced or positive [w_class0"),
        ("train.loss.class_weights=[1,0]", "expected null, balanced or positive [w_class0"),
        ("train.loss.name=dice", "train.loss.name=dice is not valid: expected one of ce, focal"),
        ("train.time_budget=soon", "expected seconds (900) or a duration like 15m or 1.5h"),
        ("train.precision=64", "train.precision=64 is not valid: expected one of 32, 32-true"),
        (
            "logger=[tensorboard,neptune]",
            "expected one of tensorboard, mlflow, wandb, csv, or a list of them",
        ),
        ("wandb.mode=offlien", "expected one of online, offline, disabled. Did you mean offline?"),
        ("train.nesterov=3", "train.nesterov=3 is not valid: expected true or false"),
        ("eval.gates.accuracy.min=high", "eval.gates.accuracy.min=high is not valid"),
        ("model.global_pool=mean", "model.global_pool=mean is not valid: expected one of avg,"),
    ],
)
def test_the_schema_names_the_key_and_what_it_accepts(override: str, message: str):
    with pytest.raises(MedclfError) as info:
        compose([override])
    text = str(info.value)
    assert message in text and "\n" not in text, text


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
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(saved, resolve=True))
    with pytest.raises(MedclfError, match=r"eval\.ci_level=1\.5 is not valid"):
        evaluation_config(tmp_path / "config.yaml", [])


def test_each_stage_is_checked_and_counted_from_one():
    bad = "train.stages=[{name:a,epochs:1},{name:b,epochs:1,optimizer:adamm}]"
    with pytest.raises(MedclfError) as info:
        compose([bad])
    assert str(info.value).startswith("train.stages[2].optimizer=adamm is not valid: expected one")
    assert str(info.value).endswith("Did you mean adam?")
    with pytest.raises(MedclfError, match=r"unknown config key 'train\.stages\[1\]\.lrr'"):
        compose(["train.stages=[{name:a,lrr:0.1}]"])
    stages = compose(["train=two_stage"]).train.stages  # the shipped two-stage recipe passes
    assert [s.name for s in stages] == ["head", "finetune"]


def test_a_model_name_of_another_family_says_how_to_choose_it():
    with pytest.raises(MedclfError, match=r"choose it with model=resnet18 instead of model\.name"):
        compose(["model.name=resnet18"])  # custom_cnn's keys, a timm name
    assert compose(["model=resnet18", "model.name=efficientnet_b0"]).model.name == "efficientnet_b0"


def test_a_run_folders_older_sections_are_checked_only_on_the_keys_they_hold():
    from omegaconf import OmegaConf

    from medclf.config_checks import check_values

    old = OmegaConf.create({"data": {"batch_size": 8, "retired_key": 1}, "eval": {"tta": "none"}})
    check_values(old, sections=["data", "eval"])  # absent and retired keys are not errors
    OmegaConf.update(old, "eval.tta", "flipp")
    with pytest.raises(MedclfError, match=r"^eval\.tta=flipp is not valid.*Did you mean flip\?$"):
        check_values(old, sections=["data", "eval"])


def test_allowed_values_read_the_schema():
    from medclf.config_checks import allowed_values

    assert allowed_values("eval.tta", "custom_cnn") == "one of none, flip, flip+rot"
    assert allowed_values("model.head", "resnet18") == "one of linear, mlp"
    assert allowed_values("train.sampler", "resnet18") == "one of weighted or null"
    assert allowed_values("model.head", "custom_cnn") is None  # not a custom_cnn key
    assert allowed_values("data.augment.p", "custom_cnn") == "a number >= 0 and <= 1"
    assert allowed_values("data.path", "custom_cnn") is None  # any text: nothing more to say
