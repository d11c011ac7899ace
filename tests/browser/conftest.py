"""A real Chromium (Debian's package, installed here if missing) driven by Playwright, and the real server.

Playwright's own browser download cannot work on these machines, so the browser is launched from
/usr/bin/chromium. Tests skip, saying why, only when Chromium is absent and apt-get cannot install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from slimserve.paths import BUNDLED_MODELS
from tests.server_process import REPO, ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO / "tmp" / "browser"  # /tmp/ is git-ignored: kept as test artifacts, never committed


def ensure_chromium() -> str | None:
    """None when /usr/bin/chromium is there (installed now if need be), else the reason it is not."""
    if CHROMIUM.exists():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "Chromium is not installed and apt-get cannot run here (not root, or no apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=False)
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed: {done.stderr.strip()[-300:]}"
    return None if CHROMIUM.exists() else "apt-get installed chromium but /usr/bin/chromium is missing"


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium for the whole session."""
    reason = ensure_chromium()
    if reason:
        pytest.skip(f"browser tests skipped: {reason}")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def start_server(env: dict[str, str]) -> ServerProcess:
    """gunicorn on loopback with every bundled model, no rate limit (the tests send many requests)."""
    server = ServerProcess({"MODEL_REPOSITORY": str(BUNDLED_MODELS), "SLIMSERVE_RATE_LIMIT_ENABLED": "false",
                            "SLIMSERVE_AUDIT_SINK": "off", **env})
    try:
        server.wait_ready(timeout=120)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def server():
    """The real server with access control off."""
    server = start_server({})
    try:
        yield server
    finally:
        server.stop()


class Page:
    """A browser tab on the server that records console errors and uncaught exceptions."""

    def __init__(self, browser, base: str, width: int = 1024, height: int = 900) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height}, base_url=base)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"{m.text} ({m.location.get('url')})")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def shot(self, name: str) -> None:
        """Keep a full-page screenshot as a test artifact."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        """Close the tab; the test fails if the page logged any error."""
        errors = list(self.errors)
        self.context.close()
        assert errors == [], errors


@pytest.fixture
def tab(browser, server):
    """A fresh tab (1024 px wide) on the server, checked for console errors at the end."""
    page = Page(browser, f"http://127.0.0.1:{server.port}")
    yield page
    page.close()
