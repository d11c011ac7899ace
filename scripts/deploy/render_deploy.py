"""Deploy one commit to Render, smoke test the public URL, and roll back when the smoke test fails.

API mode (RENDER_API_KEY + RENDER_SERVICE_ID): record the live deploy, trigger a deploy of --commit, poll it
until live or failed, smoke test, and on a failed smoke test roll back to the recorded deploy.
Hook mode (RENDER_DEPLOY_HOOK_URL only): POST the hook, then smoke test; nothing can be rolled back.
Secrets come from the environment only (never argv, which shows up in process lists) and are redacted
from everything printed. Exit codes: 0 live and verified, 1 deploy failed or timed out, 2 bad usage,
3 smoke test failed and the previous deploy was restored, 4 smoke test failed and nothing was restored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import render_api
import smoke

EXIT_OK, EXIT_DEPLOY_FAILED, EXIT_USAGE, EXIT_ROLLED_BACK, EXIT_NOT_RESTORED = 0, 1, 2, 3, 4


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
    started = client.trigger(args.commit)
    report.add(f"Triggered deploy {started['id']} of commit {args.commit}")
    final = client.wait(started["id"], args.deploy_timeout, args.poll_interval)
    status = final.get("status")
    if status != render_api.LIVE:
        if status not in render_api.FAILED:
            client.cancel(started["id"])
            report.add(f"Deploy still {status} after {args.deploy_timeout:.0f}s: canceled it so it cannot "
                       "go live unverified.")
        else:
            report.add(f"Deploy ended {status}.")
        report.add("Render keeps the previous deploy live when a new one does not go live; nothing to roll back.")
        return report.finish(f"deploy {status}", EXIT_DEPLOY_FAILED)
    url = args.service_url or client.service_url()
    if not url:
        report.add("No public URL: set RENDER_SERVICE_URL (serviceDetails.url was empty).")
        return report.finish("not verified", EXIT_NOT_RESTORED)
    failure = _smoke(args, url, report, args.smoke_timeout)
    if failure is None:
        report.add(f"Deploy {started['id']} is live at {url} and passed the smoke test.")
        return report.finish("live", EXIT_OK)
    report.add(f"Smoke test of {url} failed: {failure}")
    if not previous:
        return report.finish("smoke test failed, nothing to roll back to", EXIT_NOT_RESTORED)
    rollback = client.rollback(previous["id"])
    report.add(f"Rolling back to deploy {previous['id']} with deploy {rollback['id']}")
    restored = client.wait(rollback["id"], args.deploy_timeout, args.poll_interval)
    if restored.get("status") != render_api.LIVE:
        report.add(f"Rollback deploy ended {restored.get('status')}: restore it by hand in the dashboard.")
        return report.finish("smoke test failed, rollback failed", EXIT_NOT_RESTORED)
    report.add(f"Rolled back: deploy {rollback['id']} (the code of {previous['id']}) is live.")
    return report.finish("smoke test failed, rolled back", EXIT_ROLLED_BACK)


def deploy_with_hook(args: argparse.Namespace, hook_url: str, report: Report) -> int:
    """The deploy-hook path: POST the hook, then smoke test (no status polling, no rollback)."""
    if not args.service_url:
        report.add("Hook mode needs RENDER_SERVICE_URL: without an API key the URL cannot be looked up.")
        return report.finish("bad usage", EXIT_USAGE)
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
    parser.add_argument("--service-id", default=env("RENDER_SERVICE_ID"))
    parser.add_argument("--service-url", default=env("RENDER_SERVICE_URL") or None, help="public base URL")
    parser.add_argument("--api-base", default=env("RENDER_API_BASE") or "https://api.render.com")
    parser.add_argument("--sample", type=Path, default=smoke.DEFAULT_SAMPLE)
    parser.add_argument("--deploy-timeout", type=float, default=1200.0, help="seconds for build + start")
    parser.add_argument("--poll-interval", type=float, default=10.0)
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
