"""A small client for the parts of the Render REST API a deploy needs (stdlib only).

Endpoints, shapes and limits as documented by Render (api-docs.render.com, read 2026-11):
- POST /v1/services/{serviceId}/deploys {"commitId": sha} -> the new deploy object ("Trigger deploy").
- GET  /v1/services/{serviceId}/deploys?limit=N -> [{"deploy": {...}, "cursor": "..."}, ...], newest first
  ("List deploys"; the cursor is a sibling of the resource, see the "Pagination" page).
- GET  /v1/services/{serviceId}/deploys/{deployId} -> deploy object with "status" ("Retrieve deploy").
- POST /v1/services/{serviceId}/deploys/{deployId}/cancel -> the canceled deploy ("Cancel deploy").
- POST /v1/services/{serviceId}/rollback {"deployId": id} -> the new rollback deploy ("Roll back deploy");
  unlike a dashboard rollback, an API rollback does not turn autodeploy off (render.com/docs/rollbacks).
- GET  /v1/services/{serviceId} -> service with serviceDetails.url, the public onrender.com URL.
- Deploy statuses: created, queued, build_in_progress, update_in_progress, pre_deploy_in_progress, live,
  deactivated, build_failed, update_failed, pre_deploy_failed, canceled.
- Rate limits ("Rate Limiting" page): deploys 10/minute/service, other POSTs 30/minute, GETs 400/minute;
  a 429 carries Ratelimit-Limit / Ratelimit-Remaining / Ratelimit-Reset (documented as UTC epoch seconds,
  shown in the example as seconds to wait, so both readings are handled), and Retry-After may be present.
"""

from __future__ import annotations

import email.utils
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any

LIVE = "live"
FAILED = frozenset({"build_failed", "update_failed", "pre_deploy_failed", "canceled", "deactivated"})
# Ratelimit-Reset values above this are absolute epoch seconds, below it a number of seconds to wait.
_EPOCH_THRESHOLD = 1_000_000_000


class RenderError(Exception):
    """A Render API call failed; the message never contains a secret."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Redactor:
    """Replaces every known secret in a text with a placeholder before it is printed anywhere."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        # Longest first so a secret that contains another (a hook URL contains its key) goes whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """Return text with secrets replaced by ***."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def retry_delay(headers: Mapping[str, str], attempt: int, now: float | None = None) -> float:
    """Seconds to wait after a 429: Retry-After, else Ratelimit-Reset, else exponential backoff."""
    now = time.time() if now is None else now
    retry_after = headers.get("Retry-After")
    if retry_after:
        if retry_after.strip().isdigit():
            return float(retry_after)
        parsed = email.utils.parsedate_to_datetime(retry_after)
        if parsed is not None:
            return max(0.0, parsed.timestamp() - now)
    reset = headers.get("Ratelimit-Reset")
    if reset:
        try:
            value = float(reset)
        except ValueError:
            value = None
        if value is not None:
            return max(0.0, value - now) if value > _EPOCH_THRESHOLD else value
    return float(2**attempt)


class RenderClient:
    """Authenticated JSON calls to one Render service, with bounded retries on 429."""

    def __init__(self, api_base: str, api_key: str, service_id: str, redact: Redactor, *,
                 timeout: float = 30.0, max_retries: int = 5, max_wait: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] = print) -> None:
        self.api_base = api_base.rstrip("/")
        self.service_id = service_id
        self._key = api_key
        self._redact = redact
        self._timeout = timeout
        self._max_retries = max_retries
        self._max_wait = max_wait
        self._sleep = sleep
        self._log = log

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one call and return its parsed JSON (None for an empty body)."""
        url = f"{self.api_base}/v1{path}"
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(self._max_retries + 1):
            request = urllib.request.Request(url, data=data, method=method)
            request.add_header("Authorization", f"Bearer {self._key}")
            request.add_header("Accept", "application/json")
            if data is not None:
                request.add_header("Content-Type", "application/json")
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:
                    raw = response.read()
                return json.loads(raw) if raw.strip() else None
            except urllib.error.HTTPError as error:
                text = self._redact(error.read().decode("utf-8", "replace")[:300])
                if error.code == 429 and attempt < self._max_retries:
                    delay = min(retry_delay(error.headers, attempt), self._max_wait)
                    self._log(f"Render API rate limit on {method} {path}; retrying in {delay:.1f}s")
                    self._sleep(delay)
                    continue
                # Only reads are retried on a server error: a repeated POST could start a second deploy.
                if error.code >= 500 and method == "GET" and attempt < self._max_retries:
                    self._log(f"Render API {method} {path} -> HTTP {error.code}; retrying")
                    self._sleep(min(float(2**attempt), self._max_wait))
                    continue
                raise RenderError(f"{method} {path} -> HTTP {error.code}: {text}", error.code) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                reason = self._redact(str(getattr(error, "reason", error)))
                if method == "GET" and attempt < self._max_retries:
                    self._log(f"Render API {method} {path} -> {reason}; retrying")
                    self._sleep(min(float(2**attempt), self._max_wait))
                    continue
                raise RenderError(f"{method} {path} -> {reason}") from None
        raise AssertionError("unreachable: the last attempt either returns or raises")

    def _service(self, suffix: str = "") -> str:
        return f"/services/{self.service_id}{suffix}"

    def live_deploy(self, limit: int = 20) -> dict[str, Any] | None:
        """The deploy currently live, or None (a new service, or one whose live deploy is older than limit)."""
        for entry in self.request("GET", self._service(f"/deploys?limit={limit}")) or []:
            deploy = entry.get("deploy", entry)
            if deploy.get("status") == LIVE:
                return deploy
        return None

    def trigger(self, commit: str) -> dict[str, Any]:
        """Start a deploy of one commit and return the deploy object."""
        deploy = self.request("POST", self._service("/deploys"), {"commitId": commit}) or {}
        if deploy.get("id"):
            return deploy
        # "Trigger deploy" may answer 202 Queued without a body: find the deploy by its commit instead.
        for entry in self.request("GET", self._service("/deploys?limit=20")) or []:
            candidate = entry.get("deploy", entry)
            if (candidate.get("commit") or {}).get("id") == commit:
                return candidate
        raise RenderError(f"Render accepted the deploy of {commit} but no deploy of it is listed")

    def deploy(self, deploy_id: str) -> dict[str, Any]:
        """One deploy's current state."""
        return self.request("GET", self._service(f"/deploys/{deploy_id}"))

    def cancel(self, deploy_id: str) -> dict[str, Any]:
        """Cancel an unfinished deploy."""
        return self.request("POST", self._service(f"/deploys/{deploy_id}/cancel"))

    def rollback(self, deploy_id: str) -> dict[str, Any]:
        """Start a rollback to an earlier deploy and return the new (rollback) deploy."""
        return self.request("POST", self._service("/rollback"), {"deployId": deploy_id})

    def service_url(self) -> str | None:
        """The service's public URL from serviceDetails.url."""
        service = self.request("GET", self._service()) or {}
        return (service.get("serviceDetails") or {}).get("url")

    def wait(self, deploy_id: str, timeout: float, interval: float) -> dict[str, Any]:
        """Poll a deploy until it is live or failed; on timeout return its last (unfinished) state."""
        deadline = time.monotonic() + timeout
        last_status = None
        while True:
            deploy = self.deploy(deploy_id)
            status = deploy.get("status")
            if status != last_status:
                self._log(f"  deploy {deploy_id}: {status}")
                last_status = status
            if status == LIVE or status in FAILED or time.monotonic() + interval > deadline:
                return deploy
            self._sleep(interval)
