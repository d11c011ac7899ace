"""Security headers on every response, and CORS only for origins the configuration names."""

from __future__ import annotations

from flask import Flask, g, request

# JSON answers load nothing and may be framed by no one.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
HSTS = "max-age=31536000; includeSubDomains"
CORS_HEADERS = "Authorization, Content-Type, X-API-Key, X-Filename, X-Patient-ID, X-Request-ID"


# The pages (slimserve.web) load their scripts and styles as files from this origin: no inline code runs.
# data: images are Swagger UI's icons (SVG in its stylesheet); blob: is the X-ray preview.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def init_app(app: Flask) -> None:
    """Add the headers (and echo the request id) in one after_request hook."""
    html_csp = PAGE_CSP
    trusted_proxy = app.config.get("TRUSTED_PROXIES", 0) > 0  # the proxy that also sets X-Forwarded-Proto
    origins = {o.strip().rstrip("/") for o in (app.config.get("CORS_ORIGINS") or "").split(",") if o.strip()}

    @app.after_request
    def _headers(response):
        req, headers = request._get_current_object(), response.headers  # one context lookup, not one per use
        headers["X-Request-ID"] = g.get("request_id", "")
        headers.setdefault("Cache-Control", "no-store")
        # Nothing else sets these: added, not searched for and replaced.
        headers.extend((("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
                        ("X-Frame-Options", "DENY"),
                        ("Content-Security-Policy", html_csp if response.mimetype == "text/html" else API_CSP)))
        # Behind Render's proxy the app sees plain HTTP; only a proxy we trust may tell us it was HTTPS.
        if req.is_secure or (trusted_proxy and req.headers.get("X-Forwarded-Proto") == "https"):
            headers["Strict-Transport-Security"] = HSTS
        if origins:
            origin = req.headers.get("Origin", "")
            if origin in origins:
                headers["Access-Control-Allow-Origin"] = origin
                headers["Access-Control-Expose-Headers"] = "X-Request-ID, WWW-Authenticate, Retry-After"
                headers.add("Vary", "Origin")
                if req.method == "OPTIONS":
                    headers["Access-Control-Allow-Methods"] = "GET, POST"
                    headers["Access-Control-Allow-Headers"] = CORS_HEADERS
                    headers["Access-Control-Max-Age"] = "600"
        return response
