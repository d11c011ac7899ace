"""A real HTTP server on loopback that plays the Render API and the deployed app, one scenario at a time.

Render side: the documented deploy endpoints (see scripts/deploy/render_api.py), bearer-key checks, deploy
status scripts advanced one step per poll, 429s with Retry-After, rollback, cancel and a deploy hook.
App side: /health, /ready, /version (reporting the live deploy's commit) and /predict, each of which can
be broken per scenario. Every request is recorded so tests can assert what was sent.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SERVICE_ID = "srv-test0001"
OLD_COMMIT = "1" * 40
NEW_COMMIT = "2" * 40
OLD_DEPLOY = "dep-old0001"
SUCCESS = ("build_in_progress", "update_in_progress", "live")


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Scenario:
    """What the fake does; the defaults are a healthy service with one live deploy."""

    api_key: str = "rnd_test_secret_key_0123456789"
    hook_key: str = "hook_secret_abcdef"
    new_deploy_statuses: tuple[str, ...] = SUCCESS
    rollback_statuses: tuple[str, ...] = ("update_in_progress", "live")
    has_live_deploy: bool = True
    rate_limited_triggers: int = 0  # this many POST /deploys answer 429 first
    retry_after: str = "0"
    app: str = "healthy"  # healthy | wrong_commit | predict_500
    trigger_error_echoes_key: bool = False  # a 401 whose body quotes the Authorization header
    trigger_queued_without_body: bool = False  # "202 Queued" with no deploy object in the reply
    service_url: str | None = None  # serviceDetails.url; defaults to the fake's own address


@dataclass
class FakeRender:
    """The running server, its scenario and everything it recorded."""

    scenario: Scenario
    requests: list[Recorded] = field(default_factory=list)
    deploys: list[dict[str, Any]] = field(default_factory=list)  # newest first, as Render lists them
    scripts: dict[str, list[str]] = field(default_factory=dict)  # statuses still to come, per deploy
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """Base URL of the fake (API and app alike)."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def hook_url(self) -> str:
        """The service's secret deploy hook URL."""
        return f"{self.url}/deploy/{SERVICE_ID}?key={self.scenario.hook_key}"

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        """Recorded requests whose method matches and whose path matches the regex."""
        return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path.split("?")[0])]

    def new_deploy(self, commit: str, statuses: tuple[str, ...], trigger: str) -> dict[str, Any]:
        """Create a deploy that walks through statuses, one per poll."""
        deploy = {"id": f"dep-new{len(self.deploys):04d}", "commit": {"id": commit}, "status": "created",
                  "trigger": trigger}
        self.deploys.insert(0, deploy)
        self.scripts[deploy["id"]] = list(statuses)
        return deploy

    def advance(self, deploy: dict[str, Any]) -> None:
        """Move one deploy one status on; going live deactivates the deploy that was live."""
        script = self.scripts.get(deploy["id"])
        if not script:
            return
        deploy["status"] = script.pop(0)
        if deploy["status"] == "live":
            for other in self.deploys:
                if other is not deploy and other["status"] == "live":
                    other["status"] = "deactivated"

    def live_commit(self) -> str | None:
        """The commit the app is serving: that of the live deploy."""
        return next((d["commit"]["id"] for d in self.deploys if d["status"] == "live"), None)


API = re.compile(rf"/v1/services/{SERVICE_ID}(?P<rest>(/deploys(/(?P<deploy>[\w-]+)(?P<cancel>/cancel)?)?|/rollback)?)")


class Handler(BaseHTTPRequestHandler):
    """Routes one request to the Render API, the deploy hook or the app."""

    fake: FakeRender

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake = self.fake
        with fake.lock:
            fake.requests.append(Recorded(method, self.path, dict(self.headers.items()), body))
            path = urlsplit(self.path).path
            route = API.fullmatch(path)
            if route:
                self._api(method, route, body)
            elif path == f"/deploy/{SERVICE_ID}" and method == "POST":
                self._hook()
            elif path in ("/health", "/ready", "/version", "/predict"):
                self._app(method, path, body)
            else:
                self._reply(404, {"message": "not found"})

    def do_GET(self) -> None:
        """Serve a GET."""
        self._handle("GET")

    def do_POST(self) -> None:
        """Serve a POST."""
        self._handle("POST")

    def _api(self, method: str, route: re.Match[str], body: bytes) -> None:
        fake, scenario = self.fake, self.fake.scenario
        if self.headers.get("Authorization") != f"Bearer {scenario.api_key}":
            self._reply(401, {"message": "unauthorized"})
            return
        rest, deploy_id = route["rest"], route["deploy"]
        deploy = next((d for d in fake.deploys if d["id"] == deploy_id), None)
        if method == "GET" and rest == "":
            self._reply(200, {"id": SERVICE_ID, "type": "web_service",
                              "serviceDetails": {"url": scenario.service_url or fake.url}})
        elif method == "GET" and rest == "/deploys":
            limit = int(query(self.path).get("limit", ["20"])[0])
            self._reply(200, [{"deploy": d, "cursor": f"c-{d['id']}"} for d in fake.deploys[:limit]])
        elif method == "POST" and rest == "/deploys":
            self._trigger(body)
        elif method == "GET" and deploy is not None and not route["cancel"]:
            fake.advance(deploy)
            self._reply(200, deploy)
        elif method == "POST" and deploy is not None and route["cancel"]:
            fake.scripts[deploy["id"]] = []
            deploy["status"] = "canceled"
            self._reply(200, deploy)
        elif method == "POST" and rest == "/rollback":
            target = next((d for d in fake.deploys if d["id"] == json.loads(body)["deployId"]), None)
            if target is None:
                self._reply(404, {"message": "deploy not found"})
                return
            self._reply(201, fake.new_deploy(target["commit"]["id"], scenario.rollback_statuses, "rollback"))
        else:
            self._reply(404, {"message": "not found"})

    def _trigger(self, body: bytes) -> None:
        fake, scenario = self.fake, self.fake.scenario
        if scenario.trigger_error_echoes_key:
            self._reply(401, {"message": f"bad credentials: {self.headers.get('Authorization')}"})
            return
        if len(fake.calls("POST", rf"/v1/services/{SERVICE_ID}/deploys")) <= scenario.rate_limited_triggers:
            self._reply(429, {"message": "rate limit"}, {"Retry-After": scenario.retry_after,
                                                         "Ratelimit-Limit": "10", "Ratelimit-Remaining": "0"})
            return
        deploy = fake.new_deploy(json.loads(body)["commitId"], scenario.new_deploy_statuses, "api")
        if scenario.trigger_queued_without_body:
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._reply(201, deploy)

    def _hook(self) -> None:
        fake = self.fake
        if query(self.path).get("key") != [fake.scenario.hook_key]:
            self._reply(404, {"message": "not found"})
            return
        # A hook deploys the branch head; in these scenarios that is the pushed commit.
        deploy = fake.new_deploy(NEW_COMMIT, fake.scenario.new_deploy_statuses, "deploy_hook")
        self._reply(200, {"deploy": {"id": deploy["id"]}})

    def _app(self, method: str, path: str, body: bytes) -> None:
        fake, behaviour = self.fake, self.fake.scenario.app
        for deploy in fake.deploys:  # with no API polling (hook mode) time passes as the app is probed
            fake.advance(deploy)
        commit = fake.live_commit()
        broken = commit == NEW_COMMIT  # a broken behaviour belongs to the new commit; rollbacks heal it
        if path == "/health":
            self._reply(200, {"status": "ok"})
        elif path == "/ready":
            self._reply(200, {"status": "ready"})
        elif path == "/version":
            shown = "f" * 40 if behaviour == "wrong_commit" and broken else commit
            self._reply(200, {"service": "slimserve", "version": "0.1.0", "git_commit": shown,
                              "models": [{"name": "pneumonia", "version": "1.0.0"}]})
        elif method == "POST" and behaviour == "predict_500" and broken:
            self._reply(500, {"error": "internal"})
        elif method == "POST" and b'name="file"' in body:
            name = re.search(rb'filename="([^"]+)"', body)
            self._reply(200, {"filename": name[1].decode() if name else None, "prediction": "PNEUMONIA",
                              "probability": 0.93, "model": "pneumonia", "version": "1.0.0",
                              "request_id": "test"})
        else:
            self._reply(400, {"error": "no file"})


def start(scenario: Scenario | None = None) -> FakeRender:
    """Start a fake on 127.0.0.1 on a free port, in a daemon thread."""
    fake = FakeRender(scenario or Scenario())
    if fake.scenario.has_live_deploy:
        fake.deploys.append({"id": OLD_DEPLOY, "commit": {"id": OLD_COMMIT}, "status": "live", "trigger": "api"})
    handler = type("BoundHandler", (Handler,), {"fake": fake})
    fake.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return fake


def stop(fake: FakeRender) -> None:
    """Shut the server down and free its port."""
    assert fake.server is not None
    fake.server.shutdown()
    fake.server.server_close()


def query(path: str) -> dict[str, list[str]]:
    """Parsed query string of a request path."""
    return parse_qs(urlsplit(path).query)


def body_json(recorded: Recorded) -> Any:
    """The JSON body of a recorded request."""
    return json.loads(recorded.body or b"null")
