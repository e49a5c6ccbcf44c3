#!/usr/bin/env bash
# Long-run fuzzing by hand (not CI): npm run fuzz -- --minutes N [--scale K] [--seed S].
# Runs test/fuzz's properties with random seeds until N minutes pass; prints each crash with the
# seed and path that replay it; exits 1 if any. --expose-gc makes the memory bound meaningful.
set -euo pipefail
cd "$(dirname "$0")/.."
exec node --expose-gc --import tsx test/fuzz/long-run.ts "$@"
