"""Locust users of the prediction service (``make loadtest`` starts the service and runs this
headless on loopback): each user posts one of the images in ``MEDCLF_LOAD_IMAGES`` (a folder)
to ``/predict``, now and then a batch of four to ``/predict/batch``, and checks the answer."""

from __future__ import annotations

import os
import random
from pathlib import Path

from locust import HttpUser, between, task

IMAGES = [p.read_bytes() for p in sorted(Path(os.environ["MEDCLF_LOAD_IMAGES"]).glob("*.png"))]
HEADERS = {"X-API-Key": os.environ["MEDCLF_API_KEY"]} if os.environ.get("MEDCLF_API_KEY") else {}


class Clinician(HttpUser):
    wait_time = between(0, 0.05)

    @task(10)
    def predict(self) -> None:
        files = {"file": ("scan.png", random.choice(IMAGES), "image/png")}
        with self.client.post("/predict", files=files, headers=HEADERS, catch_response=True) as r:
            if r.status_code != 200 or "prediction" not in r.json():
                r.failure(f"{r.status_code}: {r.text[:200]}")

    @task(1)
    def predict_batch(self) -> None:
        files = [("files", ("scan.png", random.choice(IMAGES), "image/png")) for _ in range(4)]
        with self.client.post(
            "/predict/batch", files=files, headers=HEADERS, catch_response=True
        ) as r:
            if r.status_code != 200 or len(r.json().get("results", [])) != 4:
                r.failure(f"{r.status_code}: {r.text[:200]}")
