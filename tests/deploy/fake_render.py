"""A real HTTP server on loopback that plays the Render API and the deployed app, one scenario at a time.

Render side: the documented deploy endpoints (see scripts/deploy/render_api.py), bearer-key checks, deploy
status scripts advanced one step per poll, 429s with Retry-After, rollback, cancel and a deploy hook, the
list filters `status`, `createdAfter` and `limit`, and the failure cases a deploy must survive: 5xx and dropped
connections while polling, a cancel that races go-live, a refused rollback, a live deploy older than the first
page, a 202 without a body beside an older deploy of the same commit, a trigger that fails after starting.
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
from urllib.parse import urlsplit

from tests.deploy.fake_app import app_reply
from tests.deploy.render_lists import body_json, commit_of, listed, parse_time, query, stamp

__all__ = ["body_json", "query", "start", "stop"]

SERVICE_ID = "srv-test0001"
OLD_COMMIT = "1" * 40
NEW_COMMIT = "2" * 40
OLD_DEPLOY = "dep-old0001"
SUCCESS = ("build_in_progress", "update_in_progress", "live")
IMAGE_URL = "ghcr.io/example/slimserve@sha256:" + "a" * 64  # an image built from NEW_COMMIT


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
    older_failed_deploys: int = 0  # this many failed deploys newer than the live one (pushes it off page 1)
    old_deploy_of_new_commit: float = 0  # seconds since an older deploy of the same commit (0: none)
    poll_failures: int = 0  # this many reads of a new deploy fail (the deploy still moves on meanwhile)
    poll_failure: str = "503"  # how they fail: "503" or "drop" (connection closed without an answer)
    api_down_until_cancel: bool = False  # every read of a new deploy fails until a cancel arrives
    cancel_races_go_live: bool = False  # the deploy goes live as the cancel arrives
    rollback_refused: int = 0  # the status a rollback gets: 400 (old build no longer retained), or a 5xx
    trigger_fails_after_start: bool = False  # POST /deploys starts the deploy, then answers 502
    queued_unlisted_for: int = 0  # after a 202, the new deploy is missing from this many listings


@dataclass
class FakeRender:
    """The running server, its scenario and everything it recorded."""

    scenario: Scenario
    requests: list[Recorded] = field(default_factory=list)
    deploys: list[dict[str, Any]] = field(default_factory=list)  # newest first, as Render lists them
    scripts: dict[str, list[str]] = field(default_factory=dict)  # statuses still to come, per deploy
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    failed_polls: int = 0
    hidden_lists: int = 0
    canceled: bool = False

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

    def new_deploy(self, source: dict[str, Any], statuses: tuple[str, ...], trigger: str) -> dict[str, Any]:
        """Create a deploy of `source` ({"commit": …} or {"image": …}) that walks through statuses, one per poll."""
        deploy = {"id": f"dep-new{len(self.deploys):04d}", **source, "status": "created", "trigger": trigger,
                  "createdAt": stamp(0)}
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
        return next((commit_of(d, NEW_COMMIT) for d in self.deploys if d["status"] == "live"), None)

    def poll_fails(self) -> bool:
        """Whether this read of a new deploy is one the scenario makes fail."""
        if self.scenario.api_down_until_cancel and not self.canceled:
            return True
        self.failed_polls += 1
        return self.failed_polls <= self.scenario.poll_failures


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

    def _fail(self, how: str) -> None:
        if how == "drop":  # close without a status line: the client sees the connection drop
            self.close_connection = True
            return
        self._reply(503, {"message": "service unavailable"})

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
            shown = fake.deploys
            if fake.hidden_lists > 0:  # a queued deploy Render does not list yet
                fake.hidden_lists -= 1
                shown = [d for d in fake.deploys if d is not fake.deploys[0]]
            self._reply(200, [{"deploy": d, "cursor": f"c-{d['id']}"} for d in listed(shown, self.path)])
        elif method == "POST" and rest == "/deploys":
            self._trigger(body)
        elif method == "GET" and deploy is not None and not route["cancel"]:
            fake.advance(deploy)  # time passes whether or not the answer gets through
            if deploy_id != OLD_DEPLOY and fake.poll_fails():
                self._fail(scenario.poll_failure)
                return
            self._reply(200, deploy)
        elif method == "POST" and deploy is not None and route["cancel"]:
            self._cancel(deploy)
        elif method == "POST" and rest == "/rollback":
            target = next((d for d in fake.deploys if d["id"] == json.loads(body)["deployId"]), None)
            if target is None:
                self._reply(404, {"message": "deploy not found"})
            elif scenario.rollback_refused:
                self._reply(scenario.rollback_refused,
                            {"message": f"the build of deploy {target['id']} is no longer available"})
            else:
                source = {key: target[key] for key in ("commit", "image") if key in target}
                self._reply(201, fake.new_deploy(source, scenario.rollback_statuses, "rollback"))
        else:
            self._reply(404, {"message": "not found"})

    def _cancel(self, deploy: dict[str, Any]) -> None:
        fake = self.fake
        fake.canceled = True
        if fake.scenario.cancel_races_go_live:
            fake.scripts[deploy["id"]] = ["live"]
            fake.advance(deploy)
        if deploy["status"] == "live" or deploy["status"] in ("build_failed", "update_failed", "canceled"):
            self._reply(409, {"message": f"deploy {deploy['id']} is {deploy['status']} and cannot be canceled"})
            return
        fake.scripts[deploy["id"]] = []
        deploy["status"] = "canceled"
        self._reply(200, deploy)

    def _trigger(self, body: bytes) -> None:
        fake, scenario = self.fake, self.fake.scenario
        if scenario.trigger_error_echoes_key:
            self._reply(401, {"message": f"bad credentials: {self.headers.get('Authorization')}"})
            return
        if len(fake.calls("POST", rf"/v1/services/{SERVICE_ID}/deploys")) <= scenario.rate_limited_triggers:
            self._reply(429, {"message": "rate limit"}, {"Retry-After": scenario.retry_after,
                                                         "Ratelimit-Limit": "10", "Ratelimit-Remaining": "0"})
            return
        sent = json.loads(body)
        source = {"image": {"ref": sent["imageUrl"]}} if "imageUrl" in sent else {"commit": {"id": sent["commitId"]}}
        deploy = fake.new_deploy(source, scenario.new_deploy_statuses, "api")
        if scenario.trigger_fails_after_start:
            self._reply(502, {"message": "bad gateway"})
            return
        if scenario.trigger_queued_without_body:
            fake.hidden_lists = scenario.queued_unlisted_for
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
        deploy = fake.new_deploy({"commit": {"id": NEW_COMMIT}}, fake.scenario.new_deploy_statuses, "deploy_hook")
        self._reply(200, {"deploy": {"id": deploy["id"]}})

    def _app(self, method: str, path: str, body: bytes) -> None:
        fake, behaviour = self.fake, self.fake.scenario.app
        for deploy in fake.deploys:  # with no API polling (hook mode) time passes as the app is probed
            fake.advance(deploy)
        commit = fake.live_commit()
        # A broken behaviour belongs to the new commit; rollbacks heal it.
        self._reply(*app_reply(behaviour, commit, commit == NEW_COMMIT, method, path, body))


def start(scenario: Scenario | None = None) -> FakeRender:
    """Start a fake on 127.0.0.1 on a free port, in a daemon thread."""
    fake = FakeRender(scenario or Scenario())
    scenario = fake.scenario
    if scenario.old_deploy_of_new_commit:
        fake.deploys.append({"id": "dep-older-same", "commit": {"id": NEW_COMMIT}, "status": "deactivated",
                             "trigger": "api", "createdAt": stamp(scenario.old_deploy_of_new_commit)})
    for n in range(scenario.older_failed_deploys):
        fake.deploys.append({"id": f"dep-failed{n:04d}", "commit": {"id": "3" * 40}, "status": "build_failed",
                             "trigger": "api", "createdAt": stamp(7200 + n)})
    if scenario.has_live_deploy:
        fake.deploys.append({"id": OLD_DEPLOY, "commit": {"id": OLD_COMMIT}, "status": "live", "trigger": "api",
                             "createdAt": stamp(86400)})
    fake.deploys.sort(key=lambda d: parse_time(d["createdAt"]), reverse=True)
    handler = type("BoundHandler", (Handler,), {"fake": fake})
    fake.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return fake


def stop(fake: FakeRender) -> None:
    """Shut the server down and free its port."""
    assert fake.server is not None
    fake.server.shutdown()
    fake.server.server_close()
