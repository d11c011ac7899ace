"""Deploy-list helpers of the fake Render API: timestamps, the list filters, query strings."""

from __future__ import annotations

import datetime
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit


def commit_of(deploy: dict[str, Any], image_commit: str) -> str:
    """The commit a deploy serves: its own, or for an image deploy the commit the image was built from."""
    return deploy["commit"]["id"] if "commit" in deploy else image_commit


def stamp(seconds_ago: float) -> str:
    """An ISO-8601 UTC time, as Render writes createdAt."""
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds_ago)
    return now.isoformat(timespec="microseconds").replace("+00:00", "Z")


def listed(deploys: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    """Deploys filtered as "List deploys" filters them: status, createdAfter, then limit."""
    params = query(path)
    statuses = {s for value in params.get("status", []) for s in value.split(",")}
    after = params.get("createdAfter", [None])[0]
    found = [d for d in deploys if (not statuses or d["status"] in statuses)
             and (after is None or parse_time(d["createdAt"]) > parse_time(after))]
    return found[: int(params.get("limit", ["20"])[0])]


def parse_time(text: str) -> datetime.datetime:
    """Parse an ISO-8601 time with a Z or an offset."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def query(path: str) -> dict[str, list[str]]:
    """Parsed query string of a request path."""
    return parse_qs(urlsplit(path).query)


def body_json(recorded: Any) -> Any:
    """The JSON body of a recorded request."""
    return json.loads(recorded.body or b"null")
