"""A small client for the parts of the Render REST API a deploy needs (stdlib only).

Endpoints, shapes and limits as documented by Render (api-docs.render.com, read 2026-11):
- POST /v1/services/{serviceId}/deploys {"commitId": sha} or {"imageUrl": ref} -> the new deploy object
  ("Trigger deploy"; `imageUrl` for image-backed services); it may answer 202 Queued with no body.
- GET  /v1/services/{serviceId}/deploys?limit=N[&status=live][&createdAfter=ISO-8601] ->
  [{"deploy": {...}, "cursor": "..."}, ...], newest first ("List deploys"; the cursor is a sibling of the
  resource, see the "Pagination" page).
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

import datetime
import email.utils
import json
import random
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

    @property
    def transient(self) -> bool:
        """A dropped connection or a 5xx: the same call may well succeed a little later."""
        return self.status is None or self.status >= 500


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


def backoff(attempt: int, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Wait before retrying a transient error: exponential, capped, half of it random ("equal jitter").

    The jitter keeps several clients (or several polls of one) from retrying in lockstep against an API
    that is recovering; the fixed half keeps the wait from collapsing to zero.
    """
    ceiling = min(cap, float(2**attempt))
    return ceiling / 2 + rng() * ceiling / 2


def iso_utc(epoch: float) -> str:
    """An epoch time as the ISO-8601 UTC text Render's `createdAfter` filter takes."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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

    def request(self, method: str, path: str, body: Any = None, *, idempotent: bool | None = None) -> Any:
        """Send one call and return its parsed JSON (None for an empty body).

        429s are always retried; transient errors only for idempotent calls (GETs by default), since a
        repeated POST /deploys could start a second deploy.
        """
        idempotent = method == "GET" if idempotent is None else idempotent
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
                if error.code >= 500 and idempotent and attempt < self._max_retries:
                    self._log(f"Render API {method} {path} -> HTTP {error.code}; retrying")
                    self._sleep(backoff(attempt, self._max_wait))
                    continue
                raise RenderError(f"{method} {path} -> HTTP {error.code}: {text}", error.code) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                reason = self._redact(str(getattr(error, "reason", error)))
                if idempotent and attempt < self._max_retries:
                    self._log(f"Render API {method} {path} -> {reason}; retrying")
                    self._sleep(backoff(attempt, self._max_wait))
                    continue
                raise RenderError(f"{method} {path} -> {reason}") from None
        raise AssertionError("unreachable: the last attempt either returns or raises")

    def _service(self, suffix: str = "") -> str:
        return f"/services/{self.service_id}{suffix}"

    def live_deploy(self) -> dict[str, Any] | None:
        """The deploy currently live, or None for a service that never went live.

        Asked by status rather than read off the newest page: after 20 failed or canceled deploys the live
        one is no longer among the newest.
        """
        for entry in self.request("GET", self._service("/deploys?status=live&limit=1")) or []:
            return entry.get("deploy", entry)
        return None

    def deploys_since(self, created_after: float) -> list[dict[str, Any]]:
        """Deploys created after an epoch time, newest first."""
        query = f"/deploys?limit=100&createdAfter={iso_utc(created_after)}"
        return [entry.get("deploy", entry) for entry in self.request("GET", self._service(query)) or []]

    def trigger(self, body: dict[str, str], since: float, known: set[str]) -> dict[str, Any]:
        """Start a deploy and return the deploy object, finding it when Render answers without one.

        `body` is {"commitId": sha} or {"imageUrl": ref}. "Trigger deploy" may answer 202 Queued with no
        body, and a 5xx or a dropped connection leaves unknown whether the deploy started: either way the
        new deploy is looked up among those created after `since` that were not already listed (`known`),
        so an older deploy of the same commit is never mistaken for it.
        """
        try:
            deploy = self.request("POST", self._service("/deploys"), body) or {}
        except RenderError as error:
            if not error.transient:
                raise
            self._log(f"Trigger answered {error}; looking for the deploy it may have started")
            deploy = {}
        if deploy.get("id"):
            return deploy
        wanted = next(iter(body.values()))
        for attempt in range(self._max_retries + 1):
            for candidate in self.deploys_since(since):
                ref = ((candidate.get("commit") or {}).get("id"), (candidate.get("image") or {}).get("ref"))
                if wanted in ref and candidate.get("id") not in known:
                    return candidate
            if attempt < self._max_retries:
                self._sleep(backoff(attempt, self._max_wait))
        raise RenderError(f"Render did not confirm a deploy of {wanted}: none created since the trigger is listed")

    def deploy(self, deploy_id: str) -> dict[str, Any]:
        """One deploy's current state."""
        return self.request("GET", self._service(f"/deploys/{deploy_id}"))

    def cancel(self, deploy_id: str) -> dict[str, Any]:
        """Cancel an unfinished deploy (repeating a cancel is harmless, so transient errors are retried)."""
        return self.request("POST", self._service(f"/deploys/{deploy_id}/cancel"), idempotent=True)

    def rollback(self, deploy_id: str) -> dict[str, Any]:
        """Start a rollback to an earlier deploy and return the new (rollback) deploy."""
        return self.request("POST", self._service("/rollback"), {"deployId": deploy_id})

    def service_url(self) -> str | None:
        """The service's public URL from serviceDetails.url."""
        service = self.request("GET", self._service()) or {}
        return (service.get("serviceDetails") or {}).get("url")

    def wait(self, deploy_id: str, timeout: float, interval: float) -> dict[str, Any] | None:
        """Poll a deploy until it is live or failed.

        A poll that fails even after its retries (Render down, connection dropped) does not end the wait:
        polling continues until the deadline. Returns the last state read, which is unfinished on timeout,
        or None when no poll succeeded at all.
        """
        deadline = time.monotonic() + timeout
        last_status, deploy = None, None
        while True:
            try:
                deploy = self.deploy(deploy_id)
            except RenderError as error:
                if not error.transient:
                    raise
                self._log(f"  deploy {deploy_id}: state unknown ({error}); still polling")
                last_status = None
            else:
                status = deploy.get("status")
                if status != last_status:
                    self._log(f"  deploy {deploy_id}: {status}")
                    last_status = status
                if status == LIVE or status in FAILED:
                    return deploy
            if time.monotonic() + interval > deadline:
                return deploy
            self._sleep(interval)
