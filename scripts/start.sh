#!/usr/bin/env bash
# npm start: installs what it needs, then runs Portcullis. Until the services land it runs the
# cert-core demonstration (a CA issuing and printing a certificate).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
exec node --import tsx packages/cert-core/examples/demo.ts "$@"
