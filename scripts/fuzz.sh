#!/usr/bin/env bash
# Long-run fuzzing by hand (not CI): npm run fuzz -- --minutes N [--scale K] [--seed S].
# Runs test/fuzz's parser properties with random seeds until N minutes pass, then the HTTP API
# property against a real auth service with a random seed and 20x its CI runs. Each crash is
# printed with the seed (and path) that replays it; exits 1 if any. --expose-gc makes the
# memory bound meaningful.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
node --expose-gc --import tsx test/fuzz/long-run.ts "$@" || status=1
seed=$RANDOM$RANDOM
echo "== HTTP API bodies, FUZZ_SEED=$seed" >&2
FUZZ_SCALE=20 FUZZ_SEED=$seed node --import tsx --test --test-reporter=spec test/fuzz/http-api.test.ts || { status=1; echo "CRASH HTTP API: replay with FUZZ_SEED=$seed FUZZ_SCALE=20 node --import tsx --test test/fuzz/http-api.test.ts"; }
exit $status
