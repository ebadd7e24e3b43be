#!/usr/bin/env bash
# Background Faust workers (process manager, timers, module handlers), logs and pids in .data/.
#   workers.sh start [N]   start N workers (default 2) on web ports WEB_PORT, WEB_PORT+1, ...
#   workers.sh stop        stop them cleanly (SIGTERM, then wait)
#   workers.sh status      list them
# Each worker runs under a supervisor loop that starts it again when it exits by itself.
# Each worker's environment is this shell's (TOPIC_PREFIX, PROCESS_TIMEOUTS, ...), plus its own
# WEB_PORT and DATA_DIR, which also make its worker id (and so its transactional ids) stable.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${DATA_DIR:-$repo/.data}/workers"
base_port="${WEB_PORT:-6066}"
python="$repo/.venv/bin/python"

log() { echo "workers: $*" >&2; }

cd "$repo"

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_one() {
  local n="$1" port=$((base_port + $1 - 1)) dir="$data/w$1"
  if alive "$dir.pid"; then log "w$n already running (pid $(cat "$dir.pid"), port $port)"; return; fi
  mkdir -p "$dir"
  [[ -f "$dir.log" ]] && mv "$dir.log" "$dir.log.1"
  nohup bash "${BASH_SOURCE[0]}" supervise "$n" > /dev/null 2>&1 < /dev/null &
  echo $! > "$dir.pid"
  log "w$n started (pid $(cat "$dir.pid"), http://127.0.0.1:$port/ui/, log $dir.log)"
}

# Runs worker n, and starts it again whenever it exits by itself: a crash, or the watchdog's
# exit 70 when a module loop is stuck (streams/liveness.py). SIGTERM stops the worker, then this.
supervise() {
  local n="$1" port=$((base_port + $1 - 1)) dir="$data/w$1" child="" code
  trap 'if [[ -n "$child" ]]; then kill -TERM "$child" 2>/dev/null; wait "$child"; fi; exit 0' TERM INT
  while :; do
    DATA_DIR="$dir" WEB_PORT="$port" PYTHONPATH="$repo" "$python" -m faust \
      -A streams.worker worker -l info --web-port "$port" --web-bind "${WEB_BIND:-127.0.0.1}" \
      >> "$dir.log" 2>&1 < /dev/null &
    child=$!
    echo "$child" > "$dir.worker.pid"
    code=0
    wait "$child" || code=$?
    echo "workers: w$n exited with $code; starting it again in 2 s" >> "$dir.log"
    sleep 2
  done
}

wait_ready() {
  local n="$1" port=$((base_port + $1 - 1)) deadline=$((SECONDS + 120))
  until grep -q "Ready" "$data/w$n.log" 2>/dev/null; do
    if ! alive "$data/w$n.pid"; then log "w$n exited; see $data/w$n.log"; tail -n 20 "$data/w$n.log" >&2; exit 1; fi
    if (( SECONDS > deadline )); then log "w$n not ready in time"; exit 1; fi
    sleep 0.5
  done
}

start() {
  local count="${1:-2}"
  for n in $(seq 1 "$count"); do start_one "$n"; done
  for n in $(seq 1 "$count"); do wait_ready "$n"; done
  log "$count worker(s) ready"
}

stop() {
  shopt -s nullglob
  local pids=()
  for pidfile in "$data"/w[0-9].pid "$data"/w[0-9][0-9].pid; do
    if alive "$pidfile"; then kill -TERM "$(cat "$pidfile")"; pids+=("$(cat "$pidfile")"); fi
    rm -f "$pidfile"
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" || true
  done
  for pidfile in "$data"/w*.worker.pid; do  # a worker whose supervisor had to be killed
    alive "$pidfile" && kill -KILL "$(cat "$pidfile")" || true
    rm -f "$pidfile"
  done
  log "stopped ${#pids[@]} worker(s)"
}

status() {
  shopt -s nullglob
  for pidfile in "$data"/w[0-9].pid "$data"/w[0-9][0-9].pid; do
    if alive "$pidfile"; then
      echo "$(basename "$pidfile" .pid) running (supervisor pid $(cat "$pidfile"), worker pid $(cat "${pidfile%.pid}.worker.pid" 2>/dev/null))"
    fi
  done
}

case "${1:-}" in
  start) start "${2:-2}" ;;
  stop) stop ;;
  supervise) supervise "$2" ;;
  status) status ;;
  *) echo "usage: $0 start [N]|stop|status" >&2; exit 2 ;;
esac
