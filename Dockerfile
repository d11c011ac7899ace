# slimserve image: built for 256 MB RAM / 0.1 vCPU (Render, or `docker compose up`).
#
# One stage, no TensorFlow anywhere: the bundled models are committed already compiled to ONNX, with the
# sha256 of the source and the ONNX file in each manifest.json. The build VERIFIES them with
# `python -m slimserve check` (hashes, then a load and a warm-up prediction in ONNX Runtime) instead of
# compiling, so an image can never ship an ONNX file that does not match its manifest, the build needs only
# requirements.txt (~1 minute, not a 3 GB TensorFlow stage), and it builds natively on arm64 too.
# To ship another model, compile it first (`python -m slimserve compile model.h5`, needs TensorFlow: see
# README, "Docker") and commit or mount the folder it writes.

FROM python:3.11-slim
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    MODEL_PATH=/app/artifacts/models/pneumonia/2.0.0/model.h5 \
    PORT=8000
# A fixed uid/gid so volume permissions are predictable; no home and no login shell.
RUN groupadd --system --gid 10001 slimserve \
    && useradd --system --uid 10001 --gid slimserve --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin slimserve
WORKDIR /app
# Layers from the least to the most often changed: dependencies, models, then code. A code-only commit
# reuses the dependency layer (~180 MB) and the model layer.
COPY requirements.txt ./
# Then, in the same layer, drop what serving never imports: numpy's test suites and ONNX Runtime's
# model-optimisation tools (transformers/, quantization/, tools/), ~27 MB. The `slimserve check` below
# loads and runs every model, so a removal the runtime needed would fail the build.
RUN pip install --no-cache-dir -r requirements.txt \
    && site=$(python -c 'import os, numpy; print(os.path.dirname(os.path.dirname(numpy.__file__)))') \
    && find "$site/numpy" -depth -type d -name tests -exec rm -rf {} + \
    && rm -rf "$site/onnxruntime/transformers" "$site/onnxruntime/quantization" "$site/onnxruntime/tools"
# Code and models stay owned by root: the service user can read them but not change them.
COPY artifacts/models ./artifacts/models
COPY pyproject.toml ./
COPY src ./src
COPY scripts/deploy ./scripts/deploy
# The package itself, installed as `make` installs it (editable: the bundled artifacts are found beside src/,
# and gunicorn, `python -m slimserve` and the `slimserve` command import it without any PYTHONPATH).
RUN pip install --no-cache-dir --no-deps -e .
# Fails the build when any bundled ONNX file or its source differs from the hashes in its manifest.
# Byte-compile now: at 0.1 vCPU compiling on every cold start costs seconds, and the
# container filesystem may be read-only (PYTHONDONTWRITEBYTECODE keeps runtime from trying).
RUN python -m slimserve check artifacts/models >/dev/null \
    && python -m compileall -q src scripts/deploy
# Last, so a new commit changes only this metadata, never a layer above it.
# Set with `docker build --build-arg GIT_COMMIT=$(git rev-parse HEAD)`; /version reports it.
ARG GIT_COMMIT=""
ENV GIT_COMMIT=${GIT_COMMIT}
USER 10001:10001
EXPOSE 8000
# No curl in slim images; python is already there. PORT is read at check time (Render sets 10000).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health\", timeout=4)"]
# gunicorn.conf.py binds 0.0.0.0:$PORT and names the WSGI app; run from /app (the repo root).
CMD ["gunicorn", "-c", "scripts/deploy/gunicorn.conf.py"]
