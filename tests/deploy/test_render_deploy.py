"""render_deploy.py against a real loopback HTTP fake of Render: one scenario per test."""

from __future__ import annotations

from tests.deploy.fake_render import NEW_COMMIT, OLD_COMMIT, OLD_DEPLOY, SERVICE_ID, body_json

DEPLOYS = rf"/v1/services/{SERVICE_ID}/deploys"
ROLLBACK = rf"/v1/services/{SERVICE_ID}/rollback"


def test_successful_deploy_triggers_the_pushed_commit_and_exits_zero(fake, deploy):
    server = fake()
    run = deploy(server)
    assert run.code == 0, run.everything
    (trigger,) = server.calls("POST", DEPLOYS)
    assert body_json(trigger) == {"commitId": NEW_COMMIT}
    assert server.live_commit() == NEW_COMMIT
    assert "passed the smoke test" in run.summary


def test_a_queued_trigger_without_a_body_is_found_by_its_commit(fake, deploy):
    server = fake(trigger_queued_without_body=True)
    run = deploy(server)
    assert run.code == 0, run.everything
    assert f"Triggered deploy {server.deploys[0]['id']} of commit {NEW_COMMIT}" in run.summary


def test_live_deploy_is_recorded_before_triggering(fake, deploy):
    server = fake()
    deploy(server)
    methods = [(r.method, r.path.split("?")[0]) for r in server.requests]
    assert methods.index(("GET", f"/v1/services/{SERVICE_ID}/deploys")) < methods.index(
        ("POST", f"/v1/services/{SERVICE_ID}/deploys"))
    assert server.calls("GET", DEPLOYS)[0].path.endswith("?status=live&limit=1")


def test_smoke_test_posts_the_sample_xray_to_predict(fake, deploy):
    server = fake()
    deploy(server)
    (predict,) = server.calls("POST", "/predict")
    assert predict.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert b'name="file"; filename="sample_xray.jpeg"' in predict.body


def test_api_key_is_sent_as_bearer_but_never_printed(fake, deploy):
    server = fake()
    run = deploy(server)
    api_calls = [r for r in server.requests if r.path.startswith("/v1/")]
    assert api_calls and all(r.headers["Authorization"] == f"Bearer {server.scenario.api_key}" for r in api_calls)
    assert server.scenario.api_key not in run.everything


def test_app_requests_do_not_carry_the_api_key(fake, deploy):
    server = fake()
    deploy(server)
    app_calls = [r for r in server.requests if not r.path.startswith("/v1/")]
    assert app_calls and not any("Authorization" in r.headers for r in app_calls)


def test_error_text_that_echoes_the_key_is_redacted(fake, deploy):
    server = fake(trigger_error_echoes_key=True)
    run = deploy(server)
    assert run.code == 1
    assert "HTTP 401" in run.summary and "Bearer ***" in run.summary
    assert server.scenario.api_key not in run.everything


def test_build_failed_exits_nonzero_and_leaves_the_old_deploy_live(fake, deploy):
    server = fake(new_deploy_statuses=("build_in_progress", "build_failed"))
    run = deploy(server)
    assert run.code == 1
    assert "build_failed" in run.summary and "keeps the previous deploy live" in run.summary
    assert not server.calls("POST", ROLLBACK)
    assert server.live_commit() == OLD_COMMIT


def test_update_failed_exits_nonzero_without_rollback(fake, deploy):
    server = fake(new_deploy_statuses=("build_in_progress", "update_in_progress", "update_failed"))
    run = deploy(server)
    assert run.code == 1
    assert "update_failed" in run.summary
    assert not server.calls("POST", ROLLBACK)


def test_rate_limited_trigger_is_retried_after_retry_after(fake, deploy):
    server = fake(rate_limited_triggers=2, retry_after="0")
    run = deploy(server)
    assert run.code == 0, run.everything
    assert len(server.calls("POST", DEPLOYS)) == 3
    assert run.stdout.count("rate limit") == 2


def test_rate_limit_retries_are_bounded(fake, deploy):
    server = fake(rate_limited_triggers=100)
    run = deploy(server, "--max-retries", "3")
    assert run.code == 1
    assert len(server.calls("POST", DEPLOYS)) == 4
    assert "HTTP 429" in run.summary


def test_slow_deploy_times_out_and_is_canceled(fake, deploy):
    server = fake(new_deploy_statuses=("build_in_progress",) * 10_000)
    run = deploy(server, deploy_timeout=0.3)
    assert run.code == 1
    (cancel,) = server.calls("POST", rf"{DEPLOYS}/[\w-]+/cancel")
    assert "canceling it" in run.summary and "Deploy ended canceled" in run.summary
    assert server.live_commit() == OLD_COMMIT and cancel


def test_wrong_commit_on_version_rolls_back_to_the_previous_live_deploy(fake, deploy):
    server = fake(app="wrong_commit")
    run = deploy(server)
    assert run.code == 3, run.everything
    (rollback,) = server.calls("POST", ROLLBACK)
    assert body_json(rollback) == {"deployId": OLD_DEPLOY}
    assert server.live_commit() == OLD_COMMIT
    assert "git_commit" in run.summary and "rolled back" in run.summary


def test_predict_500_rolls_back_and_waits_for_the_rollback_to_go_live(fake, deploy):
    server = fake(app="predict_500")
    run = deploy(server)
    assert run.code == 3, run.everything
    assert "/predict answered 500" in run.summary
    rollback_deploy = server.deploys[0]
    assert rollback_deploy["trigger"] == "rollback" and rollback_deploy["status"] == "live"


def test_failed_rollback_exits_with_not_restored(fake, deploy):
    server = fake(app="predict_500", rollback_statuses=("update_in_progress", "update_failed"))
    run = deploy(server)
    assert run.code == 4
    assert "restore it by hand" in run.summary


def test_smoke_failure_without_a_previous_deploy_cannot_roll_back(fake, deploy):
    server = fake(app="predict_500", has_live_deploy=False)
    run = deploy(server)
    assert run.code == 4
    assert not server.calls("POST", ROLLBACK)
    assert "nothing to roll back to" in run.summary


def test_service_url_is_discovered_from_service_details(fake, deploy):
    server = fake()
    run = deploy(server, service_url=False)
    assert run.code == 0, run.everything
    assert server.calls("GET", rf"/v1/services/{SERVICE_ID}")


def test_deploy_hook_triggers_and_smoke_tests_without_an_api_key(fake, deploy):
    server = fake()
    run = deploy(server, mode="hook")
    assert run.code == 0, run.everything
    (hook,) = server.calls("POST", rf"/deploy/{SERVICE_ID}")
    assert "Authorization" not in hook.headers
    assert not [r for r in server.requests if r.path.startswith("/v1/")]
    assert server.scenario.hook_key not in run.everything and server.hook_url not in run.everything


def test_deploy_hook_smoke_failure_says_rollback_needs_the_api_key(fake, deploy):
    server = fake(app="predict_500")
    run = deploy(server, mode="hook")
    assert run.code == 4
    assert "No rollback without RENDER_API_KEY" in run.summary


def test_deploy_hook_needs_the_service_url(fake, deploy):
    server = fake()
    run = deploy(server, mode="hook", service_url=False)
    assert run.code == 2
    assert not server.requests


def test_missing_credentials_is_a_usage_error(fake, deploy):
    server = fake()
    run = deploy(server, mode="none")
    assert run.code == 2
    assert "Set RENDER_API_KEY" in run.summary
    assert not server.requests
