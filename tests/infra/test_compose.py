"""docker-compose.yml: valid Compose, and the production envelope for testers."""

from __future__ import annotations

import yaml

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


def test_api_runs_in_256_mb_with_no_swap_and_a_tenth_of_a_cpu():
    service = api()
    assert service["mem_limit"] == "256m" and service["memswap_limit"] == service["mem_limit"]
    assert service["cpus"] == 0.1


def test_api_filesystem_is_read_only_with_a_tmpfs_tmp():
    service = api()
    assert service["read_only"] is True
    assert "/tmp" in service["tmpfs"]


def test_health_is_the_images_port_aware_check_and_restarts_unless_stopped():
    service = api()
    assert "healthcheck" not in service, "a compose check would hard-code a port; the image's reads PORT"
    assert "os.environ.get('PORT'" in (REPO / "Dockerfile").read_text().split("HEALTHCHECK", 1)[1]
    assert service["restart"] == "unless-stopped"


def test_model_path_defaults_to_the_image_default():
    assert api()["environment"]["MODEL_PATH"] == f"${{MODEL_PATH:-{dockerfile_model_path()}}}"


def test_the_model_swap_example_uncommented_is_valid_compose_with_one_model_path(tmp_path):
    lines = (REPO / "docker-compose.yml").read_text().splitlines()
    # Uncomment exactly the example block: `# volumes:` and the mount under it.
    start = lines.index("    # volumes:")
    swapped = lines[:start] + [line.replace("# ", "", 1) for line in lines[start:start + 2]] + lines[start + 2:]
    path = tmp_path / "docker-compose.yml"
    path.write_text("\n".join(swapped) + "\n")
    service = yaml.safe_load(path.read_text())["services"]["api"]
    assert service["volumes"] == ["./my-models:/models:ro"]
    assert list(service["environment"]).count("MODEL_PATH") == 1
    done = check_jsonschema("vendor.compose-spec", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
