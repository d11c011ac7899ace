"""Test helpers for access control: a real loopback OIDC issuer (JWKS over HTTP) and credentials."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from slimserve.auth.keys import create_key
from slimserve.manifest import load_manifest

REPO = Path(__file__).resolve().parents[1]
BUNDLED_MODELS = REPO / "artifacts" / "models"
AUDIENCE = "slimserve-test"


class LoopbackIssuer:
    """An identity provider stand-in: RSA keys generated here, the public half served as JWKS on 127.0.0.1."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        self.fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches += 1
                body = json.dumps(issuer.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def jwks(self) -> dict:
        """The public signing key as a JWK set."""
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def config(self) -> dict:
        """App settings that trust this issuer."""
        return {"OIDC_ISSUER": self.url, "OIDC_AUDIENCE": AUDIENCE, "OIDC_JWKS_URL": f"{self.url}/jwks"}

    def token(self, *, models=("*",), amr=("pwd", "otp"), expires_in: float = 300, sign_with=None,
              **claims) -> str:
        """A signed access token; `sign_with` another key forges it."""
        now = int(time.time())
        payload = {"iss": self.url, "aud": AUDIENCE, "sub": "clinician-42", "iat": now, "exp": now + int(expires_in),
                   "amr": list(amr), "slimserve_models": list(models), **claims}
        return jwt.encode(payload, sign_with or self.key, algorithm="RS256", headers={"kid": self.kid})

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def key_for(*models: str, name: str = "test") -> tuple[str, str]:
    """A new API key and its SLIMSERVE_API_KEYS line."""
    key, entry = create_key(name, list(models))
    return key, entry.line()


def valid_record(manifest) -> dict:
    """One record every bundled tabular model accepts: the first category, the minimum, false."""
    record = {}
    for feature in manifest.features:
        if feature.type == "category":
            record[feature.name] = feature.categories[0]
        elif feature.type == "boolean":
            record[feature.name] = False
        else:
            low = feature.minimum if feature.minimum is not None else 0
            record[feature.name] = int(low) + 1 if feature.type == "integer" else float(low) + 1
            if feature.maximum is not None and record[feature.name] > feature.maximum:
                record[feature.name] = feature.maximum
    return record


def bundled_manifests() -> list:
    """The manifests of every model the deploy serves."""
    return [load_manifest(path) for path in sorted(BUNDLED_MODELS.glob("*/*/manifest.json"))]
