"""The monitoring embedding is the classifier head's input, projected: checked against
timm's own pre-logits features, with the logits of the same forward pass unchanged."""

import pytest
import torch

from medclf.config import compose
from medclf.embedding import SIZE, projection
from medclf.models import build_model
from medclf.models.embedding import WithEmbedding


@pytest.mark.parametrize("overrides", [["model=resnet18"], ["model=resnet18", "model.head=mlp"]])
def test_a_timm_network_embeds_its_pre_logits_features(overrides: list[str]):
    torch.manual_seed(0)
    model = build_model(compose(overrides).model, num_classes=3, in_chans=1).eval()
    x = torch.randn(4, 1, 64, 64)
    logits, embedding = WithEmbedding(model, (1, 64, 64))(x)
    with torch.inference_mode():
        expected_logits = model(x)
        pre_logits = model.forward_head(model.forward_features(x), pre_logits=True)
    assert torch.equal(logits, expected_logits)
    assert embedding.shape == (4, SIZE)
    expected = pre_logits @ torch.from_numpy(projection(pre_logits.shape[1]))
    torch.testing.assert_close(embedding, expected, rtol=1e-5, atol=1e-5)


def test_the_custom_cnn_embeds_its_pooled_features_and_rows_are_independent():
    model = build_model(compose([]).model, num_classes=2, in_chans=1).eval()
    x = torch.rand(3, 1, 32, 32)
    network = WithEmbedding(model, (1, 32, 32))
    _, embedding = network(x)
    with torch.inference_mode():
        pooled = model.pool(model.features(x))
    assert network.projection.shape == (pooled.shape[1], SIZE)
    torch.testing.assert_close(embedding, pooled @ network.projection)
    _, alone = network(x[1:2])  # batch composition does not change a row
    torch.testing.assert_close(alone[0], embedding[1], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(embedding[0], embedding[1])
