"""``medclf data check`` and ``medclf data cache`` on 10^4 and 10^5 synthetic images: wall
time and peak memory of each command (run as a user runs it, in its own process), and what
adding 1% new files costs with the scan memo and the cache reusing earlier work, measured
side by side against the same command starting from nothing on the grown data set.

Images: 64x64 8-bit PNGs of four classes (smooth random shapes, so perceptual hashes
differ), with 1% exact and 1% near-duplicate copies planted; 200 patients per class named
in the files (``P<id>_<n>.png``), found by ``data.patient_pattern=auto``.

    .venv/bin/python benchmarks/data_at_scale.py [--images 10000 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CLASSES = ("a", "b", "c", "d")
SIZE = 64


def _write(args: tuple[str, int, int]) -> None:
    from PIL import Image

    folder, start, stop = args
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        label = CLASSES[i % len(CLASSES)]
        yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
        image = np.zeros((SIZE, SIZE))
        for _ in range(4):  # a few smooth blobs: distinct perceptual hashes
            cy, cx, r = rng.random(3)
            image += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.02 + 0.1 * r))
        image = image / image.max() * 200 + rng.normal(0, 4, image.shape)
        kind = i % 100
        target = Path(folder) / label / f"P{(i // 4) % 800:04d}_{i}.png"
        pixels = np.clip(image, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(target)
        if kind == 0:  # an exact copy under another name
            shutil.copyfile(target, target.with_name(f"P{(i // 4) % 800:04d}_{i}_copy.png"))
        elif kind == 1:  # a near-duplicate: a little noise added
            near = np.clip(pixels + rng.integers(-2, 3, pixels.shape), 0, 255).astype(np.uint8)
            Image.fromarray(near).save(target.with_name(f"P{(i // 4) % 800:04d}_{i}_near.png"))


def generate(folder: Path, start: int, stop: int) -> None:
    for label in CLASSES:
        (folder / label).mkdir(parents=True, exist_ok=True)
    step = 2000
    chunks = [(str(folder), a, min(a + step, stop)) for a in range(start, stop, step)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_write, chunks))


# The command as `python -m medclf`, reporting its own peak resident memory when it exits
# (the children's rusage of this process is a maximum over every command run so far).
PEAK = (
    "import atexit, resource, runpy, sys\n"
    "atexit.register(lambda: print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF)"
    ".ru_maxrss, file=sys.stderr))\n"
    "sys.argv = ['medclf', *sys.argv[1:]]\n"
    "runpy.run_module('medclf', run_name='__main__')\n"
)


def command(words: list[str], cwd: Path) -> dict[str, float]:
    """One medclf command in its own process: wall seconds and its peak memory."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PEAK, *words], cwd=cwd, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1: the check found something (planted duplicates)
        raise SystemExit(f"{' '.join(words)} failed:\n{proc.stderr[-3000:]}")
    peak_kb = int(proc.stderr.rsplit("PEAK_KB", 1)[1].split()[0])
    return {"seconds": round(seconds, 1), "peak_mb": round(peak_kb / 1024)}


def measure(n: int, work: Path) -> dict[str, object]:
    data, cache, fresh = work / f"data{n}", work / f"cache{n}", work / f"fresh{n}"
    t0 = time.perf_counter()
    generate(data, 0, n)
    made = time.perf_counter() - t0
    common = ["data.image_size=64"]

    def check(cache_dir: Path) -> dict[str, float]:
        out = work / "check.json"
        return command(["data", "check", str(data), *common, f"data.cache_dir={cache_dir}",
                        "--out", str(out)], work)  # fmt: skip

    def build(cache_dir: Path) -> dict[str, float]:
        return command(["data", "cache", str(data), *common, f"data.cache_dir={cache_dir}"], work)

    result: dict[str, object] = {"images": n, "generate_s": round(made, 1)}
    result["check_cold"] = check(cache)
    result["cache_cold"] = build(cache)
    generate(data, n, n + n // 100)  # 1% more files
    result["check_after_adding_1pct"] = check(cache)  # the scan memo: only new files read
    result["cache_after_adding_1pct"] = build(cache)  # earlier rows copied, new ones decoded
    result["check_grown_from_nothing"] = check(fresh)  # the baseline, same grown data
    result["cache_grown_from_nothing"] = build(fresh)
    for step in ("check", "cache"):
        inc = result[f"{step}_after_adding_1pct"]["seconds"]  # type: ignore[index]
        base = result[f"{step}_grown_from_nothing"]["seconds"]  # type: ignore[index]
        result[f"{step}_speedup"] = round(base / max(inc, 1e-9), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--keep", type=Path, help="work here and keep the images")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="medclf-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MEDCLF_PSEUDONYM_KEY", "benchmark")
    try:
        for n in args.images:
            print(json.dumps(measure(n, work)), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
