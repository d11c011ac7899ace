"""OIDC tokens: signature, issuer, audience, expiry, algorithm allowlist, JWKS caching and the MFA claim."""

from __future__ import annotations

import time

import jwt
import pytest

from slimserve.auth.tokens import InvalidToken, JwksCache, TokenVerifier, has_second_factor
from slimserve.errors import ServiceUnavailable
from tests.auth_support import AUDIENCE, LoopbackIssuer


@pytest.fixture
def issuer():
    """A fresh loopback issuer per test (so fetch counts start at zero)."""
    idp = LoopbackIssuer()
    yield idp
    idp.close()


@pytest.fixture
def verifier(issuer):
    """A verifier that trusts `issuer`."""
    return TokenVerifier(issuer.url, AUDIENCE, JwksCache(issuer.url + "/jwks"), ["RS256", "ES256"])


def test_a_valid_token_maps_to_subject_models_and_mfa(issuer, verifier):
    """sub, the models claim and amr become the principal."""
    principal = verifier.verify(issuer.token(models=["heart"], amr=["pwd", "otp"]))
    assert principal.id == "sub:clinician-42" and principal.allows("heart") and not principal.allows("aids")
    assert principal.mfa


@pytest.mark.parametrize("claims", [{"aud": "someone-else"}, {"iss": "https://evil.example"}, {"sub": None}])
def test_wrong_audience_issuer_or_missing_subject_is_refused(issuer, verifier, claims):
    """A token minted for another service or by another issuer does not work here."""
    token = issuer.token(**{k: v for k, v in claims.items() if v is not None})
    if claims.get("sub", "x") is None:
        payload = jwt.decode(token, options={"verify_signature": False})
        payload.pop("sub")
        token = jwt.encode(payload, issuer.key, algorithm="RS256", headers={"kid": issuer.kid})
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_expired_token_is_refused_beyond_the_leeway(issuer, verifier):
    """exp in the past (more than 30 s) fails."""
    with pytest.raises(InvalidToken):
        verifier.verify(issuer.token(expires_in=-60))


@pytest.mark.parametrize("alg", ["HS256", "none"])
def test_symmetric_and_unsigned_tokens_are_refused(issuer, verifier, alg):
    """Algorithm confusion: an HMAC token keyed with the public key, or alg=none, never verifies."""
    public_value = issuer.jwks()["keys"][0]["n"].encode()
    payload = jwt.decode(issuer.token(), options={"verify_signature": False})
    token = jwt.encode(payload, public_value if alg == "HS256" else None, algorithm=alg, headers={"kid": issuer.kid})
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_symmetric_algorithms_cannot_be_configured(issuer):
    """The allowlist refuses HS* and none at start-up."""
    with pytest.raises(ValueError):
        TokenVerifier(issuer.url, AUDIENCE, JwksCache(issuer.url), ["RS256", "HS256"])


def test_keys_are_cached_and_unknown_kids_refetch_at_most_every_30s(issuer, verifier):
    """One JWKS fetch serves many tokens; forged kids cannot make us hammer the issuer."""
    for _ in range(5):
        verifier.verify(issuer.token())
    assert issuer.fetches == 1
    stranger = jwt.encode({"sub": "x"}, issuer.key, algorithm="RS256", headers={"kid": "unknown"})
    for _ in range(5):
        with pytest.raises(InvalidToken):
            verifier.verify(stranger)
    assert issuer.fetches == 1  # the first fetch was under 30 s ago


def test_a_rotated_key_is_picked_up(issuer, verifier):
    """A token signed with a new kid makes the cache refetch once the minimum interval passed."""
    verifier.verify(issuer.token())
    verifier.jwks.fetched -= 31  # as if 31 s had passed
    issuer.kid = "test-key-2"
    verifier.verify(issuer.token())
    assert issuer.fetches == 2


def test_unreachable_issuer_is_503_not_401(issuer):
    """Without any keys we cannot judge a token: the caller is told to retry, not that it is invalid."""
    cache = JwksCache(issuer.url + "/jwks", timeout=1)
    issuer.close()
    with pytest.raises(ServiceUnavailable):
        cache.key("test-key-1")


@pytest.mark.parametrize(("amr", "mfa"), [(["mfa"], True), (["pwd", "otp"], True), (["hwk", "pin"], True),
                                          (["pwd"], False), ([], False), ("mfa", False), (None, False),
                                          (["pwd", "pwd"], False)])
def test_second_factor_from_amr(amr, mfa):
    """RFC 8176: `mfa`, or two distinct methods."""
    assert has_second_factor(amr) is mfa



def test_a_verified_token_is_cached_but_never_past_its_expiry(issuer, verifier, monkeypatch):
    """The second use of a token skips the signature check; once expired it is checked again (and refused)."""
    verifier.leeway = 0
    token = issuer.token(expires_in=2)
    verifier.verify(token)
    calls = []
    original = verifier._verify
    monkeypatch.setattr(verifier, "_verify", lambda t: calls.append(t) or original(t))
    verifier.verify(token)
    assert calls == []
    time.sleep(2.2)
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    assert len(calls) == 1
