"""Pure helpers of scripts/deploy/render_api.py: 429 back-off and secret redaction."""

from __future__ import annotations

import email.utils

import pytest

from scripts.deploy.render_api import Redactor, backoff, iso_utc, retry_delay

NOW = 1_800_000_000.0


def test_retry_after_in_seconds_is_used_as_is():
    assert retry_delay({"Retry-After": "7"}, attempt=0, now=NOW) == 7


def test_retry_after_as_an_http_date_counts_down_from_now():
    when = email.utils.formatdate(NOW + 12, usegmt=True)
    assert retry_delay({"Retry-After": when}, attempt=0, now=NOW) == pytest.approx(12)


def test_ratelimit_reset_as_epoch_seconds_counts_down_from_now():
    assert retry_delay({"Ratelimit-Reset": str(int(NOW) + 30)}, attempt=0, now=NOW) == 30


def test_ratelimit_reset_as_a_small_number_is_seconds_to_wait():
    # Render's rate-limit page documents epoch seconds but shows `Ratelimit-Reset: 45` in its example.
    assert retry_delay({"Ratelimit-Reset": "45"}, attempt=0, now=NOW) == 45


def test_retry_after_wins_over_ratelimit_reset():
    assert retry_delay({"Retry-After": "3", "Ratelimit-Reset": "45"}, attempt=0, now=NOW) == 3


def test_without_headers_the_wait_doubles_per_attempt():
    assert [retry_delay({}, attempt=a, now=NOW) for a in range(4)] == [1, 2, 4, 8]


def test_a_reset_time_in_the_past_means_no_wait():
    assert retry_delay({"Ratelimit-Reset": str(int(NOW) - 5)}, attempt=0, now=NOW) == 0


def test_redactor_hides_every_secret_including_one_inside_another():
    redact = Redactor(["https://api.render.com/deploy/srv-1?key=abcd1234", "abcd1234", "rnd_key_5678"])
    text = "hook https://api.render.com/deploy/srv-1?key=abcd1234 key abcd1234 auth Bearer rnd_key_5678"
    assert redact(text) == "hook *** key *** auth Bearer ***"


def test_redactor_ignores_empty_secrets():
    assert Redactor(["", None])("nothing to hide") == "nothing to hide"


def test_backoff_is_jittered_between_half_and_all_of_the_capped_exponential():
    assert backoff(3, cap=60, rng=lambda: 0.0) == 4 and backoff(3, cap=60, rng=lambda: 1.0) == 8
    assert backoff(10, cap=5, rng=lambda: 1.0) == 5


def test_backoff_differs_between_calls_so_clients_do_not_retry_in_lockstep():
    assert len({backoff(4, cap=60) for _ in range(20)}) > 1


def test_created_after_is_iso_8601_utc():
    assert iso_utc(NOW) == "2027-01-15T08:00:00Z"
