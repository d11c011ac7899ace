"""API keys: creation, the stored entry, how they are presented, and that they never come back out."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from slimserve import create_app
from slimserve.auth.keys import KeyStore, create_key, digest, parse_entries
from tests.auth_support import REPO
from tests.conftest import write_fake_tabular_model


def test_cli_prints_a_high_entropy_key_and_an_entry_without_it():
    """`slimserve keys create` prints the key once and an entry holding id, digest and models only."""
    done = subprocess.run([sys.executable, "-m", "slimserve", "keys", "create", "--name", "ward7",
                           "--models", "heart,aids"], capture_output=True, text=True, check=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO / "src")})
    out = json.loads(done.stdout)
    key, entry = out["key"], out["entry"]
    assert re.fullmatch(r"ssk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", key)  # 43 base64url chars = 256 bits
    secret = key.split("_", 2)[2]
    assert secret not in entry and key not in entry
    key_id, stored_digest, models, name = entry.split(":")
    assert (key_id, stored_digest, models, name) == (key[4:16], digest(key), "aids,heart", "ward7")


def test_two_keys_never_repeat():
    """Keys come from the OS's CSPRNG: no two alike."""
    assert len({create_key("n", ["*"])[0] for _ in range(200)}) == 200


def test_entry_round_trips_and_verifies_only_the_exact_key():
    """The parsed entry accepts the key and rejects a one-character change, an unknown id and garbage."""
    key, entry = create_key("n", ["heart"])
    store = KeyStore(parse_entries(entry.line()))
    principal = store.verify(key)
    assert principal is not None and principal.id == f"key:{entry.key_id}" and principal.allows("heart")
    assert not principal.allows("aids")
    flipped = key[:-1] + ("A" if key[-1] != "A" else "B")
    other_id = "ssk_" + "0" * 12 + key[16:]
    for bad in (flipped, other_id, "ssk_", "", "Bearer x", key + "x"):
        assert store.verify(bad) is None


@pytest.mark.parametrize("text", ["nonsense", "abc:def:x:y", "0123456789ab:" + "0" * 64 + "::n"])
def test_malformed_entries_fail_start_up_without_echoing_the_line(text):
    """A bad SLIMSERVE_API_KEYS fails fast, naming the line number, not its content."""
    with pytest.raises(ValueError) as info:
        parse_entries(f"# comment\n\n{text}")
    assert "line 3" in str(info.value) and text not in str(info.value)


def test_revoking_is_removing_the_line(tmp_path, fake_runtimes):
    """A key whose entry is gone is refused."""
    key, _revoked = create_key("n", ["heart"])
    other_key, other_entry = create_key("m", ["heart"])
    app = create_app({"MODEL_PATH": str(write_fake_tabular_model(tmp_path / "heart")), "RUNTIMES": fake_runtimes,
                      "LOAD_ASYNC": False, "AUTO_COMPILE": False, "API_KEYS": other_entry.line(),
                      "AUDIT_SINK": "off"})
    record = {"Age": 50, "Sex": "M", "Cholesterol": 200, "FastingBS": False}
    client = app.test_client()
    assert client.post("/models/heart/predict", json={"records": [record]},
                       headers={"X-API-Key": key}).status_code == 401
    assert client.post("/models/heart/predict", json={"records": [record]},
                       headers={"Authorization": f"bearer {other_key}"}).status_code == 200


def test_a_refused_key_is_not_echoed_or_logged(tmp_path, fake_runtimes, caplog):
    """Neither the response nor the log carries a presented key."""
    key, entry = create_key("n", ["heart"])
    wrong = key[:-4] + "ZZZZ"
    app = create_app({"MODEL_PATH": str(write_fake_tabular_model(tmp_path / "heart")), "RUNTIMES": fake_runtimes,
                      "LOAD_ASYNC": False, "AUTO_COMPILE": False, "API_KEYS": entry.line(), "AUDIT_SINK": "off"})
    caplog.set_level("DEBUG")
    response = app.test_client().post("/models/heart/predict", json={"records": []}, headers={"X-API-Key": wrong})
    assert response.status_code == 401
    assert wrong not in response.get_data(as_text=True) and wrong not in str(response.headers)
    assert wrong[4:] not in caplog.text


def test_the_optional_extras_are_pinned_alike_in_both_files():
    """requirements-auth.txt and requirements-dev.txt carry the same pins for the auth extras."""
    def pins(name: str) -> set[str]:
        return {line.strip() for line in (REPO / name).read_text().splitlines()
                if line.strip().startswith(("pyjwt", "cryptography", "psycopg"))}

    assert pins("requirements-auth.txt") == pins("requirements-dev.txt") and len(pins("requirements-dev.txt")) == 3
