"""The Python API (``medclf.api``): keywords become the CLI's words, a bad key is the CLI's
message, predictions read the decision, and ``import medclf`` stays light. The whole path
(train -> evaluate -> export -> register -> predict) runs as the getting-started page, in
tests/docs/test_getting_started.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medclf.api import Prediction, words
from medclf.errors import MedclfError

CLASSES = ("cavity", "ground_glass", "nodule", "normal")


def test_keywords_become_the_words_the_cli_takes():
    given = {"a": True, "b": None, "c": [1, 2.5], "d": "two words", "e": Path("x/y"), "f": "it's"}
    assert words(given) == ["a=true", "b=null", "c=[1,2.5]", "d='two words'", "e=x/y", "f='it\\'s'"]
    assert words({"model": "resnet18", "g": ""}) == ["model=resnet18", "g=''"]


@pytest.mark.parametrize(
    "text", [r"CONTRAST_(\d)", r"^(person\d+)_", "it's", "a\\'b", "end\\", "'", "x=y, z"]
)
def test_text_keywords_reach_the_config_unchanged(text: str):
    """A regex keeps its backslashes through Hydra's quoting (which halves only those before
    a quote), and quotes, commas and spaces survive too."""
    from medclf.config import compose

    assert compose(words({"mlflow.experiment": text})).mlflow.experiment == text


def test_importing_medclf_loads_no_heavy_library():
    probe = (
        "import sys, medclf\n"
        "heavy = ('torch', 'numpy', 'pandas', 'timm', 'lightning')\n"
        "named = all(hasattr(medclf, n) for n in medclf.__all__)\n"
        "print([m for m in heavy if m in sys.modules], named)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True"


def test_a_bad_key_raises_the_cli_message_before_anything_is_written(tmp_path: Path):
    import medclf

    with pytest.raises(MedclfError, match=r"train\.max_epoch"):
        medclf.train(data=tmp_path, **{"train.max_epoch": 3, "runs_root": str(tmp_path / "r")})
    assert not (tmp_path / "r").exists()


def test_a_prediction_reads_the_decision_not_only_the_top_class():
    record = {
        "prediction": {"class": "nodule", "class_index": 2, "confidence": 0.5},
        "probabilities": {"nodule": 0.5, "normal": 0.5},
        "decision": {"label": None, "prediction_set": ["nodule", "normal"], "refer": True},
    }
    p = Prediction.from_record("a.png", record)
    assert (p.label, p.top_class, p.prediction_set, p.refer) == (
        None,
        "nodule",
        ["nodule", "normal"],
        True,
    )
    assert Prediction.from_record("b.png", {"error": "unreadable"}).error == "unreadable"
