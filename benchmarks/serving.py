"""The prediction service against raw onnxruntime on the same model, images and machine, in
one run: served throughput (micro-batching, concurrent clients) vs onnxruntime batch-32
images/s (target >= 0.8x), served batch-1 p50 (one client, whole HTTP round trip with decode
and preprocessing) vs onnxruntime batch-1 p50 on a preprocessed image (target <= 1.2x), and
``/health`` p99 while the service is at full load (target < 50 ms).

The model is the resnet18 224 px run of ``int8_inference.py`` (trained for two batches on the
phantoms: speed does not depend on what it learned), or ``--run RUN``. Both sides get
``--threads`` inference threads; the load clients run on the same cores, as they would in
``make loadtest``: on a 2-core machine that costs the service some of its throughput.

    .venv/bin/python benchmarks/serving.py [--run RUN] [--threads 2] [--clients 16] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_inference import _medclf, tiny_run


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def raw_onnxruntime(onnx: Path, images: list[Path], threads: int) -> dict[str, float]:
    """batch-1 p50 (ms) and batch-32 images/s of the session alone, on preprocessed images."""
    import numpy as np

    from medclf.inference.predictor import OnnxPredictor

    predictor = OnnxPredictor(onnx, threads=threads)
    x = np.stack([predictor.prepare(p)[0] for p in (images * 32)[:32]])
    for _ in range(3):
        predictor.predict_batch(x[:1])
        predictor.predict_batch(x)
    single = []
    for i in range(200):
        start = time.perf_counter()
        predictor.predict_batch(x[i % 32 : i % 32 + 1])
        single.append((time.perf_counter() - start) * 1000)
    rates = []
    for _ in range(10):
        start = time.perf_counter()
        predictor.predict_batch(x)
        rates.append(32 / (time.perf_counter() - start))
    return {"p50_ms": statistics.median(single), "images_per_s": statistics.median(rates)}


def start_server(onnx: Path, port: int, threads: int, work: Path) -> subprocess.Popen:
    import httpx

    cmd = [
        sys.executable, "-m", "medclf", "serve", f"model={onnx}", f"port={port}",
        f"serve.threads={threads}", "serve.max_batch=16", "serve.max_concurrent_uploads=16",
        f"serve.audit_url=sqlite:///{work / 'audit.db'}",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    sys.exit("the service did not become ready in 120 s")


async def served(url: str, files: list[bytes], clients: int, seconds: float) -> dict[str, float]:
    import httpx

    async with httpx.AsyncClient(timeout=60) as http:
        for data in files[:5]:  # warm-up
            await http.post(f"{url}/predict", files={"file": data})
        single, inside = [], []
        for i in range(100):
            start = time.perf_counter()
            r = await http.post(f"{url}/predict", files={"file": files[i % len(files)]})
            r.raise_for_status()
            single.append((time.perf_counter() - start) * 1000)
            inside.append(r.json()["latency_ms"])  # the server's own: no client, no HTTP
        done, health = 0, []
        stop_at = time.monotonic() + seconds

        async def client(k: int) -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                r = await http.post(f"{url}/predict", files={"file": files[k % len(files)]})
                r.raise_for_status()
                done += 1

        async def probe() -> None:
            while time.monotonic() < stop_at:
                start = time.perf_counter()
                (await http.get(f"{url}/health")).raise_for_status()
                health.append((time.perf_counter() - start) * 1000)
                await asyncio.sleep(0.05)

        started = time.perf_counter()
        await asyncio.gather(probe(), *(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "p50_ms": statistics.median(single),
        "server_p50_ms": statistics.median(inside),
        "images_per_s": done / elapsed,
        "health_p99_ms": _percentile(health, 99),
        "requests": done,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run = args.run or tiny_run(work)
        if not (run / "export" / "model.onnx").is_file():
            _medclf("export", f"model={run}", cwd=work)
        onnx = run / "export" / "model.onnx"
        table = pd.read_csv(run / "split.csv")
        images = [Path(p) for p in table.loc[table["split"] == "test", "path"]][:32]
        raw = raw_onnxruntime(onnx, images, args.threads)
        server = start_server(onnx, args.port, args.threads, work)
        try:
            files = [p.read_bytes() for p in images]
            url = f"http://127.0.0.1:{args.port}"
            live = asyncio.run(served(url, files, args.clients, args.seconds))
        finally:
            server.terminate()
            server.wait(timeout=30)
    report(raw, live, args)


def report(raw: dict[str, float], live: dict[str, float], args: argparse.Namespace) -> None:
    print(f"resnet18 224 px, {args.threads} inference threads, {os.cpu_count()} cores")
    print(
        f"onnxruntime alone: batch-1 p50 {raw['p50_ms']:.1f} ms, "
        f"batch-32 {raw['images_per_s']:.1f} images/s"
    )
    print(
        f"medclf serve: one client p50 {live['p50_ms']:.1f} ms (inside the server "
        f"{live['server_p50_ms']:.1f} ms); {args.clients} clients for "
        f"{args.seconds:g} s: {live['images_per_s']:.1f} images/s ({live['requests']} requests), "
        f"/health p99 {live['health_p99_ms']:.1f} ms"
    )
    throughput = live["images_per_s"] / raw["images_per_s"]
    latency = live["p50_ms"] / raw["p50_ms"]
    print(f"throughput served/raw batch-32: {throughput:.2f}x (target >= 0.8x)")
    print(f"p50 served/raw batch-1: {latency:.2f}x (target <= 1.2x)")
    inside = live["server_p50_ms"] / raw["p50_ms"]
    print(f"p50 inside the server/raw batch-1: {inside:.2f}x (decode, preprocessing, audit)")
    print(f"/health p99 under load: {live['health_p99_ms']:.1f} ms (target < 50 ms)")


if __name__ == "__main__":
    main()
