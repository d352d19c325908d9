"""The data check's near-duplicate search: multi-index hashing (``data.near_index``) vs
comparing every pair (the chunked brute force it replaced), side by side on the same
hashes, with the peak memory of each (each side runs in its own process).

The hashes: 256-bit pHashes drawn at random, with ``--planted`` percent of the images copies
of another with 0-15 bits flipped (near-duplicates at and around the default distance of
10). Both sides must return the same pairs; the script stops if they do not.

    .venv/bin/python benchmarks/near_duplicates.py [--images 10000 100000] [--distance 10]
        [--skip-brute-above 100000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

import numpy as np
import pandas as pd


def hashes(n: int, planted_percent: float, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 2**64 - 1, (n, 4), dtype=np.uint64, endpoint=True)
    for _ in range(int(n * planted_percent / 100)):
        i, j = rng.integers(0, n, 2)
        words[j] = words[i]
        for bit in rng.choice(256, int(rng.integers(0, 16)), replace=False):
            words[j, bit // 64] ^= np.uint64(1) << np.uint64(63 - bit % 64)
    return pd.Series(["".join(f"{int(w):016x}" for w in row) for row in words])


def _side(name: str, n: int, planted: float, distance: int, queue: mp.Queue) -> None:
    from medclf.data import check

    phash = hashes(n, planted)
    split = pd.Series(np.random.default_rng(1).choice(["train", "val", "test"], n))
    sha = pd.Series([str(i) for i in range(n)])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if name == "index":
        pairs = check.near_duplicate_pairs(phash, split, sha, distance)
    else:
        words = check._hash_words(phash)
        rows = np.arange(n)
        pairs = check._every_pair(words, rows, split.to_numpy(), sha.to_numpy(), distance, True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put(
        {
            "seconds": seconds,
            "peak_mb": peak / 1024,
            "added_mb": (peak - before) / 1024,
            "pairs": len(pairs),
            "digest": hash(tuple(pairs)),
        }
    )


def measure(name: str, n: int, planted: float, distance: int) -> dict:
    queue: mp.Queue = mp.get_context("spawn").Queue()
    process = mp.get_context("spawn").Process(
        target=_side, args=(name, n, planted, distance, queue)
    )
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--distance", type=int, default=10)
    parser.add_argument("--planted", type=float, default=5.0, help="percent of near copies")
    parser.add_argument("--skip-brute-above", type=int, default=100_000)
    args = parser.parse_args()
    for n in args.images:
        index = measure("index", n, args.planted, args.distance)
        line = (
            f"{n} images: index {index['seconds']:.2f} s (peak {index['peak_mb']:.0f} MB, "
            f"+{index['added_mb']:.0f} MB), {index['pairs']} pairs across splits"
        )
        if n <= args.skip_brute_above:
            brute = measure("brute", n, args.planted, args.distance)
            if brute["digest"] != index["digest"]:
                raise SystemExit(f"{n} images: the two searches found different pairs")
            line += (
                f"; every pair {brute['seconds']:.2f} s (peak {brute['peak_mb']:.0f} MB, "
                f"+{brute['added_mb']:.0f} MB): {brute['seconds'] / index['seconds']:.0f}x, "
                "same pairs"
            )
        print(line, flush=True)
    print(json.dumps({"distance": args.distance, "planted_percent": args.planted}))


if __name__ == "__main__":
    main()
