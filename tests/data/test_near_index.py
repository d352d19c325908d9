"""Multi-index hashing finds exactly the pairs that comparing every pair finds."""

import numpy as np
import pytest

from medclf.data.near_index import _bit_range, pairs_within, usable


def _every_pair(words: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    distance = np.bitwise_count(words[:, None, :] ^ words[None, :, :]).sum(axis=-1)
    a, b = np.nonzero(np.triu(distance <= max_distance, 1))
    return [(int(i), int(j), int(distance[i, j])) for i, j in zip(a, b, strict=True)]


def _planted(seed: int, most_flips: int, n: int = 600, planted: int = 150) -> np.ndarray:
    """Random 256-bit hashes, some copied from another row with 0..most_flips bits flipped."""
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 2**64 - 1, (n, 4), dtype=np.uint64, endpoint=True)
    for _ in range(planted):
        i, j = rng.integers(0, n, 2)
        words[j] = words[i]
        for bit in rng.choice(256, int(rng.integers(0, most_flips + 1)), replace=False):
            words[j, bit // 64] ^= np.uint64(1) << np.uint64(63 - bit % 64)
    return words


@pytest.mark.parametrize("max_distance", [0, 1, 3, 7, 10, 12, 15])
def test_the_same_pairs_as_comparing_every_pair(max_distance: int):
    words = _planted(max_distance, most_flips=max_distance + 5)
    a, b, distance = pairs_within(words, max_distance)
    found = list(zip(a.tolist(), b.tolist(), distance.tolist(), strict=True))
    expected = _every_pair(words, max_distance)
    assert found == expected and len(expected) > 10


def test_bit_ranges_across_word_boundaries():
    rng = np.random.default_rng(1)
    words = rng.integers(0, 2**64 - 1, (20, 4), dtype=np.uint64, endpoint=True)
    for start, stop in [(0, 23), (60, 70), (64, 128), (230, 256), (100, 101)]:
        got = _bit_range(words, start, stop)
        for row, value in zip(words, got, strict=True):
            whole = int("".join(f"{int(w):064b}" for w in row), 2)
            assert int(value) == (whole >> (256 - stop)) & ((1 << (stop - start)) - 1)


def test_the_index_is_used_only_where_its_ranges_prune():
    assert usable(256, 10) and usable(256, 0) and usable(256, 15)
    assert not usable(256, 16)  # 17 ranges of 15 bits: every pair is compared instead
