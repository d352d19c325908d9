"""The audit log's compact embedding: exact round trip, anything else read as missing."""

import base64

import numpy as np

from medclf.embedding import SIZE, decode, encode, projection


def test_an_embedding_round_trips_through_its_172_characters():
    vector = np.random.default_rng(0).standard_normal(SIZE).astype(np.float32)
    text = encode(vector)
    assert len(text) == 172
    np.testing.assert_array_equal(decode(text), vector.astype(np.float64))
    assert encode(None) is None and decode(None) is None and decode("") is None


def test_what_is_not_one_embedding_is_read_as_missing():
    short = base64.b64encode(np.zeros(SIZE - 1, "<f4").tobytes()).decode()
    not_finite = base64.b64encode(np.full(SIZE, np.nan, "<f4").tobytes()).decode()
    for text in (short, not_finite, "not base64!", "A" * 10_000):
        assert decode(text) is None, text[:20]


def test_the_projection_is_fixed_per_width():
    first, again = projection(512), projection(512)
    np.testing.assert_array_equal(first, again)
    assert first.shape == (512, SIZE) and first.dtype == np.float32
    assert not np.allclose(projection(512)[:64], projection(64))
    # scaled so that a vector's length is kept on average (E|xR|^2 = |x|^2)
    x = np.random.default_rng(1).standard_normal((2000, 512)).astype(np.float32)
    ratio = np.linalg.norm(x @ first, axis=1) / np.linalg.norm(x, axis=1)
    assert 0.9 < ratio.mean() < 1.1
