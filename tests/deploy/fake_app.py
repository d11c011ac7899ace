"""The deployed app as the fake Render serves it: /health, /ready, /version and /predict, breakable per scenario."""

from __future__ import annotations

import re
from typing import Any


def app_reply(behaviour: str, commit: str | None, broken: bool, method: str, path: str,
              body: bytes) -> tuple[int, Any]:
    """Status and JSON body for one app request; `broken` says whether the scenario's fault applies now."""
    if path == "/health":
        return 200, {"status": "ok"}
    if path == "/ready":
        return 200, {"status": "ready"}
    if path == "/version":
        shown = "f" * 40 if behaviour == "wrong_commit" and broken else commit
        return 200, {"service": "slimserve", "version": "0.1.0", "git_commit": shown,
                     "models": [{"name": "pneumonia", "version": "1.0.0"}]}
    if method == "POST" and behaviour == "predict_500" and broken:
        return 500, {"error": "internal"}
    if method == "POST" and b'name="file"' in body:
        name = re.search(rb'filename="([^"]+)"', body)
        return 200, {"filename": name[1].decode() if name else None, "prediction": "PNEUMONIA",
                     "probability": 0.93, "model": "pneumonia", "version": "1.0.0", "request_id": "test"}
    return 400, {"error": "no file"}
