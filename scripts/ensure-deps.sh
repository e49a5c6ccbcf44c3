#!/usr/bin/env bash
# Installs what the product and its tests need, idempotently: Debian packages, then npm
# dependencies. Safe to run on every start and test run; does nothing when all is present.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests talk to for real (see README "Tests").
DEBIAN_PACKAGES=(openssh-server openssh-client redis-server tmux asciinema chromium shellcheck softhsm2 opensc zsh systemd faketime)

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "portcullis: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "portcullis: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm dependencies: reinstall only when the lock file changed since the last install.
stamp=node_modules/.portcullis-lock-hash
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "portcullis: installing npm dependencies" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" > "$stamp"
fi
