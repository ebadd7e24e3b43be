#!/usr/bin/env bash
# A headless browser for the web view tests: installs Debian's `chromium` when /usr/bin/chromium
# is missing. Idempotent; runs `apt-get update` only when the package is not known yet.
#   browser.sh            install if needed, then print the browser's path
# Environment: CHROMIUM (/usr/bin/chromium)
set -euo pipefail

browser="${CHROMIUM:-/usr/bin/chromium}"

log() { echo "browser: $*" >&2; }

install_chromium() {
  if [[ $EUID -ne 0 ]]; then log "need root to apt-get install chromium"; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-cache show chromium >/dev/null 2>&1; then
    apt-get update -qq
  fi
  log "installing Debian's chromium"
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
}

if [[ ! -x "$browser" ]]; then
  install_chromium
fi
"$browser" --version >&2
echo "$browser"
