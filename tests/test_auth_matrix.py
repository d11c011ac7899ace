"""The access-control matrix of issue 8: every served model × every kind of credential, exact statuses."""

from __future__ import annotations

import io

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from slimserve import create_app
from tests.auth_support import BUNDLED_MODELS, LoopbackIssuer, bundled_manifests, key_for, valid_record
from tests.conftest import FakeRuntime, image_bytes

MANIFESTS = {m.name: m for m in bundled_manifests()}
MFA_MODEL = "heart_failure"  # made `mfa` by configuration; image models default to public, tabular to key
POLICY = {name: "public" if m.features is None else "mfa" if name == MFA_MODEL else "key"
          for name, m in MANIFESTS.items()}
NAMES = sorted(MANIFESTS)
OTHER = {name: NAMES[(i + 1) % len(NAMES)] for i, name in enumerate(NAMES)}
KEYS = {name: key_for(name, name=f"key-{name}") for name in NAMES}
FORGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # not the issuer's key

# credential kind -> expected status per policy
EXPECTED = {
    "none": {"public": 200, "key": 401, "mfa": 401},
    "wrong_key": {"public": 200, "key": 401, "mfa": 401},
    "key_for_other_model": {"public": 200, "key": 403, "mfa": 403},
    "valid_key": {"public": 200, "key": 200, "mfa": 401},
    "expired_jwt": {"public": 200, "key": 401, "mfa": 401},
    "forged_jwt": {"public": 200, "key": 401, "mfa": 401},
    "jwt_for_other_model": {"public": 200, "key": 403, "mfa": 403},
    "jwt_without_mfa": {"public": 200, "key": 200, "mfa": 401},
    "valid_jwt": {"public": 200, "key": 200, "mfa": 200},
}


@pytest.fixture(scope="module")
def issuer():
    """A loopback identity provider for the whole module."""
    idp = LoopbackIssuer()
    yield idp
    idp.close()


@pytest.fixture(scope="module")
def client(issuer):
    """Every bundled model (fake runtime), keys per model, the issuer trusted, heart_failure set to mfa."""
    app = create_app({
        "MODEL_PATH": str(BUNDLED_MODELS / "pneumonia" / "1.0.0" / "model.h5"),
        "MODEL_REPOSITORY": str(BUNDLED_MODELS), "RUNTIMES": {"onnx": FakeRuntime}, "LOAD_ASYNC": False,
        "AUTO_COMPILE": False, "API_KEYS": "\n".join(line for _, line in KEYS.values()),
        "MODEL_ACCESS": f"{MFA_MODEL}=mfa", "AUDIT_SINK": "off", **issuer.config(),
    })
    return app.test_client()


def credential(kind: str, model: str, issuer: LoopbackIssuer) -> dict[str, str]:
    """Request headers presenting one kind of credential for `model`."""
    key = KEYS[model][0]
    headers = {
        "none": {},
        "wrong_key": {"X-API-Key": key[: -43] + "A" * 43},
        "key_for_other_model": {"Authorization": f"Bearer {KEYS[OTHER[model]][0]}"},
        "valid_key": {"X-API-Key": key},
        "expired_jwt": {"Authorization": f"Bearer {issuer.token(models=[model], expires_in=-120)}"},
        "forged_jwt": {"Authorization": f"Bearer {issuer.token(models=[model], sign_with=FORGER)}"},
        "jwt_for_other_model": {"Authorization": f"Bearer {issuer.token(models=[OTHER[model]])}"},
        "jwt_without_mfa": {"Authorization": f"Bearer {issuer.token(models=[model], amr=['pwd'])}"},
        "valid_jwt": {"Authorization": f"Bearer {issuer.token(models=[model], amr=['pwd', 'otp'])}"},
    }
    return headers[kind]


def predict(client, model: str, headers: dict[str, str]):
    """POST one valid input to the model's predict route."""
    manifest = MANIFESTS[model]
    if manifest.features is None:
        return client.post(f"/models/{model}/predict", headers=headers,
                           data={"file": (io.BytesIO(image_bytes()), "x.jpeg")})
    return client.post(f"/models/{model}/predict", headers=headers, json={"records": [valid_record(manifest)]})


@pytest.mark.parametrize("kind", list(EXPECTED))
@pytest.mark.parametrize("model", NAMES)
def test_access_matrix(client, issuer, model, kind):
    """Each model answers each credential with exactly the status its policy prescribes."""
    response = predict(client, model, credential(kind, model, issuer))
    expected = EXPECTED[kind][POLICY[model]]
    assert response.status_code == expected, response.get_json()
    if expected == 401:
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="slimserve"')
        assert response.get_json()["error"]["code"] in {"credentials_required", "invalid_credentials",
                                                        "mfa_required"}
    if expected == 403:
        assert response.get_json()["error"]["code"] == "model_not_allowed"
    if kind == "jwt_without_mfa" and expected == 401:
        assert 'error="insufficient_user_authentication"' in response.headers["WWW-Authenticate"]


def test_the_matrix_covers_every_policy():
    """The bundled models exercise public, key and mfa."""
    assert set(POLICY.values()) == {"public", "key", "mfa"}


@pytest.mark.parametrize("route", ["/models/aids/invocations", "/invocations"])
def test_mlflow_routes_are_guarded_like_predict(client, issuer, route):
    """/invocations follows the same policy (the default model pneumonia is public; aids needs a key)."""
    manifest = MANIFESTS["aids"]
    if route == "/invocations":
        response = client.post(route, data=image_bytes(), content_type="image/jpeg")
        assert response.status_code == 200
        return
    body = {"dataframe_records": [valid_record(manifest)]}
    assert client.post(route, json=body).status_code == 401
    assert client.post(route, json=body, headers={"X-API-Key": KEYS["aids"][0]}).status_code == 200


def test_refusal_happens_before_the_body_is_parsed(client):
    """An unauthenticated caller learns nothing about its input: a broken body still gets 401, not 400/422."""
    response = client.post("/models/aids/predict", data=b"{not json", content_type="application/json")
    assert response.status_code == 401


def test_version_says_auth_is_on(client):
    """/version reports that access control is enforced."""
    assert client.get("/version").get_json()["auth"] == "on"


def test_openapi_declares_security_per_route(client):
    """The document names the schemes and each prediction route's requirement, and stays valid OpenAPI."""
    from openapi_spec_validator import validate

    spec = client.get("/openapi.json").get_json()
    validate(spec)
    assert set(spec["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    paths = spec["paths"]
    assert paths["/predict"]["post"]["security"] == []  # the default model, pneumonia, is public
    assert paths["/models/aids/predict"]["post"]["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert paths[f"/models/{MFA_MODEL}/invocations"]["post"]["security"] == [{"Bearer": []}]
    assert {"401", "403"} <= set(paths["/models/aids/invocations"]["post"]["responses"])
    assert paths["/models/pneumonia/predict"]["post"]["security"] == []  # every model has its own paths
