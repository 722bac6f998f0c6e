# syntax=docker/dockerfile:1
# pd-gateway: the FastAPI gateway in front of NVIDIA Triton. Build from the repository root:
#   docker build -f docker/gateway.Dockerfile -t pd-gateway:0.1.0 .
# torch is never installed: the gateway does not import it (torch lives in the `train` extra only).

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a self-contained virtual environment in /opt/venv -------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The locked dependencies first (requirements.lock: `make lock`, every file hash-checked), so this layer is
# reused while only the code changes and two builds of one commit get the same packages.
COPY requirements.lock ./
RUN pip install --no-deps --require-hashes -r requirements.lock
# README.m[d]: the glob lets the build work before the README exists (pyproject names it).
COPY pyproject.toml README.m[d] ./
COPY gateway ./gateway
# The package itself, without resolving anything: no `train` extra (so no torch) and no `embedded` extra
# (the image talks to NVIDIA's Triton container, so it needs no Triton binary of its own).
RUN pip install --no-deps --no-build-isolation . \
    && pip check \
    && python -c "import importlib.util as u, sys; sys.exit('torch must not be in the gateway image' if u.find_spec('torch') else 0)" \
    && python -c "import gateway.app, gateway.cli, gateway.seed"

# ---- runtime: the venv on a clean base, running as a non-root user ---------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
ARG GID=10001
LABEL org.opencontainers.image.title="pd-gateway" \
      org.opencontainers.image.description="Partial-discharge detection gateway for NVIDIA Triton"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    MODEL_REPOSITORY=/models \
    LOG_JSON=true
# TRITON_GRPC_URL is deliberately not set here: the deployment gives it (compose: triton:8001).
# Left empty, `pd-gateway serve` would start an embedded Triton inside this container instead.
RUN groupadd --system --gid ${GID} pdgw \
    && useradd --system --uid ${UID} --gid pdgw --home-dir /app --shell /usr/sbin/nologin pdgw \
    && mkdir -p /app /models \
    && chown pdgw:pdgw /app /models
COPY --from=build /opt/venv /opt/venv
# The shipped model repository: Triton's seeding initContainer (helm) and `model-init` (compose) copy it
# into the empty model volume with `python -m gateway.seed` before Triton starts.
COPY --chown=root:root model_repository /opt/pd-gateway/model_repository
WORKDIR /app
USER ${UID}:${GID}
EXPOSE 8000
# Liveness only (/healthz never touches Triton or Redis); slim has no curl, Python does the GET.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', timeout=2)"]
# uvicorn handles SIGTERM: stops accepting, drains in-flight requests (--graceful-timeout-s), exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["pd-gateway"]
CMD ["serve"]
