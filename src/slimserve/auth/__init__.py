"""Access control for prediction routes: per-model policy, API keys and OIDC tokens.

Imported only when access control is on (see `slimserve.config.auth_enabled`); with it off, nothing here
(nor PyJWT) is loaded.
"""

from __future__ import annotations

import logging

from flask import Flask, g, request

from slimserve.auth.keys import PREFIX, KeyStore, parse_entries
from slimserve.auth.policy import KEY, MFA, PUBLIC, Principal, parse_overrides, resolve
from slimserve.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)
REALM = 'Bearer realm="slimserve"'


class Guard:
    """Decides, before a prediction request is read, whether its caller may use the model it names."""

    def __init__(self, policies: dict[str, str], keys: KeyStore, tokens=None) -> None:
        self.policies = policies
        self.keys = keys
        self.tokens = tokens  # a TokenVerifier, or None when no issuer is configured

    def check(self, model: str) -> None:
        """Return if allowed (setting `g.principal`); raise Unauthorized (401) or Forbidden (403)."""
        policy = self.policies.get(model, KEY)
        if policy == PUBLIC:
            return
        credential = presented_credential()
        if credential is None:
            raise Unauthorized("this model needs an API key or a bearer token", code="credentials_required",
                               challenge=REALM)
        principal = self.authenticate(credential)
        g.principal = principal.id
        if not principal.allows(model):
            raise Forbidden("these credentials are not allowed to use this model", code="model_not_allowed")
        if policy == MFA and not principal.mfa:
            raise Unauthorized("this model needs a token from a multi-factor sign-in", code="mfa_required",
                               challenge=f'{REALM}, error="insufficient_user_authentication", '
                                         'error_description="multi-factor authentication required"')

    def authenticate(self, credential: str) -> Principal:
        """The principal behind a key or token; 401 (never saying which part was wrong) if neither verifies."""
        principal = None
        if credential.startswith(PREFIX):
            principal = self.keys.verify(credential)
        elif self.tokens is not None:
            from slimserve.auth.tokens import InvalidToken

            try:
                principal = self.tokens.verify(credential)
            except InvalidToken as exc:
                log.info("token refused: %s", exc)  # the reason only, never the token
        if principal is None:
            raise Unauthorized("the credentials are not valid", code="invalid_credentials",
                               challenge=f'{REALM}, error="invalid_token"')
        return principal


def presented_credential() -> str | None:
    """The key or token from `Authorization: Bearer …` or `X-API-Key`, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-API-Key", "").strip() or None


def build_guard(config, models: dict[str, bool]) -> Guard:
    """The guard for these settings and served models (name → is tabular); raises ValueError on bad config."""
    policies = resolve(models, parse_overrides(config.get("MODEL_ACCESS") or ""))
    tokens = None
    if config.get("OIDC_ISSUER"):
        try:
            from slimserve.auth.tokens import JwksCache, TokenVerifier
        except ImportError:
            raise ValueError("SLIMSERVE_OIDC_ISSUER needs PyJWT: pip install -r requirements-auth.txt") from None

        issuer, jwks_url = config["OIDC_ISSUER"], config.get("OIDC_JWKS_URL")
        if not jwks_url:  # IdPs put it in different places (Keycloak, Entra ID, Auth0): no guessing
            raise ValueError("SLIMSERVE_OIDC_JWKS_URL is required with SLIMSERVE_OIDC_ISSUER")
        algorithms = [a.strip() for a in config.get("OIDC_ALGORITHMS", "RS256").split(",") if a.strip()]
        tokens = TokenVerifier(issuer, config.get("OIDC_AUDIENCE") or "", JwksCache(jwks_url), algorithms,
                               models_claim=config.get("OIDC_MODELS_CLAIM") or "slimserve_models")
    return Guard(policies, KeyStore(parse_entries(config.get("API_KEYS") or "")), tokens)


def init_app(app: Flask) -> None:
    """Check every prediction request against its model's policy before the view reads the body."""
    from slimserve.views.context import prediction_target

    entries = app.extensions["slimserve.registry"].entries
    guard = build_guard(app.config, {name: entry.is_tabular for name, entry in entries.items()})
    app.extensions["slimserve.auth"] = guard
    log.info("access control on: %s", ", ".join(f"{m}={p}" for m, p in sorted(guard.policies.items())))

    @app.before_request
    def _check() -> None:
        entry = prediction_target()
        if entry is not None:
            guard.check(entry.manifest.name)
