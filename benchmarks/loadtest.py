"""``make loadtest``: a bounded locust run against ``medclf serve`` on 127.0.0.1 only.

Serves ``--model`` (a run folder, an ONNX file or models:/..., with ``--images FOLDER`` of
PNG files to send; by default the resnet18 224 px run of ``int8_inference.py``, built in a
temporary folder, and its test images), then runs locust headless with
``--users`` users (default 8) for ``--time`` (default 20s) and prints its summary: requests,
failures, p50/p95/p99 per route, requests/s. Loopback only: the host is fixed.

    .venv/bin/python benchmarks/loadtest.py [--model RUN|FILE.onnx --images DIR] [--users 8]
        [--time 20s]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_inference import _medclf, tiny_run

from serving import start_server

HERE = Path(__file__).resolve().parent
MAX_USERS, MAX_SECONDS = 64, 300  # bounded: a load test is not a soak test


def _seconds(text: str) -> float:
    unit = {"s": 1, "m": 60}.get(text[-1])
    return float(text[:-1]) * unit if unit else float(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=str)
    parser.add_argument("--images", type=Path)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--time", default="20s")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    if bool(args.model) != bool(args.images):
        sys.exit("--model and --images go together (a folder of PNG files to send)")
    if not 1 <= args.users <= MAX_USERS or not 0 < _seconds(args.time) <= MAX_SECONDS:
        sys.exit(f"--users 1..{MAX_USERS} and --time up to {MAX_SECONDS}s")
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.model:
            model = args.model
            images = sorted(args.images.glob("*.png"))[:16]
        else:
            run = tiny_run(work)
            _medclf("export", f"model={run}", cwd=work)
            model = str(run / "export" / "model.onnx")
            table = pd.read_csv(run / "split.csv")
            images = [Path(p) for p in table.loc[table["split"] == "test", "path"]][:16]
        folder = work / "images"
        folder.mkdir()
        for i, path in enumerate(images):
            shutil.copyfile(path, folder / f"{i}.png")
        server = start_server(Path(model), args.port, args.threads, work)
        try:
            env = {**os.environ, "MEDCLF_LOAD_IMAGES": str(folder)}
            subprocess.run(
                [
                    sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"),
                    "--headless", "--host", f"http://127.0.0.1:{args.port}",
                    "--users", str(args.users), "--spawn-rate", str(args.users),
                    "--run-time", args.time, "--only-summary", "--stop-timeout", "10",
                ],
                env=env, check=False, timeout=_seconds(args.time) + 120,
            )  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
