"""Who may call which model: the per-model access policy, the authenticated principal, and how the OpenAPI
document declares both."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PUBLIC, KEY, MFA = "public", "key", "mfa"
POLICIES = (PUBLIC, KEY, MFA)
ALL_MODELS = "*"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a stable id for logs and audit (never the secret), its models, its MFA state."""

    id: str
    models: frozenset[str]
    mfa: bool = False

    def allows(self, model: str) -> bool:
        """Whether this caller may use `model`."""
        return ALL_MODELS in self.models or model in self.models


def parse_overrides(text: str) -> dict[str, str]:
    """`SLIMSERVE_MODEL_ACCESS`: comma- or newline-separated `model=policy` pairs (`*` for every model)."""
    overrides: dict[str, str] = {}
    for item in text.replace("\n", ",").split(","):
        if not item.strip():
            continue
        model, sep, policy = item.partition("=")
        policy = policy.strip().lower()
        if not sep or not model.strip() or policy not in POLICIES:
            raise ValueError("SLIMSERVE_MODEL_ACCESS holds model=public|key|mfa pairs separated by commas")
        overrides[model.strip()] = policy
    return overrides


def resolve(models: Mapping[str, bool], overrides: Mapping[str, str]) -> dict[str, str]:
    """The policy of every model: image models public, tabular (clinical) models `key`, then overrides."""
    unknown = set(overrides) - set(models) - {ALL_MODELS}
    if unknown:
        raise ValueError(f"SLIMSERVE_MODEL_ACCESS names models that are not served: {', '.join(sorted(unknown))}")
    policies = {}
    for name, tabular in models.items():
        default = overrides.get(ALL_MODELS, KEY if tabular else PUBLIC)
        policies[name] = overrides.get(name, default)
    return policies


def model_set(names: Iterable[str]) -> frozenset[str]:
    """A set of model names from a list of (possibly blank) strings."""
    return frozenset(name.strip() for name in names if name and name.strip())

SCHEMES: dict[str, dict[str, Any]] = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "a key from `slimserve keys create` (also accepted as `Authorization: Bearer`)"},
    "Bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT or API key",
               "description": "an OIDC access token from the configured issuer, or an API key"},
}
ANY = [{"ApiKey": []}, {"Bearer": []}]
# OpenAPI: a list of alternatives; `{}` means "no credentials needed".
REQUIREMENTS = {PUBLIC: [], KEY: ANY, MFA: [{"Bearer": []}]}


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
