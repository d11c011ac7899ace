"""Thin WSGI entry: exposes `app` for gunicorn (`scripts.deploy.deploy:app`) and runs a dev server directly."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Running from a clone without installing the package: put src/ on the path.
_SRC = Path(__file__).resolve().parents[2] / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

from slimserve import create_app  # noqa: E402

app = create_app()

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
