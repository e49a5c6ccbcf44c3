#!/usr/bin/env bash
# npm start: installs what it needs, then runs `portcullis start` (auth, proxy and web on
# loopback) with a development OpenID provider (packages/cli/src/portcullis/quickstart.ts),
# state in .state/quickstart. It prints what to do next; run it again later and it picks up the
# same state.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
# exec: Ctrl-C and `kill PID` reach node directly, which stops the services cleanly.
exec node --import tsx packages/cli/src/portcullis/quickstart.ts "$@"
