"""Configuration: read from the environment in this one place, every variable documented in the README."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from slimserve.paths import BUNDLED_MODEL, BUNDLED_MODELS

# The decode budget. The container has 256 MB; gunicorn's master plus one worker with every model loaded
# take ~122 MB RSS (../shared/FACTS.md); a 10 MB upload is held twice (werkzeug's part and our bytes).
# That leaves ~114 MB, of which 80 MB may go to the one decode at a time (imaging.DecodeSlot) and the
# rest is headroom for allocator fragmentation and the other threads' small requests. The 80 MB must hold
# every copy the pipeline makes (decoded image, colour conversion, transpose, crop), which
# image_budget.working_bytes counts.
DEFAULT_MAX_DECODE_BYTES = 80 * 1024 * 1024
# A second image waits this long for the decode slot, then gets 503 `busy`: about one of the largest
# accepted decodes at 0.1 vCPU (a 4000×4000 16-bit PNG: 0.2 s of CPU), so ordinary concurrency queues.
DEFAULT_DECODE_WAIT_SECONDS = 2.0

# name in app.config -> (environment variable, parser, default)
SETTINGS: dict[str, tuple[str, Any, Any]] = {
    "MODEL_PATH": ("MODEL_PATH", str, str(BUNDLED_MODEL)),
    # Every model under this folder is served too; set it empty to serve MODEL_PATH alone.
    "MODEL_REPOSITORY": ("MODEL_REPOSITORY", str, str(BUNDLED_MODELS)),
    "DEFAULT_MODEL": ("SLIMSERVE_DEFAULT_MODEL", str, None),
    # Default versions, "name=version,…" (else the newest of each name; MODEL_PATH's file for its own name).
    "MODEL_VERSIONS": ("SLIMSERVE_MODEL_VERSIONS", str, ""),
    # `/invocations` without a model name and with a table body, when the default model takes images.
    "DEFAULT_TABLE_MODEL": ("SLIMSERVE_DEFAULT_TABLE_MODEL", str, None),
    "RUNTIME": ("SLIMSERVE_RUNTIME", str, "onnx"),
    "MAX_UPLOAD_BYTES": ("SLIMSERVE_MAX_UPLOAD_BYTES", int, 10 * 1024 * 1024),
    "MAX_IMAGE_PIXELS": ("SLIMSERVE_MAX_IMAGE_PIXELS", int, 40_000_000),
    "MAX_DECODE_BYTES": ("SLIMSERVE_MAX_DECODE_BYTES", int, DEFAULT_MAX_DECODE_BYTES),
    "DECODE_WAIT_SECONDS": ("SLIMSERVE_DECODE_WAIT_SECONDS", float, DEFAULT_DECODE_WAIT_SECONDS),
    "MAX_ROWS": ("SLIMSERVE_MAX_ROWS", int, 10_000),
    # Body limit of the tabular routes; unset, it is sized per model from MAX_ROWS and its features.
    "MAX_TABLE_BYTES": ("SLIMSERVE_MAX_TABLE_BYTES", int, None),
    "MIN_IMAGE_SIDE": ("SLIMSERVE_MIN_IMAGE_SIDE", int, None),
    "READY_WAIT_SECONDS": ("SLIMSERVE_READY_WAIT_SECONDS", float, 30.0),
    "LOAD_ASYNC": ("SLIMSERVE_LOAD_ASYNC", "bool", True),
    # Off: a server that rewrites model files at start-up surprises; compile with `slimserve compile` instead.
    "AUTO_COMPILE": ("SLIMSERVE_AUTO_COMPILE", "bool", False),
    "INTRA_OP_THREADS": ("SLIMSERVE_INTRA_OP_THREADS", int, 1),
    # The buffering worker (slimserve.worker): read deadlines, the prediction lane, the body budget.
    "MAX_INFLIGHT": ("SLIMSERVE_MAX_INFLIGHT", int, 4),
    "HEADER_SECONDS": ("SLIMSERVE_HEADER_TIMEOUT", float, 10.0),
    "IDLE_SECONDS": ("SLIMSERVE_IDLE_TIMEOUT", float, 5.0),
    "MIN_BODY_RATE": ("SLIMSERVE_MIN_BODY_RATE", int, 50_000),
    "BODY_BUDGET": ("SLIMSERVE_BODY_BUDGET", int, 24 * 1024 * 1024),
    "MAX_HEADER_BYTES": ("SLIMSERVE_MAX_HEADER_BYTES", int, 64 * 1024),
    # Rate limiting (slimserve.ratelimit): per client, in the `limits` notation ("60/minute;5/second").
    "RATELIMIT_ENABLED": ("SLIMSERVE_RATE_LIMIT_ENABLED", "bool", True),
    "RATE_LIMIT_PREDICT": ("SLIMSERVE_RATE_LIMIT_PREDICT", str, "60/minute"),
    "RATE_LIMIT_INVOCATIONS": ("SLIMSERVE_RATE_LIMIT_INVOCATIONS", str, "60/minute"),
    "RATE_LIMIT_DEFAULT": ("SLIMSERVE_RATE_LIMIT_DEFAULT", str, "300/minute"),
    "RATELIMIT_STORAGE_URI": ("RATELIMIT_STORAGE_URI", str, "memory://"),
    "TRUSTED_PROXIES": ("SLIMSERVE_TRUSTED_PROXIES", int, 0),
    # Access control (slimserve.auth) and the audit trail (slimserve.audit); see the README's Security section.
    "AUTH": ("SLIMSERVE_AUTH", str, "auto"),  # auto: on when keys or an issuer are configured; required: always
    "API_KEYS": ("SLIMSERVE_API_KEYS", str, ""),
    "MODEL_ACCESS": ("SLIMSERVE_MODEL_ACCESS", str, ""),  # per-model overrides: "heart_failure=mfa,aids=key"
    "OIDC_ISSUER": ("SLIMSERVE_OIDC_ISSUER", str, None),
    "OIDC_AUDIENCE": ("SLIMSERVE_OIDC_AUDIENCE", str, None),
    "OIDC_JWKS_URL": ("SLIMSERVE_OIDC_JWKS_URL", str, None),
    "OIDC_ALGORITHMS": ("SLIMSERVE_OIDC_ALGORITHMS", str, "RS256,ES256"),
    "OIDC_MODELS_CLAIM": ("SLIMSERVE_OIDC_MODELS_CLAIM", str, "slimserve_models"),
    "AUDIT_KEY": ("SLIMSERVE_AUDIT_KEY", str, None),
    "AUDIT_SINK": ("SLIMSERVE_AUDIT_SINK", str, "auto"),  # auto: postgres with DATABASE_URL, else stdout; off
    "AUDIT_QUEUE": ("SLIMSERVE_AUDIT_QUEUE", int, 10_000),
    "DATABASE_URL": ("DATABASE_URL", str, None),
    "CORS_ORIGINS": ("SLIMSERVE_CORS_ORIGINS", str, ""),
    "GIT_COMMIT": ("GIT_COMMIT", str, None),
    "RENDER_GIT_COMMIT": ("RENDER_GIT_COMMIT", str, None),
    # The image this process runs in (e.g. sha256:…), when whoever starts the container knows it.
    "IMAGE_DIGEST": ("IMAGE_DIGEST", str, None),
    # Drift monitoring (slimserve.drift): window of served rows, when a column counts as drifted, where the
    # counts live (auto: PostgreSQL with DATABASE_URL, else memory; off: no monitoring).
    "METRICS": ("SLIMSERVE_METRICS", "bool", True),  # /metrics and the per-request counters
    "METRICS_TOKEN": ("SLIMSERVE_METRICS_TOKEN", str, None),  # if set, /metrics needs it as a bearer token
    "DRIFT_STORE": ("SLIMSERVE_DRIFT_STORE", str, "auto"),
    "DRIFT_WINDOW": ("SLIMSERVE_DRIFT_WINDOW", int, 500),
    "DRIFT_MIN_ROWS": ("SLIMSERVE_DRIFT_MIN_ROWS", int, 200),
    "DRIFT_PSI_WARN": ("SLIMSERVE_DRIFT_PSI_WARN", float, 0.1),
    "DRIFT_PSI_DRIFT": ("SLIMSERVE_DRIFT_PSI_DRIFT", float, 0.25),
    "DRIFT_ALPHA": ("SLIMSERVE_DRIFT_ALPHA", float, 0.001),
    "DRIFT_FLUSH_SECONDS": ("SLIMSERVE_DRIFT_FLUSH_SECONDS", float, 10.0),
}
WORKER_SETTINGS = ("MAX_INFLIGHT", "HEADER_SECONDS", "IDLE_SECONDS", "MIN_BODY_RATE", "BODY_BUDGET",
                   "MAX_HEADER_BYTES")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse(name: str, raw: str, parser: Any) -> Any:
    if parser == "bool":
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ValueError(f"{name} must be true or false")
    try:
        return parser(raw)
    except ValueError:
        raise ValueError(f"{name} has an invalid value") from None


def from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings from environment variables, falling back to defaults."""
    env = os.environ if environ is None else environ
    config: dict[str, Any] = {}
    for key, (variable, parser, default) in SETTINGS.items():
        raw = env.get(variable)
        if raw == "" and key == "MODEL_REPOSITORY":
            config[key] = None  # explicitly switched off
        else:
            config[key] = default if raw is None or raw == "" else _parse(variable, raw, parser)
    return config


def auth_enabled(config: Mapping[str, Any]) -> bool:
    """Whether access control is on: SLIMSERVE_AUTH=required, or any key, issuer or model policy configured."""
    mode = (config.get("AUTH") or "auto").strip().lower()
    if mode not in ("auto", "required"):
        raise ValueError("SLIMSERVE_AUTH must be auto or required")
    configured = (config.get("API_KEYS") or "").strip() or (config.get("MODEL_ACCESS") or "").strip()
    return mode == "required" or bool(configured or config.get("OIDC_ISSUER"))
