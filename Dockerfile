# slimserve image: built for 256 MB RAM / 0.1 vCPU (Render, or `docker compose up`).
#
# Stage 1 (build) has TensorFlow + tf2onnx and compiles every bundled Keras .h5 to ONNX, so an image can
# never ship a compiled model older than its .h5. Stage 2 (runtime) gets only requirements.txt (ONNX
# Runtime, no TensorFlow: that alone needs ~565 MB) plus the compiled models, and runs as a non-root user.

FROM python:3.11-slim AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONPATH=/app/src
WORKDIR /app
# Requirements first: this layer (the slow TensorFlow install) is reused until they change.
COPY requirements.txt requirements-dev.txt ./
RUN pip install --no-cache-dir -r requirements-dev.txt
COPY src ./src
COPY artifacts/models ./artifacts/models
# `xargs` fails the build when any compile fails; `-r` keeps a tree without .h5 files (tabular .onnx) valid.
RUN find artifacts/models -name '*.h5' -print0 | xargs -0 -r -n 1 python -m slimserve compile


FROM python:3.11-slim AS runtime
# Set with `docker build --build-arg GIT_COMMIT=$(git rev-parse HEAD)`; /version reports it.
ARG GIT_COMMIT=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONPATH=/app/src \
    MODEL_PATH=/app/artifacts/models/pneumonia/1.0.0/model.h5 \
    PORT=8000 \
    GIT_COMMIT=${GIT_COMMIT}
# A fixed uid/gid so volume permissions are predictable; no home and no login shell.
RUN groupadd --system --gid 10001 slimserve \
    && useradd --system --uid 10001 --gid slimserve --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin slimserve
WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
# Code and models stay owned by root: the service user can read them but not change them.
COPY src ./src
COPY scripts/deploy ./scripts/deploy
COPY --from=build /app/artifacts/models ./artifacts/models
# Byte-compile now: at 0.1 vCPU compiling on every cold start costs seconds, and the
# container filesystem may be read-only (PYTHONDONTWRITEBYTECODE keeps runtime from trying).
RUN python -m compileall -q src scripts/deploy
USER 10001:10001
EXPOSE 8000
# No curl in slim images; python is already there. PORT is read at check time (Render sets 10000).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health\", timeout=4)"]
# gunicorn.conf.py binds 0.0.0.0:$PORT and names the WSGI app; run from /app (the repo root).
CMD ["gunicorn", "-c", "scripts/deploy/gunicorn.conf.py"]
