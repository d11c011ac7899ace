"""Security schemes in the OpenAPI document: which credentials each prediction route takes."""

from __future__ import annotations

from typing import Any

from slimserve.auth.policy import KEY, MFA, PUBLIC

SCHEMES: dict[str, dict[str, Any]] = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "a key from `slimserve keys create` (also accepted as `Authorization: Bearer`)"},
    "Bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT or API key",
               "description": "an OIDC access token from the configured issuer, or an API key"},
}
ANY = [{"ApiKey": []}, {"Bearer": []}]
# OpenAPI: a list of alternatives; `{}` means "no credentials needed".
REQUIREMENTS = {PUBLIC: [], KEY: ANY, MFA: [{"Bearer": []}]}
GENERIC = ("/models/{name}/predict", "/models/{name}/invocations")


def document_security(spec: dict[str, Any], guard, default_model: str) -> None:
    """Add the schemes and a `security` list to every prediction operation, per its model's policy."""
    spec.setdefault("components", {})["securitySchemes"] = SCHEMES
    policies = guard.policies
    for path, item in spec.get("paths", {}).items():
        post = item.get("post")
        if post is None:
            continue
        if path in ("/predict", "/invocations"):
            policy = policies.get(default_model, KEY)
        elif path in GENERIC:
            post["security"] = [{}, *ANY]  # depends on the model named in the path
            for status in ("401", "403"):
                post.setdefault("responses", {}).setdefault(status, {"$ref": "#/components/responses/Error"})
            post["description"] = (post.get("description", "") + " Credentials depend on the model: " + ", ".join(
                f"{m}: {p}" for m, p in sorted(policies.items()))).strip()
            continue
        else:
            policy = policies.get(path.split("/")[2], KEY)
        post["security"] = REQUIREMENTS[policy]
        statuses = post.setdefault("responses", {})
        if policy != PUBLIC:
            statuses.setdefault("401", {"$ref": "#/components/responses/Error"})
            statuses.setdefault("403", {"$ref": "#/components/responses/Error"})
        if policy == MFA:
            post["description"] = (post.get("description", "") + " Needs a token from a multi-factor sign-in "
                                   "(`amr`).").strip()
