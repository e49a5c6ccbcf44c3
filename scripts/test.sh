#!/usr/bin/env bash
# The test command (npm test): installs what it needs, typechecks the whole repo, then runs
# every test file with node's test runner. Interop tests use the real OpenSSH and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
echo "== typecheck" >&2
npx --no-install tsc -b --pretty false
echo "== tests" >&2
mapfile -t files < <(find packages test -path '*/node_modules' -prune -o -name '*.test.ts' -print | sort)
exec node --import tsx --test --test-concurrency=2 --test-reporter=spec "$@" "${files[@]}"
