"""Deploy one commit to Render, smoke test the public URL, and roll back when the smoke test fails.

API mode (RENDER_API_KEY + RENDER_SERVICE_ID): record the live deploy, trigger a deploy of --commit (or of
--image-url, an image pinned by digest, for an image-backed service), poll it until live or failed (transient
API errors are retried and polling goes on), cancel it if its state is still not final at the deadline and
read what it became, smoke test it whenever it went live, and on a failed smoke test roll back to the
recorded deploy.
Hook mode (RENDER_DEPLOY_HOOK_URL only): POST the hook, then smoke test; nothing can be rolled back.
Secrets come from the environment only (never argv, which shows up in process lists) and are redacted
from everything printed. Exit codes: 0 live and verified, 1 deploy failed, timed out or was canceled (the
previous deploy is still live), 2 bad usage, 3 smoke test failed and the previous deploy was restored,
4 a deploy may be live unverified or failed the smoke test and nothing was restored (rollback refused or
failed, nothing to roll back to, or its state could not be read): act by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import render_api
import smoke

EXIT_OK, EXIT_DEPLOY_FAILED, EXIT_USAGE, EXIT_ROLLED_BACK, EXIT_NOT_RESTORED = 0, 1, 2, 3, 4
# How far the runner's clock may be ahead of Render's when asking for deploys created after the trigger.
CLOCK_SKEW_S = 120.0


class Report:
    """Collects the outcome for stdout and the GitHub job summary ($GITHUB_STEP_SUMMARY)."""

    def __init__(self, redact: render_api.Redactor, commit: str) -> None:
        self.redact = redact
        self.commit = commit
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        """Print one progress line, secrets redacted."""
        print(self.redact(message), flush=True)

    def add(self, message: str) -> None:
        """Log a line and keep it for the summary."""
        self.log(message)
        self.lines.append(self.redact(message))

    def finish(self, title: str, code: int) -> int:
        """Write the summary (when GitHub gave us a file for it) and return the exit code."""
        self.log(f"== {title} ==")
        path = os.environ.get("GITHUB_STEP_SUMMARY")
        if path:
            body = "\n".join(f"- {line}" for line in self.lines)
            with open(path, "a", encoding="utf-8") as summary:
                summary.write(self.redact(f"## Render deploy of `{self.commit[:12]}`: {title}\n\n{body}\n\n"))
        return code


def _smoke(args: argparse.Namespace, url: str, report: Report, wait: float) -> str | None:
    """Run the smoke test; return None when it passed, else the reason."""
    try:
        smoke.run(url, args.commit, args.sample, wait, args.smoke_interval, args.request_timeout, report.log)
    except smoke.SmokeFailure as failure:
        return str(failure)
    return None


def _settle(client: render_api.RenderClient, deploy_id: str, status: str | None, args: argparse.Namespace,
            report: Report) -> str | None:
    """Cancel a deploy whose outcome is not known by the deadline, then read what it really became.

    The cancel can lose a race with go-live, and its reply is not proof either way, so the deploy's
    state is read again afterwards. Returns that state, or None when it still cannot be read.
    """
    report.add(f"Deploy {deploy_id} still {status or 'in an unknown state'} after {args.deploy_timeout:.0f}s: "
               "canceling it so it cannot go live unverified.")
    try:
        client.cancel(deploy_id)
    except render_api.RenderError as error:
        report.add(f"Cancel of {deploy_id} answered {error}; checking what the deploy became.")
    final = client.wait(deploy_id, args.verify_timeout, args.poll_interval)
    return final.get("status") if final else None


def _roll_back(client: render_api.RenderClient, previous: dict, started: str, args: argparse.Namespace,
               report: Report) -> int:
    """Restore the deploy that was live before; exit 3 when it is live again, else 4 with what to do."""
    try:
        rollback = client.rollback(previous["id"])
    except render_api.RenderError as error:
        # A 5xx is not retried (a second POST could start a second rollback), so it is reported the same way.
        verb = "did not confirm" if error.transient else "refused"
        report.add(f"Render {verb} the rollback to deploy {previous['id']}: {error}. Deploy {started} of "
                   f"{args.commit} is LIVE and FAILED the smoke test: restore a good deploy by hand "
                   "(Dashboard > Events > Rollback, or deploy an earlier commit).")
        return report.finish("smoke test failed, rollback refused", EXIT_NOT_RESTORED)
    report.add(f"Rolling back to deploy {previous['id']} with deploy {rollback['id']}")
    restored = client.wait(rollback["id"], args.deploy_timeout, args.poll_interval) or {}
    if restored.get("status") != render_api.LIVE:
        report.add(f"Rollback deploy ended {restored.get('status') or 'in an unknown state'}: "
                   "restore it by hand in the dashboard.")
        return report.finish("smoke test failed, rollback failed", EXIT_NOT_RESTORED)
    report.add(f"Rolled back: deploy {rollback['id']} (the code of {previous['id']}) is live.")
    return report.finish("smoke test failed, rolled back", EXIT_ROLLED_BACK)


def deploy_with_api(args: argparse.Namespace, key: str, report: Report) -> int:
    """The API path: trigger, wait, smoke test, roll back on failure."""
    client = render_api.RenderClient(args.api_base, key, args.service_id, report.redact,
                                     timeout=args.request_timeout, max_retries=args.max_retries,
                                     max_wait=args.max_rate_limit_wait, log=report.log)
    previous = client.live_deploy()
    if previous:
        report.add(f"Live before: deploy {previous['id']} (commit {(previous.get('commit') or {}).get('id')})")
    else:
        report.add("No live deploy before this one, so there is nothing to roll back to.")
    body = {"imageUrl": args.image_url} if args.image_url else {"commitId": args.commit}
    # Deploys already listed now are never taken for the new one, even with the runner's clock off a little.
    since = time.time() - CLOCK_SKEW_S
    known = {deploy["id"] for deploy in client.deploys_since(since)}
    started = client.trigger(body, since, known)["id"]
    report.add(f"Triggered deploy {started} of {'image ' + args.image_url if args.image_url else 'commit'} "
               f"{'' if args.image_url else args.commit}".rstrip())
    try:
        return _verify(client, previous, started, args, report)
    except render_api.RenderError as error:
        report.add(f"Render API error after triggering deploy {started}: {error}. It may go live unverified: "
                   "check the service's Events page.")
        return report.finish("deploy state unknown", EXIT_NOT_RESTORED)


def _verify(client: render_api.RenderClient, previous: dict | None, started: str, args: argparse.Namespace,
            report: Report) -> int:
    """Wait for a triggered deploy, then smoke test it if it went live and roll back when that fails."""
    final = client.wait(started, args.deploy_timeout, args.poll_interval)
    status = final.get("status") if final else None
    if status != render_api.LIVE and status not in render_api.FAILED:
        status = _settle(client, started, status, args, report)
        if status == render_api.LIVE:
            report.add(f"Deploy {started} went live as it was canceled: smoke testing it.")
        elif status is None or status not in render_api.FAILED:
            report.add(f"The state of deploy {started} cannot be read ({status or 'no answer'}); it may go live "
                       "unverified: check the service's Events page.")
            return report.finish("deploy state unknown", EXIT_NOT_RESTORED)
    if status != render_api.LIVE:
        report.add(f"Deploy ended {status}.")
        report.add("Render keeps the previous deploy live when a new one does not go live; nothing to roll back.")
        return report.finish(f"deploy {status}", EXIT_DEPLOY_FAILED)
    url = args.service_url or client.service_url()
    if not url:
        report.add("No public URL: set RENDER_SERVICE_URL (serviceDetails.url was empty).")
        return report.finish("not verified", EXIT_NOT_RESTORED)
    failure = _smoke(args, url, report, args.smoke_timeout)
    if failure is None:
        report.add(f"Deploy {started} is live at {url} and passed the smoke test.")
        return report.finish("live", EXIT_OK)
    report.add(f"Smoke test of {url} failed: {failure}")
    if not previous:
        return report.finish("smoke test failed, nothing to roll back to", EXIT_NOT_RESTORED)
    return _roll_back(client, previous, started, args, report)


def deploy_with_hook(args: argparse.Namespace, hook_url: str, report: Report) -> int:
    """The deploy-hook path: POST the hook, then smoke test (no status polling, no rollback)."""
    if not args.service_url:
        report.add("Hook mode needs RENDER_SERVICE_URL: without an API key the URL cannot be looked up.")
        return report.finish("bad usage", EXIT_USAGE)
    if args.image_url:  # an image-backed service's hook deploys the tag or digest given as imgURL
        hook_url += ("&" if "?" in hook_url else "?") + urllib.parse.urlencode({"imgURL": args.image_url})
    request = urllib.request.Request(hook_url, data=b"", method="POST", headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=args.request_timeout) as response:
            reply = json.loads(response.read() or b"{}")
    except (urllib.error.URLError, TimeoutError, ConnectionError, ValueError) as error:
        report.add(f"Deploy hook failed: {error}")
        return report.finish("deploy hook failed", EXIT_DEPLOY_FAILED)
    report.add(f"Deploy hook started deploy {(reply.get('deploy') or {}).get('id')} of the branch head "
               f"(a hook cannot choose the commit; /version must show {args.commit}).")
    # Without the API there is no status to poll: the build time is spent waiting for /version to change.
    failure = _smoke(args, args.service_url, report, args.deploy_timeout + args.smoke_timeout)
    if failure is None:
        report.add(f"{args.service_url} serves {args.commit} and passed the smoke test.")
        return report.finish("live", EXIT_OK)
    report.add(f"Smoke test failed: {failure}")
    report.add("No rollback without RENDER_API_KEY: roll back from the service's Events page in the dashboard.")
    return report.finish("smoke test failed, not rolled back", EXIT_NOT_RESTORED)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; defaults suit a real deploy, tests shrink the timings."""
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default=env("DEPLOY_COMMIT") or env("GITHUB_SHA"), help="git SHA to deploy")
    parser.add_argument("--image-url", default=env("DEPLOY_IMAGE_URL") or None,
                        help="image-backed service: deploy this image (by digest) instead of a commit")
    parser.add_argument("--service-id", default=env("RENDER_SERVICE_ID"))
    parser.add_argument("--service-url", default=env("RENDER_SERVICE_URL") or None, help="public base URL")
    parser.add_argument("--api-base", default=env("RENDER_API_BASE") or "https://api.render.com")
    parser.add_argument("--sample", type=Path, default=smoke.DEFAULT_SAMPLE)
    parser.add_argument("--deploy-timeout", type=float, default=1200.0, help="seconds for build + start")
    parser.add_argument("--poll-interval", type=float, default=10.0)
    parser.add_argument("--verify-timeout", type=float, default=180.0,
                        help="seconds to learn a deploy's final state after canceling it")
    parser.add_argument("--smoke-timeout", type=float, default=300.0, help="seconds for the URL to serve it")
    parser.add_argument("--smoke-interval", type=float, default=5.0)
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--max-retries", type=int, default=5, help="retries after 429 / read errors")
    parser.add_argument("--max-rate-limit-wait", type=float, default=60.0, help="cap on one retry wait")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one deploy; see the module docstring for exit codes."""
    args = parse_args(argv)
    key, hook = os.environ.get("RENDER_API_KEY", ""), os.environ.get("RENDER_DEPLOY_HOOK_URL", "")
    hook_key = urllib.parse.parse_qs(urllib.parse.urlsplit(hook).query).get("key", [""])[0]
    report = Report(render_api.Redactor([key, hook, hook_key]), args.commit or "unknown")
    if not args.commit:
        report.add("No commit: pass --commit or set DEPLOY_COMMIT / GITHUB_SHA.")
        return report.finish("bad usage", EXIT_USAGE)
    try:
        if key and args.service_id:
            return deploy_with_api(args, key, report)
        if hook:
            return deploy_with_hook(args, hook, report)
    except render_api.RenderError as error:
        report.add(f"Render API error: {error}")
        return report.finish("Render API error", EXIT_DEPLOY_FAILED)
    report.add("Set RENDER_API_KEY and RENDER_SERVICE_ID (or RENDER_DEPLOY_HOOK_URL and RENDER_SERVICE_URL).")
    return report.finish("bad usage", EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())
