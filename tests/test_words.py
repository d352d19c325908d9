"""The one reader of command-line words: the same key means the same thing everywhere."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from medclf.config import compose
from medclf.errors import MedclfError
from medclf.words import apply_overrides, keys, read, split_words


def test_values_are_typed_by_hydra_s_grammar_and_unparsable_ones_kept_literally():
    assert read("logger=[csv]").value == ["csv"]
    assert read("train.progress_bar=false").value is False
    assert read("data.image_root=null").value is None
    assert read("train.lr=1e-3").value == 0.001
    regex = read(r"data.label_pattern=CONTRAST_(\d)")
    assert regex.value == regex.text == r"CONTRAST_(\d)" and regex.item.endswith("'")
    quote = read(r"data.label_pattern=it's_(\d)")  # a quote inside a literal stays as typed
    assert quote.value == quote.text == r"it's_(\d)"
    assert read("model=models:/chest@production").text == "models:/chest@production"
    added, removed = read("+eval.gates.auc.min=0.9"), read("~eval.gates.latency")
    assert (added.key, removed.key, removed.delete) == (
        "eval.gates.auc.min",
        "eval.gates.latency",
        True,
    )
    assert keys(["+a.b=1", "~c", "d=2"]) == ("a.b", "c", "d")
    with pytest.raises(MedclfError, match=r"'scan\.png' is not a key=value setting"):
        read("scan.png")


def test_split_words_separates_own_keys_overrides_and_paths(tmp_path):
    image = tmp_path / "a=b.png"
    image.write_bytes(b"x")
    own, overrides, words = split_words(
        ["model=runs/x", "eval.tta=flip", "~eval.gates.latency", str(image), "scans/"],
        {"model"},
        plain=True,
    )
    assert own == {"model": "runs/x"}  # the text as typed, never re-typed (1e-3 stays 1e-3)
    assert overrides == ["eval.tta=flip", "~eval.gates.latency"]
    assert words == [str(image), "scans/"]
    assert split_words(["model=1e-3"], {"model"})[0] == {"model": "1e-3"}
    with pytest.raises(MedclfError, match="'scans/' is not a key=value"):
        split_words(["model=runs/x", "scans/"], {"model"})


def test_overrides_on_a_saved_config_are_typed_as_compose_types_them():
    saved = compose([])
    apply_overrides(saved, ["logger=[csv]", "train.progress_bar=false", "~eval.gates.accuracy"])
    fresh = compose(["logger=[csv]", "train.progress_bar=false", "~eval.gates.accuracy"])
    assert OmegaConf.to_container(saved) == OmegaConf.to_container(fresh)
    with pytest.raises(MedclfError, match="sweep"):
        apply_overrides(saved, ["train.lr=0.1,0.01"])
