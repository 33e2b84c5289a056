# syntax=docker/dockerfile:1.7
# One image for the scoring service and the jobs (retrain, schedule, score --all, crm sync):
#   docker build -t persona:0.1.0 .
#   docker run -p 3000:3000 -e PERSONA_API_KEYS=... -v persona-data:/data persona:0.1.0          # serve
#   docker run -v persona-data:/data persona:0.1.0 retrain                                      # a job
# deploy/k8s/ runs it as a Deployment (serve) and CronJobs (retrain). The environment comes from uv.lock,
# the same lock `make env` installs; nothing is resolved at build time.
# Not built by the test suite (no Docker engine there): tests/code/test_deploy.py lints this file and
# replays the build stage's COPY and `uv sync` steps in a fresh folder, then runs the result.

# Pin a digest (python:3.11-slim-bookworm@sha256:...) for reproducible production builds.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the locked environment in /app/.venv -------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Dependencies first (a layer that changes only with uv.lock), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
COPY configs/ configs/
COPY core/ core/
COPY features/ features/
COPY feature_repo/ feature_repo/
COPY models/ models/
COPY artifacts/ artifacts/
COPY training/ training/
COPY serving/ serving/
COPY persona/ persona/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

# ---- runtime: no compiler, no uv, a non-root user -------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# libgomp1: LightGBM's OpenMP runtime (the slim image lacks it). Unpinned on purpose: it follows the
# base image's Debian release and its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 persona \
    && useradd --uid 1000 --gid persona --home-dir /home/persona --create-home --shell /usr/sbin/nologin persona \
    && mkdir -p /data \
    && chown persona:persona /data
COPY --from=build --chown=persona:persona /app /app
WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PERSONA_DATA_DIR=/data \
    BENTOML_HOME=/home/persona/bentoml \
    MLFLOW_DISABLE_TELEMETRY=true \
    BENTOML_DO_NOT_TRACK=true \
    DO_NOT_TRACK=1
USER 1000:1000
VOLUME ["/data"]
EXPOSE 3000
# Kubernetes probes /livez and /readyz itself; this serves plain `docker run`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:3000/livez', timeout=4)"]
ENTRYPOINT ["persona"]
CMD ["serve", "--host", "0.0.0.0", "--port", "3000"]
