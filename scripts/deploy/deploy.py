"""Thin WSGI entry: exposes `app` for gunicorn (`scripts.deploy.deploy:app`) and runs a dev server directly."""

from __future__ import annotations

import os

from slimserve import create_app

app = create_app()

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
