"""render.yaml against the documented Blueprint fields (render.com/docs/blueprint-spec).

Render's JSON schema (render.com/schema/render.yaml.json) is not vendored by check-jsonschema and cannot be
fetched offline, so the documented service fields and values are listed here instead.
"""

from __future__ import annotations

from tests.infra.tools import REPO, load_yaml

SERVICE_FIELDS = {
    "type", "name", "runtime", "plan", "region", "branch", "repo", "rootDir", "buildCommand", "startCommand",
    "preDeployCommand", "dockerCommand", "dockerfilePath", "dockerContext", "registryCredential", "image",
    "numInstances", "scaling", "healthCheckPath", "autoDeploy", "autoDeployTrigger", "buildFilter", "envVars",
    "disk", "domains", "maxShutdownDelaySeconds", "previews", "ipAllowList",
}
RUNTIMES = {"docker", "image", "elixir", "go", "node", "python", "ruby", "rust", "static"}
PLANS = {"free", "starter", "standard", "pro", "pro plus", "pro max", "pro ultra"}
REGIONS = {"oregon", "ohio", "virginia", "frankfurt", "singapore"}
ENV_SOURCES = {"value", "sync", "generateValue", "fromDatabase", "fromService", "fromGroup"}


def service() -> dict:
    """The only service in the Blueprint."""
    (only,) = load_yaml("render.yaml")["services"]
    return only


def test_blueprint_uses_only_documented_service_fields():
    assert set(service()) <= SERVICE_FIELDS, set(service()) - SERVICE_FIELDS


def test_service_runs_the_pushed_image_and_never_builds_from_source():
    web = service()
    assert web["type"] == "web" and web["runtime"] in RUNTIMES and web["runtime"] == "image"
    assert not set(web) & {"dockerfilePath", "dockerContext", "buildCommand", "branch", "repo"}
    assert web["image"]["url"].startswith("ghcr.io/")


def test_the_private_registry_credential_is_named_not_committed():
    creds = service()["image"]["creds"]
    assert set(creds) == {"fromRegistryCreds"} and set(creds["fromRegistryCreds"]) == {"name"}
    assert creds["fromRegistryCreds"]["name"] in (REPO / "README.md").read_text()


def test_blueprint_says_auto_sync_must_be_off():
    assert "Auto Sync off" in (REPO / "render.yaml").read_text()


def test_plan_and_region_are_stated_and_valid():
    web = service()
    assert web["plan"] in PLANS and web["region"] in REGIONS


def test_health_check_path_is_health():
    assert service()["healthCheckPath"] == "/health"


def test_autodeploy_is_off_because_the_github_action_deploys():
    assert service()["autoDeploy"] is False
    assert "deploy.yml" in (REPO / "render.yaml").read_text()


def test_every_env_var_has_exactly_one_source():
    for var in service()["envVars"]:
        assert len(set(var) & ENV_SOURCES) == 1, var


def test_model_path_is_set_to_the_bundled_model():
    values = {v["key"]: v.get("value") for v in service()["envVars"]}
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"MODEL_PATH={values['MODEL_PATH']}" in dockerfile


def test_secrets_are_never_committed_only_prompted_for():
    for var in service()["envVars"]:
        if any(word in var["key"] for word in ("TOKEN", "SECRET", "KEY", "PASSWORD")):
            assert var.get("sync") is False and "value" not in var, var
    assert any(var.get("sync") is False for var in service()["envVars"])
