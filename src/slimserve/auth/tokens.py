"""OIDC bearer tokens: JWTs verified with PyJWT against the issuer's JWKS (keys cached, refetch rate-limited)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.request
from collections.abc import Sequence

import jwt

from slimserve.auth.policy import Principal, model_set
from slimserve.errors import ServiceUnavailable

# An unknown `kid` may mean the issuer rotated its keys, so it triggers a refetch — at most this often, so
# forged tokens cannot make us hammer the issuer.
MIN_REFETCH_SECONDS = 30.0
MAX_KEY_AGE_SECONDS = 3600.0
MAX_JWKS_BYTES = 1 << 20
CACHE_SECONDS = 300.0  # a key withdrawn from the JWKS stops working within this long, even for seen tokens
CACHE_ENTRIES = 4096
SYMMETRIC = {"HS256", "HS384", "HS512"}


class InvalidToken(Exception):
    """The token is not a valid token from our issuer for us (the reason is for the server log only)."""


class JwksCache:
    """The issuer's signing keys by `kid`, fetched on first use and refreshed on rotation or age."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self.keys: dict[str, jwt.PyJWK] = {}
        self.fetched = float("-inf")
        self.lock = threading.Lock()

    def key(self, kid: str | None) -> jwt.PyJWK:
        """The signing key named `kid` (or the only key, when the token names none)."""
        with self.lock:
            now = time.monotonic()
            stale = now - self.fetched > MAX_KEY_AGE_SECONDS
            if stale or (kid not in self.keys and now - self.fetched > MIN_REFETCH_SECONDS):
                self._fetch(keep_old=bool(self.keys))
            if kid is None and len(self.keys) == 1:
                return next(iter(self.keys.values()))
            if kid not in self.keys:
                raise InvalidToken("unknown key id")
            return self.keys[kid]

    def _fetch(self, keep_old: bool) -> None:
        self.fetched = time.monotonic()
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                document = json.loads(response.read(MAX_JWKS_BYTES))
            keys = jwt.PyJWKSet.from_dict(document).keys
        except (OSError, ValueError, jwt.PyJWTError):
            if keep_old:
                return  # keep verifying with the keys we have; the issuer is only briefly unreachable
            raise ServiceUnavailable("cannot verify tokens right now", code="issuer_unavailable") from None
        self.keys = {k.key_id: k for k in keys if k.key_id and k.public_key_use in (None, "sig")}


class TokenVerifier:
    """Checks signature, issuer, audience, expiry and algorithm, then maps claims to a principal."""

    def __init__(self, issuer: str, audience: str, jwks: JwksCache, algorithms: Sequence[str],
                 models_claim: str = "slimserve_models", leeway: float = 30.0) -> None:
        if not audience:
            raise ValueError("SLIMSERVE_OIDC_AUDIENCE is required with SLIMSERVE_OIDC_ISSUER")
        if set(algorithms) & SYMMETRIC or "none" in {a.lower() for a in algorithms}:
            raise ValueError("SLIMSERVE_OIDC_ALGORITHMS must list asymmetric algorithms only (e.g. RS256,ES256)")
        self.issuer, self.audience, self.jwks = issuer, audience, jwks
        self.algorithms = list(algorithms)
        self.models_claim = models_claim
        self.leeway = leeway
        self.cache: dict[bytes, tuple[Principal, float]] = {}

    def verify(self, token: str) -> Principal:
        """The principal of a valid token (cached until it expires, at most CACHE_SECONDS); else InvalidToken."""
        # Clients reuse one token for many requests: the signature check (~0.2 ms CPU) runs once per token.
        # Only digests of verified tokens are kept, and an entry never outlives the token's `exp`.
        fingerprint = hashlib.sha256(token.encode()).digest()
        now = time.time()
        cached = self.cache.get(fingerprint)
        if cached is not None and now < cached[1]:
            return cached[0]
        principal, expires = self._verify(token)
        if len(self.cache) >= CACHE_ENTRIES:
            self.cache.clear()  # crude but bounded; a burst of new tokens costs one re-verification each
        self.cache[fingerprint] = (principal, min(expires, now + CACHE_SECONDS))
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            # The header is only used to pick the key; `algorithms=` below is what refuses other algorithms.
            header = jwt.get_unverified_header(token)
            key = self.jwks.key(header.get("kid"))
            claims = jwt.decode(token, key.key, algorithms=self.algorithms, audience=self.audience,
                                issuer=self.issuer, leeway=self.leeway,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        principal = Principal(f"sub:{_printable(claims['sub'])}", _models(claims.get(self.models_claim)),
                              mfa=has_second_factor(claims.get("amr")))
        return principal, float(claims["exp"])


def has_second_factor(amr: object) -> bool:
    """RFC 8176 `amr`: `mfa`, or two or more distinct methods (e.g. `pwd` + `otp`)."""
    if not isinstance(amr, list):
        return False
    methods = {m for m in amr if isinstance(m, str)}
    return "mfa" in methods or len(methods) >= 2


def _models(claim: object) -> frozenset[str]:
    if isinstance(claim, str):
        return model_set(claim.split())
    if isinstance(claim, list):
        return model_set(m for m in claim if isinstance(m, str))
    return frozenset()


def _printable(subject: object) -> str:
    return "".join(ch for ch in str(subject) if ch.isprintable())[:128]
