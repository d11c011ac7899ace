"""What an audit record holds: who, which model and version, the outcome, a hash of the input, and a
pseudonymous patient reference — never raw values, file names, images or identifiers in the clear."""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import UTC, datetime

FIELDS = ("record_id", "time", "request_id", "principal", "model", "model_version", "route", "status",
          "outcome", "latency_ms", "input_sha256", "patient_ref")


def patient_ref(audit_key: str | None, patient_id: str | None) -> str | None:
    """HMAC-SHA256 of the patient id under the audit key (hex), or None without an id or a key."""
    if not patient_id or not audit_key:
        return None
    return hmac.new(audit_key.encode(), patient_id.strip().encode(), hashlib.sha256).hexdigest()


def outcome(status: int) -> str:
    """accepted (2xx), unauthenticated (401), forbidden (403) or refused (any other status)."""
    if 200 <= status < 300:
        return "accepted"
    return {401: "unauthenticated", 403: "forbidden"}.get(status, "refused")


def build_record(*, request_id: str, principal: str | None, model: str | None, model_version: str | None,
                 route: str | None, status: int, latency_ms: float | None, input_sha256: str | None,
                 patient: str | None) -> dict:
    """One audit record as a flat dict of the FIELDS."""
    return {
        "record_id": os.urandom(16).hex(),  # 128 random bits, as uuid4 without its cost
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "request_id": request_id,
        "principal": principal,
        "model": model,
        "model_version": model_version,
        "route": route,
        "status": status,
        "outcome": outcome(status),
        "latency_ms": None if latency_ms is None else round(latency_ms, 3),  # None: answered by the worker
        "input_sha256": input_sha256,
        "patient_ref": patient,
    }


class HashingInput:
    """Wraps `wsgi.input`: hashes exactly the bytes the app reads, so the input is hashed without a copy."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._digest = hashlib.sha256()
        self.bytes_read = 0

    def _seen(self, data: bytes) -> bytes:
        self._digest.update(data)
        self.bytes_read += len(data)
        return data

    def read(self, *args) -> bytes:
        """Read and hash."""
        return self._seen(self._stream.read(*args))

    def readline(self, *args) -> bytes:
        """Read a line and hash it."""
        return self._seen(self._stream.readline(*args))

    def readinto(self, buffer) -> int:
        """Read into `buffer` and hash what arrived."""
        readinto = getattr(self._stream, "readinto", None)
        if readinto is None:
            data = self._stream.read(len(buffer))
            buffer[: len(data)] = data
            self._seen(data)
            return len(data)
        size = readinto(buffer) or 0  # straight into the caller's buffer: no copy
        with memoryview(buffer) as view:
            self._digest.update(view[:size])
        self.bytes_read += size
        return size

    def __iter__(self):
        """Iterate over lines, hashing them."""
        return iter(self.readline, b"")

    def hexdigest(self) -> str | None:
        """SHA-256 of everything read, or None when the body was never read (e.g. refused before reading)."""
        return self._digest.hexdigest() if self.bytes_read else None
