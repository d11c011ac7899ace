"""Per-client rate limits: budgets per route group, 429 in our error shape, keys, proxies, exemptions."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from flask import g, request

from slimserve import create_app, ratelimit_counters
from slimserve.config import from_env
from slimserve.ratelimit import client_key, parse_limits
from tests.conftest import image_bytes, write_fake_model, write_fake_tabular_model
from tests.test_http_errors import assert_error

CLIENT = "198.51.100.7"


def limited_app(model_path, fake_runtimes, **overrides):
    """The fake-model app with small limits (each test states the ones it relies on)."""
    config = {"MODEL_PATH": str(model_path), "RUNTIMES": fake_runtimes, "LOAD_ASYNC": False,
              "AUTO_COMPILE": False, "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": "memory://",
              "RATE_LIMIT_PREDICT": "2/minute", "RATE_LIMIT_INVOCATIONS": "2/minute",
              "RATE_LIMIT_DEFAULT": "2/minute", "TRUSTED_PROXIES": 0, **overrides}
    return create_app(config)


def predict(client, path: str = "/predict", addr: str = CLIENT, **headers):
    """POST one small JPEG from `addr`."""
    return client.post(path, data={"file": (io.BytesIO(image_bytes()), "a.jpg")}, headers=headers,
                       environ_base={"REMOTE_ADDR": addr})


@pytest.fixture
def client(model_path, fake_runtimes):
    """A client of an app allowing 2 requests a minute per route group."""
    return limited_app(model_path, fake_runtimes).test_client()


def test_over_the_limit_is_429_in_our_error_shape_with_retry_after(client):
    assert [predict(client).status_code for _ in range(2)] == [200, 200]
    response = predict(client)
    body = assert_error(response, 429, "too_many_requests")
    assert "2 per 1 minute" in body["error"]["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_the_predict_routes_share_one_budget(client):
    assert predict(client, "/predict").status_code == 200
    assert predict(client, "/models/pneumonia/predict").status_code == 200
    assert predict(client, "/predict").status_code == 429
    assert predict(client, "/models/pneumonia/predict").status_code == 429


def test_the_invocations_routes_have_their_own_budget(client):
    assert [predict(client).status_code for _ in range(3)] == [200, 200, 429]  # same 2/minute as predict
    assert predict(client, "/invocations").status_code == 200
    assert predict(client, "/models/pneumonia/invocations").status_code == 200
    assert predict(client, "/invocations").status_code == 429


def test_other_routes_get_the_default_limit(client):
    statuses = [client.get("/version", environ_base={"REMOTE_ADDR": CLIENT}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


@pytest.mark.parametrize("path", ["/health", "/ready", "/ping", "/models/pneumonia/ready"])
def test_health_checks_are_never_limited(model_path, fake_runtimes, path):
    client = limited_app(model_path, fake_runtimes, RATE_LIMIT_DEFAULT="1/minute").test_client()
    assert {client.get(path, environ_base={"REMOTE_ADDR": CLIENT}).status_code for _ in range(5)} == {200}


def test_health_checks_never_reach_the_limit_check(client, monkeypatch):
    limiter = client.application.extensions["slimserve.limiter_deferred"]
    limiter.load()
    checked = []
    monkeypatch.setattr(limiter, "check", checked.append)
    for path in ("/health", "/ready", "/ping", "/models/pneumonia/ready"):
        assert client.get(path).status_code == 200
    assert checked == []  # the probes are never wrapped; the limited routes still check theirs
    client.get("/version")
    assert checked == ["health.version"]


def test_each_client_ip_has_its_own_budget(client):
    assert [predict(client, addr="192.0.2.1").status_code for _ in range(3)] == [200, 200, 429]
    assert predict(client, addr="192.0.2.2").status_code == 200


def test_spoofed_forwarded_for_does_not_change_the_key_without_trusted_proxies(client):
    spoofed = [predict(client, **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(3)]
    assert spoofed == [200, 200, 429]


def test_one_trusted_proxy_keys_on_the_last_hop_only(model_path, fake_runtimes):
    client = limited_app(model_path, fake_runtimes, TRUSTED_PROXIES=1).test_client()
    proxy = "10.0.0.1"  # Render's proxy: the socket peer; the client is the hop it appended last
    first = [predict(client, addr=proxy, **{"X-Forwarded-For": f"6.6.6.{i}, 203.0.113.5"}).status_code
             for i in range(3)]
    assert first == [200, 200, 429]  # hops before the last are the client's own words: ignored
    assert predict(client, addr=proxy, **{"X-Forwarded-For": "203.0.113.6"}).status_code == 200


def test_a_principal_on_g_is_counted_instead_of_the_ip(model_path, fake_runtimes):
    app = limited_app(model_path, fake_runtimes)

    @app.before_request  # stands in for the access-control hook; registered after the limiter on purpose
    def identify() -> None:
        if "X-Test-Principal" in request.headers:
            g.principal = request.headers["X-Test-Principal"]

    client = app.test_client()
    same_key = [predict(client, addr=f"192.0.2.{i}", **{"X-Test-Principal": "key-a"}).status_code
                for i in range(3)]
    assert same_key == [200, 200, 429]  # one principal from three addresses: one budget
    assert predict(client, addr="192.0.2.0", **{"X-Test-Principal": "key-b"}).status_code == 200
    assert predict(client, addr="192.0.2.0").status_code == 200  # that IP's own budget is untouched


def test_counting_in_memory_starts_no_thread_per_request(client, monkeypatch):
    client.application.extensions["slimserve.limiter_deferred"].load()  # building the storages may start some
    started = []
    monkeypatch.setattr(threading.Thread, "start", lambda thread: started.append(thread))
    for _ in range(3):
        time.sleep(0.02)  # limits' memory storage (used before) started a timer thread when hits were >10 ms apart
        assert client.get("/version", environ_base={"REMOTE_ADDR": CLIENT}).status_code in (200, 429)
    assert started == []


def test_expired_memory_counters_are_swept_on_a_later_hit(monkeypatch):
    counters = ratelimit_counters.MemoryCounters()
    counters.incr("gone", 1)
    assert counters.incr("kept", 60) == (1, pytest.approx(time.time() + 60, abs=1))
    monkeypatch.setattr(ratelimit_counters.time, "time", lambda: 10.0**10)  # far later
    monkeypatch.setattr(counters, "_next_sweep", 0.0)  # the sweep interval has passed
    assert counters.incr("new", 60)[0] == 1
    assert set(counters.counts) == {"new"}  # both windows had ended: swept


def test_a_window_counts_until_it_ends_then_starts_again(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(ratelimit_counters.time, "time", lambda: now[0])
    counters = ratelimit_counters.Counters("memory://")
    limit = parse_limits("2/minute")[0]
    assert [counters.hit(limit, "ip:a", "predict") for _ in range(3)] == [0, 0, 60]
    now[0] += 45
    assert counters.hit(limit, "ip:a", "predict") == 15  # seconds left in the window
    assert counters.hit(limit, "ip:b", "predict") == 0  # another client, its own window
    now[0] += 15
    assert counters.hit(limit, "ip:a", "predict") == 0  # a new window


@pytest.mark.parametrize(("text", "limits"), [
    ("60/minute", ["60 per 1 minute"]), ("5 per second; 100/2 hours", ["5 per 1 second", "100 per 2 hour"]),
    ("10/Day,3|month", None), ("1/hours | 2/2 years", ["1 per 1 hour", "2 per 2 year"]),
    ("sixty a minute", None), ("5/fortnight", None), ("", None)])
def test_limits_in_the_limits_notation(text, limits):
    if limits is None:
        with pytest.raises(ValueError, match="not a rate limit"):
            parse_limits(text)
    else:
        assert [str(limit) for limit in parse_limits(text)] == limits
    assert parse_limits("2/3 minutes")[0].seconds == 180


@pytest.mark.parametrize(("principal", "key"), [("key-a", "principal:key-a"),
                                               (SimpleNamespace(id=42, name="x"), "principal:42"),
                                               (None, f"ip:{CLIENT}")])
def test_the_client_key_is_the_principal_id_else_the_ip(app, principal, key):
    with app.test_request_context(environ_base={"REMOTE_ADDR": CLIENT}):
        if principal is not None:
            g.principal = principal
        assert client_key() == key


def test_switched_off_nothing_is_limited(model_path, fake_runtimes):
    app = limited_app(model_path, fake_runtimes, RATELIMIT_ENABLED=False)
    client = app.test_client()
    assert {predict(client).status_code for _ in range(5)} == {200}
    assert "slimserve.limiter_deferred" not in app.extensions


def test_switched_off_the_counters_are_never_imported():
    code = ("import sys; from flask import Flask; import slimserve.app; from slimserve import config, ratelimit; "
            "app = Flask('x'); app.config.update(config.from_env({'SLIMSERVE_RATE_LIMIT_ENABLED': 'false'})); "
            "ratelimit.init_app(app); "
            "print(sorted(m for m in ('slimserve.ratelimit_counters', 'redis') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"  # start-up pays nothing for a feature that is off


START_UP_THEN_THREE_REQUESTS = """
import io, sys
from slimserve import create_app
from tests.conftest import image_bytes
app = create_app({"RATE_LIMIT_PREDICT": "2/minute", "LOAD_ASYNC": False})
at_start = "slimserve.ratelimit_counters" in sys.modules
client = app.test_client()
statuses, loaded = [], []
for _ in range(3):
    response = client.post("/predict", data={"file": (io.BytesIO(image_bytes()), "a.jpg")})
    loaded.append(app.extensions["slimserve.limiter_deferred"].counters is not None)
    response.close()  # what the server does once the body is sent
    statuses.append(response.status_code)
print("RESULT", at_start, loaded, statuses[0] != 429, statuses[1] != 429, statuses[2])
"""


def test_start_up_does_not_build_the_counters_the_first_request_loads_them_and_is_counted():
    done = subprocess.run([sys.executable, "-c", START_UP_THEN_THREE_REQUESTS], capture_output=True, text=True,
                          timeout=120, check=True)
    result = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    # Nothing of the limiter before the first prediction; loaded after that answer was sent; the first
    # request still counts against the budget of 2, so the third is refused.
    assert result == "RESULT False [False, True, True] True True 429"


def test_a_budget_counts_the_first_request_of_each_client_and_bucket(client):
    assert predict(client, "/models/pneumonia/predict", addr="192.0.2.9").status_code == 200  # before loading
    assert client.get("/version", environ_base={"REMOTE_ADDR": "192.0.2.9"}).status_code == 200
    assert predict(client, addr="192.0.2.9").status_code == 200  # the shared predict budget of 2, second hit
    assert predict(client, addr="192.0.2.9").status_code == 429
    assert [client.get("/version", environ_base={"REMOTE_ADDR": "192.0.2.9"}).status_code
            for _ in range(2)] == [200, 429]  # its own bucket: 2 per minute per route


def test_an_unknown_limit_storage_stops_the_start(model_path, fake_runtimes):
    with pytest.raises(ValueError, match="RATELIMIT_STORAGE_URI"):
        limited_app(model_path, fake_runtimes, RATELIMIT_STORAGE_URI="memcached://localhost:11211")


def test_an_invalid_limit_stops_the_start_naming_the_variable(model_path, fake_runtimes):
    with pytest.raises(ValueError, match="SLIMSERVE_RATE_LIMIT_PREDICT"):
        limited_app(model_path, fake_runtimes, RATE_LIMIT_PREDICT="sixty a minute")


def test_a_negative_number_of_trusted_proxies_is_refused(model_path, fake_runtimes):
    with pytest.raises(ValueError, match="SLIMSERVE_TRUSTED_PROXIES"):
        limited_app(model_path, fake_runtimes, TRUSTED_PROXIES=-1)


def test_the_openapi_document_lists_429_on_every_limited_route(tmp_path, fake_runtimes):
    write_fake_model(tmp_path / "pneumonia")
    write_fake_tabular_model(tmp_path / "heart")
    app = create_app({"MODEL_PATH": str(tmp_path), "DEFAULT_MODEL": "pneumonia", "RUNTIMES": fake_runtimes,
                      "LOAD_ASYNC": False, "AUTO_COMPILE": False})
    paths = app.test_client().get("/openapi.json").get_json()["paths"]
    probes = {"/health", "/ready", "/ping", "/models/{name}/ready"}
    assert "/models/heart/invocations" in paths
    for path, operations in paths.items():
        for operation in operations.values():
            assert ("429" in operation["responses"]) == (path not in probes), path
    header = paths["/predict"]["post"]["responses"]["429"]
    assert header == {"$ref": "#/components/responses/TooManyRequests"}


def test_defaults_limit_predictions_per_ip_in_memory():
    config = from_env({})
    assert config["RATELIMIT_ENABLED"] is True and config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert config["RATE_LIMIT_PREDICT"] == "60/minute" and config["TRUSTED_PROXIES"] == 0


def test_settings_come_from_the_environment():
    config = from_env({"SLIMSERVE_RATE_LIMIT_ENABLED": "off", "SLIMSERVE_TRUSTED_PROXIES": "1",
                       "SLIMSERVE_RATE_LIMIT_PREDICT": "5/second;100/hour",
                       "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0"})
    assert config["RATELIMIT_ENABLED"] is False and config["TRUSTED_PROXIES"] == 1
    assert config["RATE_LIMIT_PREDICT"] == "5/second;100/hour"
    assert config["RATELIMIT_STORAGE_URI"] == "redis://127.0.0.1:6379/0"
