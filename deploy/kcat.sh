#!/usr/bin/env bash
# kcat, the command-line Kafka client, for the tests that send as an outside client would:
# installs Debian's `kcat` when it is missing. Idempotent; `apt-get update` only when needed.
set -euo pipefail

if ! command -v kcat >/dev/null; then
  if [[ $EUID -ne 0 ]]; then echo "kcat: need root to apt-get install kcat" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-cache show kcat >/dev/null 2>&1 || apt-get update -qq
  echo "kcat: installing Debian's kcat" >&2
  apt-get install -y -qq --no-install-recommends kcat >/dev/null
fi
command -v kcat
