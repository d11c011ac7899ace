"""render_deploy.py on the failure paths that once left a deploy live unchecked: each ends checked."""

from __future__ import annotations

import pytest

from tests.deploy.fake_render import IMAGE_URL, NEW_COMMIT, OLD_COMMIT, OLD_DEPLOY, SERVICE_ID, body_json, query

DEPLOYS = rf"/v1/services/{SERVICE_ID}/deploys"
CANCEL = rf"{DEPLOYS}/[\w-]+/cancel"
ROLLBACK = rf"/v1/services/{SERVICE_ID}/rollback"
FOREVER = ("build_in_progress",) * 10_000
VERIFY = ("--verify-timeout", "3")


@pytest.mark.parametrize("how", ["503", "drop"])
def test_failed_polls_are_retried_and_the_deploy_is_still_smoke_tested(fake, deploy, how):
    # More failures in a row than one request retries: polling itself has to carry on.
    server = fake(poll_failures=8, poll_failure=how)
    run = deploy(server, "--max-retries", "2")
    assert run.code == 0, run.everything
    assert "retrying" in run.stdout and "still polling" in run.stdout
    assert server.calls("POST", "/predict") and server.live_commit() == NEW_COMMIT


def test_api_down_until_the_deadline_cancels_and_confirms_the_deploy_never_went_live(fake, deploy):
    server = fake(api_down_until_cancel=True, new_deploy_statuses=FOREVER)
    run = deploy(server, *VERIFY, deploy_timeout=0.3)
    assert run.code == 1, run.everything
    assert server.calls("POST", CANCEL)
    assert "in an unknown state" in run.summary and "Deploy ended canceled" in run.summary
    assert server.live_commit() == OLD_COMMIT and not server.calls("POST", "/predict")


def test_a_deploy_that_went_live_while_the_api_was_down_is_smoke_tested(fake, deploy):
    server = fake(api_down_until_cancel=True)  # it goes live during the outage, so the cancel is refused
    run = deploy(server, *VERIFY, deploy_timeout=0.3)
    assert run.code == 0, run.everything
    assert "cannot be canceled" in run.summary and "went live as it was canceled" in run.summary
    assert server.calls("POST", "/predict")


def test_a_bad_deploy_that_went_live_while_the_api_was_down_is_rolled_back(fake, deploy):
    server = fake(api_down_until_cancel=True, app="predict_500")
    run = deploy(server, *VERIFY, deploy_timeout=0.3)
    assert run.code == 3, run.everything
    assert server.live_commit() == OLD_COMMIT


@pytest.mark.parametrize(("app", "code"), [("healthy", 0), ("predict_500", 3)])
def test_a_cancel_that_races_go_live_is_followed_by_a_smoke_test(fake, deploy, app, code):
    server = fake(new_deploy_statuses=FOREVER, cancel_races_go_live=True, app=app)
    run = deploy(server, *VERIFY, deploy_timeout=0.3)
    assert run.code == code, run.everything
    assert "went live as it was canceled" in run.summary
    assert server.calls("POST", "/predict")
    assert bool(server.calls("POST", ROLLBACK)) is (code == 3)


def test_a_refused_rollback_is_exit_4_and_says_the_failed_deploy_is_live(fake, deploy):
    server = fake(app="predict_500", rollback_refused=400)
    run = deploy(server)
    assert run.code == 4, run.everything
    assert "refused the rollback" in run.summary and "LIVE and FAILED the smoke test" in run.summary
    assert "no longer available" in run.summary
    assert server.live_commit() == NEW_COMMIT


def test_the_previous_live_deploy_is_found_by_status_beyond_the_newest_page(fake, deploy):
    server = fake(app="predict_500", older_failed_deploys=25)
    run = deploy(server)
    assert run.code == 3, run.everything
    assert query(server.calls("GET", DEPLOYS)[0].path) == {"status": ["live"], "limit": ["1"]}
    (rollback,) = server.calls("POST", ROLLBACK)
    assert body_json(rollback) == {"deployId": OLD_DEPLOY}


# An hour old: createdAfter leaves it out. 30 s old: within the clock-skew margin, so only the list of deploys
# seen before the trigger tells it apart.
@pytest.mark.parametrize("age_s", [3600, 30])
def test_a_202_is_matched_to_the_new_deploy_not_an_older_one_of_the_same_commit(fake, deploy, age_s):
    server = fake(trigger_queued_without_body=True, old_deploy_of_new_commit=age_s, queued_unlisted_for=2)
    run = deploy(server)
    assert run.code == 0, run.everything
    new = server.deploys[0]
    assert new["id"] != "dep-older-same" and new["status"] == "live"
    assert f"Triggered deploy {new['id']}" in run.summary
    listings = [query(r.path) for r in server.calls("GET", DEPLOYS)]
    assert all("createdAfter" in q for q in listings[1:])


def test_a_trigger_that_fails_after_starting_follows_the_started_deploy(fake, deploy):
    server = fake(trigger_fails_after_start=True)
    run = deploy(server)
    assert run.code == 0, run.everything
    assert len(server.calls("POST", DEPLOYS)) == 1, "a failed POST /deploys is never repeated"
    assert server.live_commit() == NEW_COMMIT and server.calls("POST", "/predict")


def test_an_image_backed_service_deploys_the_tested_image_by_digest(fake, deploy):
    server = fake()
    run = deploy(server, "--image-url", IMAGE_URL)
    assert run.code == 0, run.everything
    (trigger,) = server.calls("POST", DEPLOYS)
    assert body_json(trigger) == {"imageUrl": IMAGE_URL}
    assert IMAGE_URL in run.summary


def test_the_deploy_hook_of_an_image_backed_service_is_given_the_image(fake, deploy):
    server = fake()
    run = deploy(server, "--image-url", IMAGE_URL, mode="hook")
    assert run.code == 0, run.everything
    (hook,) = server.calls("POST", rf"/deploy/{SERVICE_ID}")
    assert query(hook.path)["imgURL"] == [IMAGE_URL]


def test_a_rollback_answered_with_a_5xx_is_exit_4_and_never_repeated(fake, deploy):
    server = fake(app="predict_500", rollback_refused=503)
    run = deploy(server)
    assert run.code == 4, run.everything
    assert "did not confirm the rollback" in run.summary
    assert len(server.calls("POST", ROLLBACK)) == 1, "a second POST could start a second rollback"
