"""Rate limits in shared storage: a real Redis (Debian's `redis-server`, installed, started and stopped by these
tests), the Redis client's settings and the back-off when the storage fails."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from slimserve import ratelimit_counters
from slimserve.ratelimit import parse_limits
from tests.conftest import image_bytes
from tests.test_http_errors import assert_error
from tests.test_ratelimit import limited_app

APT = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-y", "-q"]


def redis_server_binary() -> str:
    """Path of `redis-server`, installing the Debian package first if it is missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("redis-server is missing and cannot be installed here (needs root and apt-get): "
                    "run `apt-get install -y redis-server`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*APT, "install", "--no-install-recommends", "redis-server"]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:  # a fresh machine has no package lists yet
        subprocess.run([*APT, "update"], env=env, capture_output=True, timeout=600, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600, check=False)
    found = shutil.which("redis-server")
    if not found:
        pytest.skip(f"could not install redis-server with apt-get: {done.stderr.strip()[-300:]}")
    return found


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A throwaway redis-server on a free loopback port: no persistence, its files in `folder`."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = folder / "redis.log"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(folder), "--daemonize", "no", "--logfile", str(self.log)]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the server answers PING."""
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(f"redis-server exited: {self.log.read_text()[-500:]}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.05)
            pytest.fail("redis-server did not answer PING within 10 s")
        finally:
            client.close()

    def stored_keys(self) -> list[bytes]:
        """Every key stored in the server."""
        with redis.Redis.from_url(self.url) as client:
            return client.keys("*")

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def redis_server(tmp_path):
    """A running redis-server, stopped when the test ends, also when it fails."""
    server = RedisServer(redis_server_binary(), tmp_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def predict(client, addr: str = "198.51.100.9"):
    """POST one small JPEG from `addr`."""
    return client.post("/predict", data={"file": (io.BytesIO(image_bytes()), "a.jpg")},
                       environ_base={"REMOTE_ADDR": addr})


def test_two_instances_sharing_one_redis_share_one_budget(model_path, fake_runtimes, redis_server):
    first, second = (limited_app(model_path, fake_runtimes, RATELIMIT_STORAGE_URI=redis_server.url,
                                 RATE_LIMIT_PREDICT="3/minute").test_client() for _ in range(2))
    assert [predict(first).status_code, predict(second).status_code, predict(first).status_code] == [200] * 3
    assert_error(predict(second), 429, "too_many_requests")
    assert predict(first).status_code == 429
    assert any(b"slimserve" in key for key in redis_server.stored_keys())  # counted in Redis, not in memory


def test_predictions_go_on_when_redis_stops(model_path, fake_runtimes, redis_server):
    client = limited_app(model_path, fake_runtimes, RATELIMIT_STORAGE_URI=redis_server.url,
                         RATE_LIMIT_PREDICT="2/minute").test_client()
    first = predict(client)
    assert first.status_code == 200
    first.close()  # as the server does once the body is sent: the counters load, the hit goes to Redis
    assert redis_server.stored_keys()
    redis_server.stop()
    # Limiting goes on per instance, in memory, from a fresh count: never a 500.
    assert [predict(client).status_code for _ in range(2)] == [200, 200]
    response = predict(client)
    assert_error(response, 429, "too_many_requests")
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_an_unreachable_redis_at_start_up_does_not_stop_predictions(model_path, fake_runtimes):
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    client = limited_app(model_path, fake_runtimes, RATELIMIT_STORAGE_URI=url,
                         RATE_LIMIT_PREDICT="5/minute").test_client()
    assert {predict(client).status_code for _ in range(3)} == {200}


def test_a_failing_shared_storage_is_retried_after_a_growing_back_off(monkeypatch):
    class Flaky:
        """A shared store that fails until `up`, then counts 1."""

        def __init__(self) -> None:
            self.up, self.calls = False, 0

        def incr(self, key: str, seconds: int) -> tuple[int, float]:
            self.calls += 1
            if not self.up:
                raise ConnectionError("redis is down")
            return 1, time.time() + seconds

    now = [1000.0]
    monkeypatch.setattr(ratelimit_counters.time, "monotonic", lambda: now[0])
    counters = ratelimit_counters.Counters("memory://")
    counters.shared = flaky = Flaky()
    limit = parse_limits("2/minute")[0]
    assert [counters.hit(limit, "ip:a", "predict") for _ in range(2)] == [0, 0]  # counted in memory meanwhile
    assert flaky.calls == 1  # tried once, then left alone for the back-off (1 s)
    now[0] += 1.0
    counters.hit(limit, "ip:a", "predict")
    assert flaky.calls == 2  # tried again, failed again: next wait is 2 s
    now[0] += 1.0
    counters.hit(limit, "ip:a", "predict")
    assert flaky.calls == 2
    now[0] += 1.0
    flaky.up = True
    assert counters.hit(limit, "ip:a", "predict") == 0 and flaky.calls == 3  # back in the shared storage


def test_a_redis_unix_socket_uri_reaches_the_client_as_a_socket_path():
    counters = ratelimit_counters.RedisCounters("redis+unix:///run/redis/redis.sock?db=2", {"socket_timeout": 0.5})
    kwargs = counters.client.connection_pool.connection_kwargs  # built without connecting
    assert kwargs["path"] == "/run/redis/redis.sock" and kwargs["db"] == 2 and kwargs["socket_timeout"] == 0.5
