#!/usr/bin/env bash
# portcullis-host: enroll this machine as a Portcullis target host, renew its host certificates
# and refresh its KRL, with only bash, coreutils, curl, sed, grep and OpenSSH (hosts without
# Node). It writes the same files as `portcullis host join`, and reads the same
# /etc/portcullis/host.conf, so a host enrolled by one renews with the other.
#
#   portcullis-host.sh join --token T --auth https://auth:3025 --pin 'sha256//…' [--name N]
#       [--names a,b] [--ssh-dir /etc/ssh] [--sshd-config-dir DIR] [--sshd-config FILE]
#       [--exclusive] [--sshd-option 'Keyword value']... [--sshd PATH]
#       [--timers auto|systemd|cron|none] [--root DIR] [--dry-run]
#   portcullis-host.sh renew [--force] [--root DIR]
#   portcullis-host.sh krl-refresh [--root DIR]
#
# auth's answers are JSON; this script needs no JSON tool. It takes a value only when every
# character of it is one that OpenSSH key, certificate and known_hosts lines use (letters,
# digits, space and + / = @ . , : _ * -, plus \n escapes), and fails otherwise; what it takes is
# then checked by ssh-keygen itself. Requests are built only from values checked against strict
# patterns, so nothing a host is called can change their shape. See docs/host-enrollment.md.
set -euo pipefail
umask 022

readonly NAMESPACE=portcullis-host-renewal
readonly DROP_IN_NAME=50-portcullis.conf
readonly STATE_PATH=/etc/portcullis/host.conf
readonly INSTALL_PATH=/usr/local/sbin/portcullis-host
readonly SAFE='A-Za-z0-9 +/=@.,:_*-'
# Exit codes shared with the Node CLI.
readonly E_REFUSED=1 E_USAGE=2 E_AUTH=3 E_UNREACHABLE=4 E_CONFIG=6

CMD=${1:-}
ROOT=/ SSH_DIR=/etc/ssh SSHD_CONFIG_DIR='' SSHD_CONFIG='' SSHD=/usr/sbin/sshd
AUTH_URL='' AUTH_PIN='' TOKEN='' HOST_NAME='' EXCLUSIVE=0 TIMERS=auto DRY_RUN=0 FORCE=0
NAMES=() EXTRA=() CHANGED=() BACKUPS=()

die() { # message [exit code]
  printf 'portcullis-host %s: %s\n' "$CMD" "$1" >&2
  exit "${2:-$E_REFUSED}"
}
say() { printf '%s\n' "$*"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-host.XXXXXX")
STAGED=''
# A failure after files were written puts them back (activate says so itself); the staged
# drop-in and the scratch directory never outlive the run.
cleanup() {
  local rc=$?
  if [ $rc -ne 0 ] && [ ${#BACKUPS[@]} -gt 0 ]; then rollback; fi
  if [ -n "$STAGED" ]; then rm -f "$STAGED"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- checks -------------------------------------------------------------------------------
is_hostname() {
  [[ $1 =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$ || $1 =~ ^[0-9A-Fa-f:.]{2,45}$ ]]
}
check_path() { # value flag
  [[ $1 == /* && ! $1 =~ [[:space:]\"\'\\#] ]] || die "$2 must be an absolute path without spaces, quotes, backslashes or #" $E_USAGE
}
check_url() {
  [[ $1 =~ ^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?$ || $1 =~ ^https://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$ ]] ||
    die "--auth expected https://host:port, got '$1'" $E_USAGE
}
check_pin() {
  [[ -z $1 || $1 =~ ^sha256//[A-Za-z0-9+/]{43}=$ ]] || die "--pin expected sha256// and 44 base64 characters (what auth prints for curl)" $E_USAGE
}

# --- layout (as in packages/cli/src/host/layout.ts) ------------------------------------------
under() { if [ "$ROOT" = / ]; then printf '%s' "$1"; else printf '%s%s' "${ROOT%/}" "$1"; fi; }
set_layout() {
  check_path "$ROOT" --root
  check_path "$SSH_DIR" --ssh-dir
  SSHD_CONFIG_DIR=${SSHD_CONFIG_DIR:-$SSH_DIR/sshd_config.d}
  SSHD_CONFIG=${SSHD_CONFIG:-$SSH_DIR/sshd_config}
  check_path "$SSHD_CONFIG_DIR" --sshd-config-dir
  check_path "$SSHD_CONFIG" --sshd-config
  P_SSH_DIR=$(under "$SSH_DIR")
  P_SSHD_CONFIG=$(under "$SSHD_CONFIG")
  P_DROPIN_DIR=$(under "$SSHD_CONFIG_DIR")
  P_DROPIN=$P_DROPIN_DIR/$DROP_IN_NAME
  P_DATA=$(under "$SSH_DIR/portcullis")
  P_USER_CA=$P_DATA/user_ca.pub
  P_KRL=$P_DATA/revoked_keys.krl
  P_KNOWN_HOSTS=$P_DATA/known_hosts
  P_STATE=$(under "$STATE_PATH")
}

# --- files: every replacement is atomic, every change can be undone ------------------------
owner_root() { if [ "$(id -u)" = 0 ]; then chown 0:0 "$1"; fi; }
put_file() { # path mode source-file
  local path=$1 mode=$2 src=$3 dir tmp
  dir=$(dirname "$path")
  mkdir -p "$dir" # 0755 through the umask
  if [ -f "$path" ] && cmp -s "$src" "$path" && [ "$(stat -c %a "$path")" = "${mode#0}" ]; then return 0; fi
  remember "$path"
  tmp=$(mktemp "$dir/.$(basename "$path").tmp-XXXXXX")
  cat "$src" >"$tmp"
  chmod "$mode" "$tmp"
  owner_root "$tmp"
  sync "$tmp"
  mv -f "$tmp" "$path"
  sync "$dir" 2>/dev/null || true
  CHANGED+=("$path")
}
remember() { # keeps the first state of a file for rollback
  local b
  for b in "${BACKUPS[@]+"${BACKUPS[@]}"}"; do [ "${b%%|*}" = "$1" ] && return 0; done
  if [ -e "$1" ]; then
    cp -p "$1" "$WORK/backup.${#BACKUPS[@]}"
    BACKUPS+=("$1|$WORK/backup.${#BACKUPS[@]}")
  else
    BACKUPS+=("$1|-")
  fi
}
rollback() {
  local i entry path saved tmp
  for ((i = ${#BACKUPS[@]} - 1; i >= 0; i--)); do
    entry=${BACKUPS[$i]} path=${entry%%|*} saved=${entry#*|}
    if [ "$saved" = - ]; then
      rm -f "$path"
    else
      tmp=$(mktemp "$(dirname "$path")/.$(basename "$path").tmp-XXXXXX")
      cp -p "$saved" "$tmp" && sync "$tmp" && mv -f "$tmp" "$path"
    fi
  done
  BACKUPS=() CHANGED=()
}

# --- auth over curl --------------------------------------------------------------------------
BODY=$WORK/body
api() { # method path [json-file]; sets STATUS, body in $BODY
  local args=(-sS --proto '=https' --max-time 30 -o "$BODY" -w '%{http_code}' -X "$1" -H 'accept: application/json')
  # With a pin, the pin is the trust (auth's certificate is self-signed), as AuthClient does.
  if [ -n "$AUTH_PIN" ]; then args+=(--insecure --pinnedpubkey "$AUTH_PIN"); fi
  if [ -n "${3:-}" ]; then args+=(-H 'content-type: application/json' --data-binary "@$3"); fi
  if [ -n "${ETAG:-}" ]; then args+=(-H "if-none-match: $ETAG"); fi
  local err=$WORK/curl.err rc=0
  STATUS=$(curl "${args[@]}" "$AUTH_URL$2" 2>"$err") || rc=$?
  if [ $rc -ne 0 ]; then
    local why
    why=$(tr -d '\000-\037' <"$err")
    if [ $rc -eq 90 ] || [ $rc -eq 60 ] || [ $rc -eq 35 ]; then die "auth at $AUTH_URL failed the TLS check: $why" $E_AUTH; fi
    die "cannot reach auth at $AUTH_URL: $why" $E_UNREACHABLE
  fi
}
# One line from auth's {"error":{"message":"…"}}, for the operator's eyes only.
error_message() {
  local m
  m=$(grep -o -E '"message":"([^"\\]|\\.)*"' "$BODY" | head -n 1 | sed -e 's/^"message":"//' -e 's/"$//' -e 's/\\"/"/g' -e 's/\\n/ /g' -e 's/\\\\/\\/g' | tr -d '\000-\037') || true
  printf '%s' "${m:-HTTP $STATUS}"
}
expect_ok() { # what
  case $STATUS in
    2??) ;;
    401 | 403 | 410 | 423) die "$1: $(error_message)" $E_AUTH ;;
    404) die "$1: $(error_message)" 5 ;;
    *) die "$1: $(error_message)" $E_REFUSED ;;
  esac
}
# json_values KEY: every "KEY":"value" whose value holds only safe characters and \n escapes,
# one per line with the escapes still in. Nothing else is ever taken from a body.
json_values() {
  grep -o -E "\"$1\":\"([$SAFE]|\\\\n)*\"" "$BODY" | sed -e "s/^\"$1\":\"//" -e 's/"$//' || true
}
json_text_in() { # OBJECT KEY OUT-FILE: "OBJECT":{"KEY":"..." (KEY its first field), \n escapes as newlines
  local v
  v=$(grep -o -E "\"$1\":\\{\"$2\":\"([$SAFE]|\\\\n)*\"" "$BODY" | head -n 1 | sed -e "s/^\"$1\":{\"$2\":\"//" -e 's/"$//' || true)
  [ -n "$v" ] || die "auth's answer has no usable \"$1.$2\"" $E_REFUSED
  printf '%s' "$v" | sed 's/\\n/\n/g' >"$3"
}
json_text() { # KEY OUT-FILE: the first such value with its \n escapes as newlines
  local v
  v=$(json_values "$1" | head -n 1)
  [ -n "$v" ] || die "auth's answer has no usable \"$1\"" $E_REFUSED
  printf '%s' "$v" | sed 's/\\n/\n/g' >"$2"
}

# --- keys, certificates and CA files ---------------------------------------------------------
fingerprint() { printf '%s\n' "$1" | ssh-keygen -l -f - 2>/dev/null | cut -d' ' -f2; }
read_host_keys() { # fills KEYS (private key paths) and KEY_LINES ("type base64")
  KEYS=() KEY_LINES=()
  local pub type b64 rest
  for pub in "$P_SSH_DIR"/ssh_host_*_key.pub; do
    if [ ! -f "$pub" ] || [ ! -f "${pub%.pub}" ]; then continue; fi
    read -r type b64 rest <"$pub" || true
    [[ $type =~ ^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa)$ && $b64 =~ ^[A-Za-z0-9+/]+={0,2}$ ]] || continue
    [ -n "$(fingerprint "$type $b64")" ] || die "$pub is not a public key" $E_CONFIG
    if [ "$type" = ssh-ed25519 ]; then
      KEYS=("${pub%.pub}" "${KEYS[@]+"${KEYS[@]}"}") KEY_LINES=("$type $b64" "${KEY_LINES[@]+"${KEY_LINES[@]}"}")
    else
      KEYS+=("${pub%.pub}") KEY_LINES+=("$type $b64")
    fi
  done
  [ ${#KEYS[@]} -gt 0 ] || die "no host keys in $P_SSH_DIR (expected ssh_host_*_key with its .pub; ssh-keygen -A makes them)" $E_CONFIG
}
check_key_file() { # file what: every non-comment line a public key, at least one
  local line n=0
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in '' | '#'*) continue ;; esac
    line=${line#@cert-authority * }
    [ -n "$(fingerprint "$line")" ] || die "auth's answer is unusable: a line of $2 is not a public key" $E_REFUSED
    n=$((n + 1))
  done <"$1"
  [ $n -gt 0 ] || die "auth's answer is unusable: $2 holds no key" $E_REFUSED
}
cert_epoch() { # cert-file from|to
  local v
  v=$(TZ=UTC ssh-keygen -L -f "$1" 2>/dev/null | sed -n 's/^ *Valid: from \([0-9T:-]*\) to \([0-9T:-]*\)$/\1 \2/p')
  [ -n "$v" ] || return 1
  if [ "$2" = from ]; then TZ=UTC date -d "${v% *}" +%s; else TZ=UTC date -d "${v#* }" +%s; fi
}
# Checks every certificate in the answer and stages it for its host key in $WORK/cert.N.
# With "every", each host key needs one (join); with "answered", those auth renewed.
stage_certificates() {
  local coverage=$1 ca_fps i c line key_fp ca_fp info found=0 now
  local re="^[a-z0-9@.-]+-cert-v01@openssh\\.com [A-Za-z0-9+/=]+( [$SAFE]*)?\$"
  ca_fps=$(grep -v '^#' "$WORK/known_hosts" | sed 's/^@cert-authority [^ ]* //' | while IFS= read -r line; do fingerprint "$line"; done)
  now=$(date +%s)
  mapfile -t CERT_LINES < <(json_values certificate)
  for i in "${!KEYS[@]}"; do
    key_fp=$(fingerprint "${KEY_LINES[$i]}")
    rm -f "$WORK/cert.$i"
    for c in "${CERT_LINES[@]+"${CERT_LINES[@]}"}"; do
      [[ $c =~ $re ]] || continue
      printf '%s\n' "$c" >"$WORK/cert.try"
      info=$(TZ=UTC ssh-keygen -L -f "$WORK/cert.try" 2>/dev/null) || continue
      grep -q "^ *Public key: [A-Z0-9-]* $key_fp\$" <<<"$info" || continue
      grep -q '^ *Type: .* host certificate$' <<<"$info" || die "auth's answer is unusable: the certificate for ${KEYS[$i]} is not a host certificate"
      sed -n '/^ *Principals:/,/^ *Critical Options:/p' <<<"$info" | sed 's/^ *//' | grep -qxF "$HOST_NAME" ||
        die "auth's answer is unusable: the certificate for ${KEYS[$i]} does not name $HOST_NAME"
      ca_fp=$(sed -n 's/^ *Signing CA: [A-Z0-9-]* \(SHA256:[^ ]*\).*/\1/p' <<<"$info")
      { [ -n "$ca_fp" ] && grep -qxF "$ca_fp" <<<"$ca_fps"; } ||
        die "auth's answer is unusable: the certificate for ${KEYS[$i]} is signed by a key that is not among the host CA keys auth lists"
      [ "$(cert_epoch "$WORK/cert.try" to)" -gt "$now" ] || die "auth's answer is unusable: the certificate for ${KEYS[$i]} has expired"
      mv "$WORK/cert.try" "$WORK/cert.$i"
      found=$((found + 1))
      break
    done
    if [ ! -f "$WORK/cert.$i" ] && [ "$coverage" = every ]; then die "auth's answer is unusable: no certificate for ${KEYS[$i]}.pub"; fi
  done
  [ $found -gt 0 ] || die "auth's answer is unusable: no certificate for any of the host keys"
}
# Reads the CA files of an answer into $WORK and stages its certificates.
stage_answer() { # coverage
  json_text user_ca "$WORK/user_ca.pub"
  check_key_file "$WORK/user_ca.pub" user_ca
  json_text known_hosts "$WORK/known_hosts"
  check_key_file "$WORK/known_hosts" known_hosts
  stage_certificates "$1"
}
write_staged() { # the staged answer into place (through put_file: rolled back on failure)
  local i
  put_file "$P_USER_CA" 0644 "$WORK/user_ca.pub"
  put_file "$P_KNOWN_HOSTS" 0644 "$WORK/known_hosts"
  for i in "${!KEYS[@]}"; do
    if [ -f "$WORK/cert.$i" ]; then put_file "${KEYS[$i]}-cert.pub" 0644 "$WORK/cert.$i"; fi
  done
}
fetch_krl() { # into $WORK/krl; returns 1 when auth says 304
  api GET /v1/krl
  [ "$STATUS" != 304 ] || return 1
  [ "$STATUS" = 200 ] || expect_ok "fetching the KRL"
  # ssh-keygen -Q reads it as sshd will; 255 means it could not, and the current file stays.
  ssh-keygen -Q -l -f "$BODY" >/dev/null 2>&1 || die "auth served a KRL that does not parse; the current file was kept" $E_REFUSED
  cp "$BODY" "$WORK/krl" || die "cannot keep the KRL in $WORK" $E_CONFIG
}

# --- sshd ------------------------------------------------------------------------------------
sshd_test() { # config; prints sshd's complaint and fails when it does
  local out rc=0
  out=$("$SSHD" -t -f "$1" 2>&1) || rc=$?
  [ $rc -eq 0 ] && return 0
  grep -v -e 'Could not load host certificate' -e 'No matching private key' <<<"$out" | tr '\n' ';' | tr -d '\000-\037'
  return 1
}
test_staged() { # staged drop-in: Include it before the main config in a throwaway config
  local wrapper rc=0
  wrapper=$(mktemp "$P_DROPIN_DIR/.$DROP_IN_NAME.sshd-test-XXXXXX")
  printf 'Include %s\nInclude %s\n' "$1" "$P_SSHD_CONFIG" >"$wrapper"
  sshd_test "$wrapper" || rc=$?
  rm -f "$wrapper"
  return $rc
}
render_drop_in() { # as renderDropIn in packages/cli/src/host/sshd.ts, byte for byte
  local i l
  # shellcheck disable=SC2016 # the backquotes are text
  printf '%s\n' '# Written by `portcullis host join`; replaced on every join. Add your own settings to' \
    '# another file in this directory (a lower number wins: sshd keeps the first value).' \
    "TrustedUserCAKeys $P_USER_CA" "RevokedKeys $P_KRL" 'AuthorizedPrincipalsFile none'
  for i in "${!KEYS[@]}"; do printf 'HostCertificate %s\n' "${KEYS[$i]}-cert.pub"; done
  if [ "$EXCLUSIVE" = 1 ]; then printf 'AuthorizedKeysFile none\n'; fi
  for l in "${EXTRA[@]+"${EXTRA[@]}"}"; do printf '%s\n' "$l"; done
}
effective() { "$SSHD" -T -f "$P_SSHD_CONFIG" 2>/dev/null | sed -n "s/^$1 //p"; }
check_effective() {
  local why="is it missing 'Include $SSHD_CONFIG_DIR/*.conf' near the top, or does an earlier file set it?" i
  [ "$(effective trustedusercakeys | head -n 1)" = "$P_USER_CA" ] || { echo "sshd does not use TrustedUserCAKeys $P_USER_CA: $why"; return 1; }
  [ "$(effective revokedkeys | head -n 1)" = "$P_KRL" ] || { echo "sshd does not use RevokedKeys $P_KRL: $why"; return 1; }
  for i in "${!KEYS[@]}"; do
    effective hostcertificate | grep -qxF "${KEYS[$i]}-cert.pub" || { echo "sshd does not load HostCertificate ${KEYS[$i]}-cert.pub: $why"; return 1; }
  done
}
reload_sshd() { # sets RELOADED to what it did
  local unit pidfile pid
  if [ "$ROOT" = / ] && [ -d /run/systemd/system ]; then
    for unit in ssh.service sshd.service; do
      systemctl is-active --quiet "$unit" || continue
      systemctl reload "$unit" || die "systemctl reload $unit failed" $E_CONFIG
      RELOADED="systemctl reload $unit"
      return 0
    done
  fi
  pidfile=$(effective pidfile | head -n 1)
  pidfile=${pidfile:-$(under /run/sshd.pid)}
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [[ $pid =~ ^[0-9]+$ ]] && [ "$pid" -gt 1 ] && kill -0 "$pid" 2>/dev/null; then
    kill -HUP "$pid"
    RELOADED="SIGHUP to sshd (pid $pid from $pidfile)"
  else
    RELOADED="no running sshd found (no live pid in $pidfile): start or reload sshd to use the new configuration"
  fi
}
# Runs the real config through sshd -t (and, for a join, sshd -T); undoes every file on failure.
activate() { # with-drop-in(0|1)
  local why
  if ! why=$(sshd_test "$P_SSHD_CONFIG"); then
    rollback
    die "sshd -t -f $P_SSHD_CONFIG failed with the new files: $why; every file was put back as it was" $E_CONFIG
  fi
  if [ "$1" = 1 ] && ! why=$(check_effective); then
    rollback
    die "$why; every file was put back as it was" $E_CONFIG
  fi
  BACKUPS=()
}

# --- timers ----------------------------------------------------------------------------------
# The same units as deploy/host/*.service|*.timer (a test holds them equal), for hosts that have
# only this script.
unit_text() {
  case $1 in
    portcullis-host-renew.service) cat <<'EOF' ;;
# Renews this host's SSH host certificates with Portcullis auth (installed by host join).
# It does nothing until half the certificate's lifetime has passed; auth wants it done before
# two thirds. @COMMAND@ is replaced at install time by the command that enrolled the host.
[Unit]
Description=Portcullis: renew the SSH host certificates
Documentation=man:sshd_config(5)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=@COMMAND@ renew
# It writes under /etc/ssh and reloads sshd, so /etc stays writable; the rest is closed.
NoNewPrivileges=yes
PrivateTmp=yes
ProtectHome=yes
EOF
    portcullis-host-renew.timer) cat <<'EOF' ;;
# Every six hours, spread over an hour so a fleet does not renew at once. Persistent: a host
# that was off catches up at boot.
[Unit]
Description=Portcullis: renew the SSH host certificates regularly

[Timer]
OnCalendar=*-*-* 00/6:00:00
RandomizedDelaySec=1h
Persistent=true

[Install]
WantedBy=timers.target
EOF
    portcullis-krl-refresh.service) cat <<'EOF' ;;
# Fetches the Portcullis KRL (sshd RevokedKeys) and the user CA keys when they changed.
# A failed download leaves the current files as they are. @COMMAND@: see the renew unit.
[Unit]
Description=Portcullis: refresh the SSH key revocation list
Documentation=man:sshd_config(5)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=@COMMAND@ krl-refresh
NoNewPrivileges=yes
PrivateTmp=yes
ProtectHome=yes
EOF
    portcullis-krl-refresh.timer) cat <<'EOF' ;;
# Every five minutes: a revocation reaches the host within that (plus the jitter), and an
# unchanged KRL costs one 304.
[Unit]
Description=Portcullis: refresh the SSH key revocation list regularly

[Timer]
OnBootSec=1min
OnUnitActiveSec=5min
RandomizedDelaySec=30s
AccuracySec=10s

[Install]
WantedBy=timers.target
EOF
    *) die "no unit $1" $E_USAGE ;;
  esac
}
readonly UNITS=(portcullis-host-renew.service portcullis-host-renew.timer portcullis-krl-refresh.service portcullis-krl-refresh.timer)
TIMER_NOTES=()
write_timers() {
  local mode=$TIMERS u minute
  if [ "$mode" = auto ]; then
    if [ -d "$(under /run/systemd/system)" ]; then mode=systemd; elif [ -d "$(under /etc/cron.d)" ]; then mode=cron; else mode=none; fi
  fi
  TIMER_MODE=$mode
  # The timers run the installed copy of this script, not wherever it was started from.
  if [ -f "$0" ] && [ "$(head -c 2 "$0")" = '#!' ]; then
    put_file "$(under "$INSTALL_PATH")" 0755 "$0"
  else
    TIMER_NOTES+=("save this script as $INSTALL_PATH (mode 0755) for the timers to run")
  fi
  case $mode in
    systemd)
      for u in "${UNITS[@]}"; do
        unit_text "$u" | sed "s|@COMMAND@|$INSTALL_PATH|" >"$WORK/$u"
        put_file "$(under /etc/systemd/system)/$u" 0644 "$WORK/$u"
      done ;;
    cron)
      minute=$(($(printf '%s' "$HOST_NAME" | cksum | cut -d' ' -f1) % 60))
      printf '%s\n' '# Portcullis host timers, installed by host join (no systemd here): host certificate' \
        '# renewal (acts only once half the lifetime has passed) and the KRL refresh.' \
        'SHELL=/bin/sh' 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$minute */6 * * * root $INSTALL_PATH renew >/dev/null" \
        "*/5 * * * * root $INSTALL_PATH krl-refresh >/dev/null" >"$WORK/cron"
      put_file "$(under /etc/cron.d)/portcullis-host" 0644 "$WORK/cron"
      TIMER_NOTES+=("cron: $(under /etc/cron.d)/portcullis-host runs renewal every 6 hours and the KRL refresh every 5 minutes") ;;
    none)
      TIMER_NOTES+=("no systemd and no cron.d here: schedule as root '$INSTALL_PATH renew' every 6 hours and '$INSTALL_PATH krl-refresh' every 5 minutes") ;;
    *) die "--timers expected auto, systemd, cron or none" $E_USAGE ;;
  esac
}
enable_timers() {
  [ "$TIMER_MODE" = systemd ] || return 0
  if [ "$ROOT" != / ]; then say "systemd units written to $(under /etc/systemd/system) (not enabled under --root)"; return 0; fi
  if systemctl daemon-reload && systemctl enable --now portcullis-host-renew.timer portcullis-krl-refresh.timer; then
    say "systemd timers enabled: portcullis-host-renew.timer, portcullis-krl-refresh.timer"
  else
    say "systemd units written, but enabling failed: run systemctl enable --now portcullis-host-renew.timer portcullis-krl-refresh.timer"
  fi
}

# --- state (/etc/portcullis/host.conf, as formatHostState writes it) ---------------------------
write_state() {
  # shellcheck disable=SC2016 # the backquotes are text
  printf '%s\n' '# How this host enrolled with Portcullis. Read by `portcullis host renew|krl-refresh`' \
    '# and portcullis-host.sh; written by `host join`. No secrets: the host proves itself' \
    '# with its host key.' "AUTH_URL=$AUTH_URL" "AUTH_PIN=$AUTH_PIN" "HOST_NAME=$HOST_NAME" "SSH_DIR=$SSH_DIR" \
    "SSHD_CONFIG_DIR=$SSHD_CONFIG_DIR" "SSHD_CONFIG=$SSHD_CONFIG" "SSHD=$SSHD" >"$WORK/host.conf"
  put_file "$P_STATE" 0644 "$WORK/host.conf"
}
read_state() { # never sourced: KEY=value lines read one by one; --auth and --pin win
  local state line key val flag_url=$AUTH_URL flag_pin=$AUTH_PIN
  state=$(under "$STATE_PATH")
  [ -f "$state" ] || die "$state does not exist: this host has not joined (run join first)" $E_CONFIG
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in '' | '#'*) continue ;; esac
    key=${line%%=*} val=${line#*=}
    case $key in
      AUTH_URL) AUTH_URL=$val ;; AUTH_PIN) AUTH_PIN=$val ;; HOST_NAME) HOST_NAME=$val ;;
      SSH_DIR) SSH_DIR=$val ;; SSHD_CONFIG_DIR) SSHD_CONFIG_DIR=$val ;; SSHD_CONFIG) SSHD_CONFIG=$val ;;
      SSHD) SSHD=${val:-/usr/sbin/sshd} ;;
      *) die "$state: unknown key $key" $E_CONFIG ;;
    esac
  done <"$state"
  AUTH_URL=${flag_url:-$AUTH_URL} AUTH_PIN=${flag_pin:-$AUTH_PIN}
  check_url "$AUTH_URL"
  check_pin "$AUTH_PIN"
  is_hostname "$HOST_NAME" || die "$state: HOST_NAME is not a host name" $E_CONFIG
  check_path "$SSHD" SSHD
  set_layout
}

# --- commands --------------------------------------------------------------------------------
cmd_join() {
  { [ -n "$TOKEN" ] && [ -n "$AUTH_URL" ]; } || die "--token and --auth are required" $E_USAGE
  [[ $TOKEN =~ ^[A-Za-z0-9_-]{16,128}$ ]] || die "--token expected the token an admin made (16-128 characters of A-Z a-z 0-9 _ -)" $E_USAGE
  check_url "$AUTH_URL"
  check_pin "$AUTH_PIN"
  HOST_NAME=${HOST_NAME:-$(hostname)}
  is_hostname "$HOST_NAME" || die "--name '$HOST_NAME' is not a host name or address" $E_USAGE
  HOST_NAME=${HOST_NAME,,}
  local n l why names_json='' keys_json=''
  for n in "${NAMES[@]+"${NAMES[@]}"}"; do
    is_hostname "$n" || die "--names entry '$n' is not a host name or address" $E_USAGE
    names_json+="${names_json:+,}\"${n,,}\""
  done
  for l in "${EXTRA[@]+"${EXTRA[@]}"}"; do
    [[ $l =~ ^[A-Za-z]+[[:blank:]]+[^[:cntrl:]]+$ ]] || die "--sshd-option expected 'Keyword value', got '$l'" $E_USAGE
    [[ ! ${l,,} =~ ^(match|include)[[:blank:]] ]] || die "--sshd-option: ${l%% *} is not allowed in the drop-in" $E_USAGE
  done
  [ "$ROOT" != / ] || [ "$DRY_RUN" = 1 ] || [ "$(id -u)" = 0 ] || die "join writes under /etc/ssh and reloads sshd: run it as root" $E_USAGE
  set_layout
  read_host_keys
  render_drop_in >"$WORK/drop-in"
  # Everything that can fail without auth fails before the token is spent.
  why=$(sshd_test "$P_SSHD_CONFIG") || die "sshd -t -f $P_SSHD_CONFIG already fails before any change: $why; fix that first" $E_CONFIG
  mkdir -p "$P_DROPIN_DIR"
  STAGED=$(mktemp "$P_DROPIN_DIR/.$DROP_IN_NAME.new-XXXXXX")
  cp "$WORK/drop-in" "$STAGED"
  chmod 0644 "$STAGED"
  owner_root "$STAGED"
  why=$(test_staged "$STAGED") || die "sshd -t refused the drop-in: $why; nothing was changed and the token was not used" $E_CONFIG
  fetch_krl || die "auth answered 304 to a KRL request without If-None-Match"
  if [ "$DRY_RUN" = 1 ]; then
    say "dry run: would enroll $HOST_NAME with ${KEYS[*]}; $P_DROPIN passed sshd -t; auth reachable; the token was not used"
    return 0
  fi
  for l in "${KEY_LINES[@]}"; do keys_json+="${keys_json:+,}\"$l\""; done
  printf '{"token":"%s","hostname":"%s",%s"host_keys":[%s]}' "$TOKEN" "$HOST_NAME" "${names_json:+\"names\":[$names_json],}" "$keys_json" >"$WORK/join.json"
  api POST /v1/join "$WORK/join.json"
  expect_ok "auth refused the join"
  stage_answer every
  write_staged
  put_file "$P_KRL" 0644 "$WORK/krl"
  write_state
  write_timers
  if ! cmp -s "$STAGED" "$P_DROPIN"; then
    remember "$P_DROPIN"
    sync "$STAGED"
    mv -f "$STAGED" "$P_DROPIN"
    CHANGED+=("$P_DROPIN")
  fi
  activate 1
  reload_sshd
  say "enrolled $HOST_NAME: ${#KEYS[@]} host key(s) certified"
  say "sshd: $P_DROPIN passed sshd -t; $RELOADED"
  for n in "${TIMER_NOTES[@]+"${TIMER_NOTES[@]}"}"; do say "$n"; done
  enable_timers
  say "clients trust this host with the known_hosts line in $P_KNOWN_HOSTS"
}

cmd_renew() {
  read_state
  read_host_keys
  local i now from to first_to='' first_from='' signer='' sig_json='' line
  now=$(date +%s)
  for i in "${!KEYS[@]}"; do
    [ -f "${KEYS[$i]}-cert.pub" ] || continue
    from=$(cert_epoch "${KEYS[$i]}-cert.pub" from) || continue
    to=$(cert_epoch "${KEYS[$i]}-cert.pub" to) || continue
    if [ "$from" -gt "$now" ] || [ "$now" -ge "$to" ]; then continue; fi
    signer=${signer:-${KEYS[$i]}}
    if [ -z "$first_to" ] || [ "$to" -lt "$first_to" ]; then first_to=$to first_from=$from; fi
  done
  [ -n "$signer" ] || die "no valid host certificate next to the host keys in $P_SSH_DIR: a lapsed host cannot renew; join again with a token made for $HOST_NAME" $E_AUTH
  local after=$((first_from + (first_to - first_from) / 2))
  if [ "$FORCE" != 1 ] && [ "$now" -lt "$after" ]; then
    say "not due: renewing after $(date -u -d "@$after" +%Y-%m-%dT%H:%M:%SZ)"
    return 0
  fi
  printf '{"hostname":"%s"}' "$HOST_NAME" >"$WORK/challenge.json"
  api POST /v1/hosts/renew/challenge "$WORK/challenge.json"
  expect_ok "auth refused the renewal challenge"
  # The host key signs only in this namespace, and only a challenge about this host.
  [ "$(json_values namespace | head -n 1)" = "$NAMESPACE" ] || die "auth asked for a signature in another namespace than $NAMESPACE"
  json_text challenge "$WORK/challenge"
  { [ "$(sed -n 1p "$WORK/challenge")" = 'portcullis host renewal' ] && [ "$(sed -n 2p "$WORK/challenge")" = "host: $HOST_NAME" ]; } ||
    die "auth sent a renewal challenge that is not about this host"
  ssh-keygen -q -Y sign -n "$NAMESPACE" -f "$signer" "$WORK/challenge" 2>"$WORK/sign.err" ||
    die "ssh-keygen -Y sign with $signer failed: $(tr -d '\000-\037' <"$WORK/sign.err")" $E_CONFIG
  while IFS= read -r line; do
    [[ $line =~ ^(-----(BEGIN|END)\ SSH\ SIGNATURE-----|[A-Za-z0-9+/=]+)$ ]] || die "ssh-keygen wrote an unexpected signature" $E_CONFIG
    sig_json+="$line\\n"
  done <"$WORK/challenge.sig"
  printf '{"hostname":"%s","signature":"%s"}' "$HOST_NAME" "$sig_json" >"$WORK/renew.json"
  api POST /v1/hosts/renew "$WORK/renew.json"
  expect_ok "auth refused the renewal"
  stage_answer answered
  write_staged
  activate 0
  reload_sshd
  say "renewed the host certificates of $HOST_NAME; $RELOADED"
}

cmd_krl_refresh() {
  read_state
  # If-None-Match is the file's own SHA-256 (auth's ETag is "<sha256>"): a file changed or lost
  # behind our back is fetched again.
  if [ -f "$P_KRL" ]; then ETAG="\"$(sha256sum "$P_KRL" | cut -d' ' -f1)\""; fi
  if fetch_krl; then
    put_file "$P_KRL" 0644 "$WORK/krl"
    if [ ${#CHANGED[@]} -gt 0 ]; then say "KRL updated: $P_KRL"; fi
  fi
  ETAG='' CHANGED=() BACKUPS=()
  api GET /v1/ca
  expect_ok "fetching the CA keys"
  # The upstream CA keys (the CA of the certificates the proxy dials with), never the user CA's:
  # a host trusting the user CA could be reached around the proxy. auth writes authorized_keys
  # as the upstream object's first field.
  json_text_in upstream authorized_keys "$WORK/user_ca.pub"
  check_key_file "$WORK/user_ca.pub" upstream.authorized_keys
  put_file "$P_USER_CA" 0644 "$WORK/user_ca.pub"
  if [ ${#CHANGED[@]} -gt 0 ]; then say "trusted (upstream) CA keys updated: $P_USER_CA"; fi
}

# --- arguments -------------------------------------------------------------------------------
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
case $CMD in -h | --help) usage; exit 0 ;; esac
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
  flag=$1
  case $flag in
    --exclusive) EXCLUSIVE=1; shift; continue ;;
    --dry-run) DRY_RUN=1; shift; continue ;;
    --force) FORCE=1; shift; continue ;;
    -h | --help) usage; exit 0 ;;
  esac
  [ $# -ge 2 ] || die "$flag needs a value" $E_USAGE
  case $flag in
    --token) TOKEN=$2 ;; --auth) AUTH_URL=${2%/} ;; --pin) AUTH_PIN=$2 ;; --name) HOST_NAME=$2 ;;
    --names) IFS=, read -r -a more <<<"$2"; NAMES+=("${more[@]}") ;;
    --ssh-dir) SSH_DIR=$2 ;; --sshd-config-dir) SSHD_CONFIG_DIR=$2 ;; --sshd-config) SSHD_CONFIG=$2 ;;
    --sshd-option) EXTRA+=("$2") ;; --sshd) SSHD=$2; check_path "$SSHD" --sshd ;;
    --timers) TIMERS=$2 ;; --root) ROOT=$2 ;;
    *) die "unknown flag $flag" $E_USAGE ;;
  esac
  shift 2
done
for tool in curl ssh-keygen sed grep; do command -v "$tool" >/dev/null || die "$tool is required" $E_CONFIG; done
case $CMD in
  join) cmd_join ;;
  renew) [ "$ROOT" = / ] || check_path "$ROOT" --root; cmd_renew ;;
  krl-refresh) [ "$ROOT" = / ] || check_path "$ROOT" --root; cmd_krl_refresh ;;
  print-unit) for u in "${UNITS[@]}"; do printf '=== %s\n' "$u"; unit_text "$u"; done ;;
  *) die "usage: $0 join|renew|krl-refresh [flags] (--help)" $E_USAGE ;;
esac
