#!/usr/bin/env bash
# npm start: installs what it needs, then runs the auth service with a development OpenID
# provider (packages/auth/examples/quickstart.ts), state in .state/quickstart. It prints what to
# do next; run it again later and it picks up the same state.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
# exec: Ctrl-C and `kill PID` reach node directly, which stops the service cleanly.
exec node --import tsx packages/auth/examples/quickstart.ts "$@"
