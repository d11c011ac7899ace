"""API keys: created once by `slimserve keys create`, stored by the server only as a digest.

A key is `ssk_<key id>_<secret>` with 256 random bits of secret. `SLIMSERVE_API_KEYS` holds one entry per
line, `<key id>:<sha256 of the key>:<models, comma-separated or *>:<name>`; revoking a key is removing its
line. SHA-256 (not a slow password hash) suffices because the key is random and long, not chosen by a person.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from slimserve.auth.policy import Principal, model_set

PREFIX = "ssk_"
_KEY = re.compile(r"^ssk_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_DUMMY_DIGEST = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class KeyEntry:
    """One configured key: its id, the digest of the key, its models and a human name."""

    key_id: str
    digest: str
    models: frozenset[str]
    name: str

    def line(self) -> str:
        """The entry as one line of SLIMSERVE_API_KEYS."""
        return f"{self.key_id}:{self.digest}:{','.join(sorted(self.models))}:{self.name}"


def digest(key: str) -> str:
    """The hex SHA-256 of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(name: str, models: list[str]) -> tuple[str, KeyEntry]:
    """A new random key and its entry (the key itself is never stored)."""
    if not _NAME.match(name):
        raise ValueError("--name: 1-64 letters, digits, '.', '_' or '-'")
    allowed = model_set(models)
    if not allowed or any(not _NAME.match(m) and m != "*" for m in allowed):
        raise ValueError("--models: comma-separated model names, or *")
    key = f"{PREFIX}{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
    return key, KeyEntry(_KEY.match(key).group(1), digest(key), allowed, name)


def parse_entries(text: str) -> dict[str, KeyEntry]:
    """Parse SLIMSERVE_API_KEYS (blank lines and `#` comments allowed); fails naming only the line number."""
    entries: dict[str, KeyEntry] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if (len(parts) != 4 or not re.fullmatch(r"[0-9a-f]{12}", parts[0])
                or not re.fullmatch(r"[0-9a-f]{64}", parts[1]) or not model_set(parts[2].split(","))):
            raise ValueError(f"SLIMSERVE_API_KEYS line {number} is not key_id:sha256:models:name")
        if parts[0] in entries:
            raise ValueError(f"SLIMSERVE_API_KEYS line {number} repeats a key id")
        entries[parts[0]] = KeyEntry(parts[0], parts[1], model_set(parts[2].split(",")), parts[3])
    return entries


class KeyStore:
    """Verifies presented keys against the configured entries in constant time."""

    def __init__(self, entries: dict[str, KeyEntry]) -> None:
        self.entries = entries

    def verify(self, presented: str) -> Principal | None:
        """The principal of a valid key, or None."""
        match = _KEY.match(presented)
        entry = self.entries.get(match.group(1)) if match else None
        # Always compare one digest, so an unknown id costs the same time as a wrong secret.
        ok = hmac.compare_digest(digest(presented), entry.digest if entry else _DUMMY_DIGEST)
        if not (ok and entry):
            return None
        return Principal(f"key:{entry.key_id}", entry.models, mfa=False)
