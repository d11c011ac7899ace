#!/usr/bin/env bash
# `make docker-test`: build the image, run it like production (256 MB, no swap, 0.1 CPU, read-only, tmpfs
# /tmp) on host networking bound to 127.0.0.1 only, smoke test it (scripts/deploy/smoke.py) and send one
# request per served model (tests/docker/exercise_models.py); then the same through docker-compose with
# tests/docker/compose.host.yml. Uses real Docker when an engine answers, else ../shared/tools/docker-local.sh
# (dockerd from Debian + a stand-in python:3.11-slim base). Everything it started -- containers, the compose
# project, and dockerd if it had to start one -- is stopped on exit, also on failure.
# Figures (build time, image size, cold start to the first /predict, memory) go to artifacts/bench/docker.json.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
TAG=${DOCKER_TEST_TAG:-slimserve:docker-test}
PORT=${DOCKER_TEST_PORT:-18311}
COMPOSE_PORT=${DOCKER_TEST_COMPOSE_PORT:-18312}
LOCAL=${DOCKER_LOCAL:-$ROOT/../shared/tools/docker-local.sh}
export WORK=${WORK:-${TMPDIR:-/tmp}/docker-local}
COMMIT=$(git -C "$ROOT" rev-parse HEAD)
NAME="slimserve-docker-test-$$"
PROJECT="slimservedockertest$$"
SCRATCH=$(mktemp -d)
# docker-compose v1 (Debian's) cannot drop `ports` in an override file, and it refuses published ports on
# the host network: compose runs a copy of docker-compose.yml without its `ports` entries, plus the override.
COMPOSE=(docker-compose -p "$PROJECT" --project-directory "$ROOT" -f "$SCRATCH/docker-compose.yml"
         -f "$ROOT/tests/docker/compose.host.yml")
OUT=$ROOT/artifacts/bench/docker.json
started_dockerd=""
log() { printf '[docker-test %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

cleanup() {
  local code=$?
  docker rm --force "$NAME" >/dev/null 2>&1 || true
  if [[ -f $SCRATCH/docker-compose.yml ]] && command -v docker-compose >/dev/null; then
    DOCKER_TEST_TAG=$TAG DOCKER_TEST_COMPOSE_PORT=$COMPOSE_PORT "${COMPOSE[@]}" down --timeout 5 >/dev/null 2>&1 || true
  fi
  if [[ -n $started_dockerd && -f $WORK/dockerd.pid ]]; then
    local pid; pid=$(cat "$WORK/dockerd.pid")
    log "stopping dockerd $pid (this script started it)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -rf "$SCRATCH"
  exit "$code"
}
trap cleanup EXIT INT TERM

# Wait until a URL answers 2xx (GET, or POST of the sample image with --predict); print the seconds waited.
wait_for() {
  local url=$1 mode=${2:-} t0; t0=$(now)
  local args=(-fsS -o /dev/null -m 30)
  [[ $mode == --predict ]] && args+=(-F "file=@$ROOT/tests/data/sample_xray.jpeg")
  until curl "${args[@]}" "$url" 2>/dev/null; do
    if (( $(since "$t0" | cut -d. -f1) > 240 )); then log "no answer from $url after 240 s"; return 1; fi
    sleep 0.2
  done
  since "$t0"
}

# ---- build -------------------------------------------------------------------------------------------
t0=$(now)
if docker info >/dev/null 2>&1; then
  log "Docker engine found: docker build"
  DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-1} docker build --build-arg GIT_COMMIT="$COMMIT" -t "$TAG" "$ROOT"
else
  log "no Docker engine: $LOCAL (installs and starts dockerd, builds the stand-in base)"
  started_dockerd=1
  "$LOCAL" "$ROOT" "$TAG"
fi
build_s=$(since "$t0")
size_mb=$(docker image inspect "$TAG" --format '{{.Size}}' | awk '{ printf "%.0f", $1 / 1e6 }')
log "build (incl. engine start) ${build_s} s, image ${size_mb} MB"

# ---- the image, as production runs it -------------------------------------------------------------------
image_id=$(docker image inspect "$TAG" --format '{{.Id}}')
docker run --detach --name "$NAME" --network host -e PORT="$PORT" -e IMAGE_DIGEST="$image_id" \
  -e GUNICORN_CMD_ARGS="--bind 127.0.0.1:$PORT" \
  --memory 256m --memory-swap 256m --cpus 0.1 --read-only --tmpfs /tmp "$TAG" >/dev/null
cold_s=$(wait_for "http://127.0.0.1:$PORT/predict" --predict) || { docker logs "$NAME" >&2; exit 1; }
log "container start to first /predict 200: ${cold_s} s at 0.1 CPU"
if ss -ltn "sport = :$PORT" | awk 'NR > 1 { print $4 }' | grep -qv '^127\.0\.0\.1:'; then
  log "the container listens beyond loopback:"; ss -ltn "sport = :$PORT" >&2; exit 1
fi
"$PY" "$ROOT/scripts/deploy/smoke.py" --url "http://127.0.0.1:$PORT" --commit "$COMMIT" --wait 60 --interval 1
"$PY" "$ROOT/tests/docker/exercise_models.py" --url "http://127.0.0.1:$PORT"
shown=$(curl -fsS "http://127.0.0.1:$PORT/version" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["image_digest"])')
[[ $shown == "$image_id" ]] || { log "/version reports image $shown, not $image_id"; exit 1; }
limits=$(docker inspect "$NAME" --format '{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.ReadonlyRootfs}}')
[[ $limits == "268435456 268435456 100000000 true" ]] || { log "unexpected limits: $limits"; exit 1; }
mem=$(docker stats --no-stream --format '{{.MemUsage}}' "$NAME")
user=$(docker exec "$NAME" id -u)
[[ $user != 0 ]] || { log "the container runs as root"; exit 1; }
t0=$(now); docker stop "$NAME" >/dev/null; stop_s=$(since "$t0")
docker rm "$NAME" >/dev/null

# ---- the same through docker-compose (host network override, the image just built) ---------------------
awk '/^    ports:$/ { skip = 1; next } skip && /^      - / { next } { skip = 0; print }' \
  "$ROOT/docker-compose.yml" >"$SCRATCH/docker-compose.yml"
if grep -q 'ports:' "$SCRATCH/docker-compose.yml"; then log "could not drop ports from the compose copy"; exit 1; fi
export DOCKER_TEST_TAG=$TAG DOCKER_TEST_COMPOSE_PORT=$COMPOSE_PORT
"${COMPOSE[@]}" up --detach --no-build
compose_s=$(wait_for "http://127.0.0.1:$COMPOSE_PORT/ready") || { "${COMPOSE[@]}" logs >&2; exit 1; }
"$PY" "$ROOT/scripts/deploy/smoke.py" --url "http://127.0.0.1:$COMPOSE_PORT" --commit "$COMMIT" --wait 60 --interval 1
"$PY" "$ROOT/tests/docker/exercise_models.py" --url "http://127.0.0.1:$COMPOSE_PORT"
cid=$("${COMPOSE[@]}" ps -q api)
climits=$(docker inspect "$cid" --format '{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.ReadonlyRootfs}}')
[[ $climits == "268435456 268435456 100000000 true" ]] || { log "unexpected compose limits: $climits"; exit 1; }
"${COMPOSE[@]}" down --timeout 10 >/dev/null

mkdir -p "$(dirname "$OUT")"
cat >"$OUT" <<JSON
{"commit": "$COMMIT", "engine": "$([[ -n $started_dockerd ]] && echo docker-local stand-in base || echo docker)",
 "build_s": $build_s, "image_size_mb": $size_mb, "cold_start_to_first_predict_s": $cold_s,
 "compose_start_to_ready_s": $compose_s, "docker_stats_mem": "$mem", "docker_stop_s": $stop_s}
JSON
log "passed: $(tr -d '\n' <"$OUT")"
