#!/usr/bin/env bash
# The one test command: installs what the tests need (Debian packages, npm packages), builds, and
# runs every test. README and .ci/run both call this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm test
