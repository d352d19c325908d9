from pathlib import Path

import pytest
import torch

from medclf.errors import MedclfError
from medclf.models.checkpoint import load_checkpoint
from medclf.safeload import load_torch_file
from tests.badinput import planted_checkpoint


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path: Path):
    marker = tmp_path / "owned"
    ckpt = planted_checkpoint(tmp_path / "last.ckpt", marker)
    with pytest.raises(MedclfError) as info:
        load_checkpoint(ckpt)
    message = str(info.value)
    assert "refused to load" in message and "posix.system" in message and "\n" not in message
    assert not marker.exists()
    # the same payload through plain torch.load(weights_only=False) is what it guards against
    torch.load(ckpt, weights_only=False)
    assert marker.exists()


def test_plain_tensors_load_and_damage_is_one_line(tmp_path: Path):
    path = tmp_path / "w.pth"
    torch.save({"layer.weight": torch.ones(2, 2), "meta": {"epoch": 3, "name": "x"}}, path)
    assert load_torch_file(path, "w")["meta"]["epoch"] == 3
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(MedclfError, match=r"^w: cannot read \(.*\); it may be truncated$"):
        load_torch_file(path, "w")


def test_a_checkpoint_without_weights_is_not_a_medclf_checkpoint(tmp_path: Path):
    torch.save({"epoch": 1}, tmp_path / "x.ckpt")
    with pytest.raises(MedclfError, match="not a medclf checkpoint"):
        load_checkpoint(tmp_path / "x.ckpt")
