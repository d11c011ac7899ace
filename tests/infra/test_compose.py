"""docker-compose.yml: valid Compose, and the production envelope for testers."""

from __future__ import annotations

from tests.infra.tools import REPO, check_jsonschema, load_yaml


def api() -> dict:
    """The api service definition."""
    return load_yaml("docker-compose.yml")["services"]["api"]


def dockerfile_model_path() -> str:
    """MODEL_PATH as the Dockerfile sets it."""
    text = (REPO / "Dockerfile").read_text()
    return text.split("MODEL_PATH=", 1)[1].split()[0]


def test_compose_file_matches_the_compose_specification():
    done = check_jsonschema("vendor.compose-spec", "docker-compose.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_api_is_built_from_the_dockerfile_and_published_on_8000():
    service = api()
    assert service["build"]["context"] == "." and service["build"]["dockerfile"] == "Dockerfile"
    assert service["ports"] == ["8000:8000"]


def test_api_runs_in_256_mb_and_a_tenth_of_a_cpu():
    service = api()
    assert service["mem_limit"] == "256m"
    assert service["cpus"] == 0.1


def test_api_filesystem_is_read_only_with_a_tmpfs_tmp():
    service = api()
    assert service["read_only"] is True
    assert "/tmp" in service["tmpfs"]


def test_api_has_a_healthcheck_on_health_and_restarts_unless_stopped():
    service = api()
    assert "/health" in " ".join(service["healthcheck"]["test"])
    assert service["restart"] == "unless-stopped"


def test_model_path_matches_the_image_default():
    assert api()["environment"]["MODEL_PATH"] == dockerfile_model_path()


def test_mounting_another_model_is_shown_as_a_commented_example():
    text = (REPO / "docker-compose.yml").read_text()
    assert "# volumes:" in text and ":/models:ro" in text
    assert "# MODEL_PATH: /models/" in text
