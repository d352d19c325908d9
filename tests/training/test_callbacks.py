from pathlib import Path

import pytest
import torch

from medclf.training.callbacks import AtomicCheckpointIO


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("boom during save")


def test_failed_checkpoint_save_keeps_previous_file_intact(tmp_path: Path):
    io = AtomicCheckpointIO()
    path = tmp_path / "weights" / "last.ckpt"
    io.save_checkpoint({"w": torch.ones(3)}, path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        io.save_checkpoint({"w": torch.zeros(3), "bad": Unpicklable()}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temp debris
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
