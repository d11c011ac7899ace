"""Deploy gate: only the current head of main, with a successful CI run for exactly that commit, deploys.

Run by .github/workflows/deploy.yml before anything reaches Render. It refuses a re-run of an old CI or Deploy
run (its commit is no longer the head of main: deploying it would put older code over newer production) and
a manual dispatch whose commit CI has not passed. Stdlib only. Writes `ci_run=<id>` to $GITHUB_OUTPUT: the CI
run whose pushed image the deploy uses. Exit 0 deploy, 1 refused, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class Refused(Exception):
    """This commit must not be deployed; the message says why."""


def api(base: str, token: str, path: str) -> Any:
    """GET one GitHub REST API path and parse the JSON answer."""
    request = urllib.request.Request(f"{base.rstrip('/')}{path}", headers={
        "Accept": "application/vnd.github+json", "Authorization": f"Bearer {token}",
        "X-GitHub-Api-Version": "2022-11-28"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, TimeoutError, ConnectionError, ValueError) as error:
        # Fail closed: a gate that cannot ask GitHub does not let the deploy through.
        raise Refused(f"GitHub API {path}: {getattr(error, 'reason', error)}") from None


def successful_ci_run(args: argparse.Namespace, get: Any) -> dict[str, Any]:
    """The successful CI run (on a push to the branch) for exactly args.commit, or Refused."""
    if args.ci_run:
        run = get(f"/repos/{args.repo}/actions/runs/{args.ci_run}")
        # `path` may carry an `@ref` suffix; the file is what identifies the workflow.
        seen = {**run, "path": str(run.get("path", "")).split("@")[0]}
        problems = [f"{key} is {seen.get(key)!r}, not {want!r}" for key, want in (
            ("head_sha", args.commit), ("conclusion", "success"), ("event", "push"), ("head_branch", args.branch),
            ("path", f".github/workflows/{args.ci_workflow}")) if seen.get(key) != want]
        if problems:
            raise Refused(f"CI run {args.ci_run} does not vouch for {args.commit}: {'; '.join(problems)}")
        return run
    query = urllib.parse.urlencode({"head_sha": args.commit, "event": "push", "branch": args.branch,
                                    "status": "success", "per_page": 10})
    runs = get(f"/repos/{args.repo}/actions/workflows/{args.ci_workflow}/runs?{query}").get("workflow_runs", [])
    runs = [run for run in runs if run.get("head_sha") == args.commit and run.get("conclusion") == "success"]
    if not runs:
        raise Refused(f"no successful CI run ({args.ci_workflow}, push to {args.branch}) for {args.commit}")
    return runs[0]


def check(args: argparse.Namespace, get: Any) -> int:
    """Refuse unless args.commit is the branch head and CI passed for it; return the CI run id."""
    head = get(f"/repos/{args.repo}/commits/{urllib.parse.quote(args.branch)}").get("sha")
    if head != args.commit:
        raise Refused(f"{args.commit} is not the current head of {args.branch} ({head}): an old run or a manual "
                      "dispatch of an old commit would put older code over newer production")
    return int(successful_ci_run(args, get)["id"])


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default=env("DEPLOY_COMMIT"), help="the commit about to be deployed")
    parser.add_argument("--repo", default=env("GITHUB_REPOSITORY"), help="owner/name")
    parser.add_argument("--branch", default="main")
    parser.add_argument("--ci-workflow", default="ci.yml")
    parser.add_argument("--ci-run", default=env("CI_RUN_ID") or None, help="the CI run that triggered this")
    args = parser.parse_args(argv)
    token = env("GITHUB_TOKEN", "")
    if not (args.commit and args.repo and token):
        print("::error::deploy gate needs --commit, --repo and GITHUB_TOKEN", file=sys.stderr)
        return 2
    base = env("GITHUB_API_URL") or "https://api.github.com"
    try:
        run_id = check(args, lambda path: api(base, token, path))
    except Refused as refused:
        print(f"::error::Deploy refused: {refused}", file=sys.stderr)
        return 1
    print(f"Deploy allowed: {args.commit} is the head of {args.branch} and CI run {run_id} passed for it")
    output = env("GITHUB_OUTPUT")
    if output:
        with open(output, "a", encoding="utf-8") as handle:
            handle.write(f"ci_run={run_id}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
