import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from medclf.errors import MedclfError
from medclf.training.losses import build_loss, class_weights, hard_target_ce

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0], [0.0, 0.0, 4.0]])
TARGET = torch.tensor([0, 2, 1, 2])


def _loss(**kw):
    cfg = {"name": "ce", "label_smoothing": 0.0, "class_weights": None, "focal_gamma": 2.0, **kw}
    return build_loss(OmegaConf.create(cfg), class_counts=[10, 30, 60])


def test_balanced_weights_match_scikit_learn():
    labels = np.array([0] * 10 + [1] * 30 + [2] * 60)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    got = class_weights("balanced", [10, 30, 60])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_weighted_soft_loss_equals_torch_weighted_cross_entropy():
    loss = _loss(class_weights="balanced")
    torch_ce = nn.CrossEntropyLoss(weight=class_weights("balanced", [10, 30, 60]))
    torch.testing.assert_close(loss(LOGITS, TARGET), torch_ce(LOGITS, TARGET))
    assert isinstance(hard_target_ce(loss), nn.CrossEntropyLoss)


def test_label_smoothing_matches_torch():
    loss = _loss(label_smoothing=0.1)
    torch.testing.assert_close(
        loss(LOGITS, TARGET), nn.CrossEntropyLoss(label_smoothing=0.1)(LOGITS, TARGET)
    )


def test_focal_loss_down_weights_confident_correct_samples():
    focal = _loss(name="focal", focal_gamma=2.0)
    assert hard_target_ce(focal) is None
    ce = nn.functional.cross_entropy(LOGITS, TARGET, reduction="none")
    p_true = LOGITS.softmax(1)[torch.arange(4), TARGET]
    expected = ((1 - p_true) ** 2 * ce).mean()
    torch.testing.assert_close(focal(LOGITS, TARGET), expected)
    assert focal(LOGITS, TARGET) < ce.mean()
    # gamma 0 is plain cross-entropy
    torch.testing.assert_close(_loss(name="focal", focal_gamma=0.0)(LOGITS, TARGET), ce.mean())


def test_soft_targets_from_mixup_are_accepted():
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.5, 0.5], [0.2, 0.8, 0.0], [0.0, 0.0, 1.0]])
    expected = -(soft * LOGITS.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(_loss()(LOGITS, soft), expected)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"class_weights": [1.0, 2.0]}, "3 positive numbers"),
        ({"class_weights": [1.0, 2.0, 0.0]}, "3 positive numbers"),
    ],
)
def test_bad_loss_settings_name_the_key(kw, match):
    with pytest.raises(MedclfError, match=match):
        _loss(**kw)
