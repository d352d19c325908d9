# Training, evaluation and export: the whole medclf, as `make install` installs it (the same
# pins). Two variants of one file:
#   docker build -f docker/train.Dockerfile -t medclf-train:cpu .                     (CPU torch)
#   docker build -f docker/train.Dockerfile --build-arg TORCH=cuda -t medclf-train:cuda .
#   docker run --rm -v "$PWD/data:/work/data:ro" -v "$PWD/runs:/work/runs" medclf-train:cpu \
#       train data.path=data
# The CUDA image needs the NVIDIA driver and container toolkit on the host (--gpus all).
ARG TORCH=cpu

FROM python:3.11-slim-bookworm AS source
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY src/ src/
RUN python -m venv /opt/medclf

# torch's CPU wheels of the locked version (2.14.1+cpu satisfies ==2.14.1): ~1 GB less
FROM source AS torch-cpu
RUN /opt/medclf/bin/python -m pip install -c requirements/lock.txt \
    --extra-index-url https://download.pytorch.org/whl/cpu .

# PyPI's Linux torch is the CUDA build; its CUDA libraries come as wheels
FROM source AS torch-cuda
RUN /opt/medclf/bin/python -m pip install -c requirements/lock.txt .

# hadolint ignore=DL3006
FROM torch-${TORCH}
RUN useradd --create-home --uid 10001 medclf \
    && mkdir /work \
    && chown medclf /work
USER 10001
WORKDIR /work
ENV PATH=/opt/medclf/bin:$PATH \
    PYTHONUNBUFFERED=1
ENTRYPOINT ["medclf"]
CMD ["--help"]
