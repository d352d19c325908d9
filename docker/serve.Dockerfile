# The prediction service, slim: ONNX Runtime and the web stack, no training code or torch.
#   docker build -f docker/serve.Dockerfile -t medclf-serve .
#   docker run -p 127.0.0.1:8000:8000 -v "$PWD/runs/NAME/export:/models:ro" medclf-serve
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY src/ src/
COPY docker/install-serve.sh docker/
RUN sh docker/install-serve.sh /opt/medclf /src

FROM python:3.11-slim-bookworm
COPY --from=build /opt/medclf /opt/medclf
RUN useradd --create-home --uid 10001 medclf \
    && mkdir /data \
    && chown medclf /data
USER 10001
# the audit log, the pseudonym key and fetched registry versions live in /data (a volume)
WORKDIR /data
VOLUME ["/data"]
ENV PATH=/opt/medclf/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1
EXPOSE 8000
# healthy once the model has answered its warm-up batch (python: the image has no curl)
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:8000/ready', timeout=4).status != 200)"]
ENTRYPOINT ["medclf", "serve"]
CMD ["model=/models/model.onnx", "host=0.0.0.0", "port=8000"]
