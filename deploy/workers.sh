#!/usr/bin/env bash
# Background Faust workers (process manager, timers, module handlers), logs and pids in .data/.
#   workers.sh start [N]   start N workers (default 2) on web ports WEB_PORT, WEB_PORT+1, ...
#   workers.sh stop        stop them cleanly (SIGTERM, then wait)
#   workers.sh status      list them
# Each worker n runs the process manager, and a module runner m<n> (python -m streams.modules.runner,
# metrics on WEB_PORT+1000+n-1) beside it runs the module handlers in a process of its own, off
# the worker's GIL. WORKER_RUNS_MODULES=true runs the handlers inside the workers instead.
# Every process runs under a supervisor loop that starts it again when it exits by itself.
# Logs keep every generation: a start moves <name>.log to the next free <name>.log.<k> (.1 is
# the oldest), and each restart by the supervisor appends to <name>.log after a marker line.
# Each one's environment is this shell's (TOPIC_PREFIX, PROCESS_TIMEOUTS, ...), plus its own
# WEB_PORT and DATA_DIR, which also make its worker id (and so its transactional ids) stable.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${DATA_DIR:-$repo/.data}/workers"
base_port="${WEB_PORT:-6066}"
python="$repo/.venv/bin/python"

log() { echo "workers: $*" >&2; }

cd "$repo"

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

export WORKER_RUNS_MODULES="${WORKER_RUNS_MODULES:-false}"
modules_apart() { [[ "$WORKER_RUNS_MODULES" == "false" ]]; }

# kind w: a Faust worker; kind m: a module runner. Both of number n share port and data dir.
start_one() {
  local name="$1$2" port=$((base_port + $2 - 1)) dir="$data/$1$2"
  if alive "$dir.pid"; then log "$name already running (pid $(cat "$dir.pid"), port $port)"; return; fi
  mkdir -p "$dir"
  if [[ -f "$dir.log" ]]; then
    local k=1
    while [[ -e "$dir.log.$k" ]]; do k=$((k + 1)); done
    mv "$dir.log" "$dir.log.$k"
  fi
  nohup bash "${BASH_SOURCE[0]}" supervise "$1" "$2" > /dev/null 2>&1 < /dev/null &
  echo $! > "$dir.pid"
  log "$name started (pid $(cat "$dir.pid"), port $port, log $dir.log)"
}

# Runs one process, and starts it again whenever it exits by itself: a crash, the watchdog's
# exit 70 when a module loop is stuck (streams/observability/liveness.py), or a worker's exit 75
# when Kafka refuses a changelog record (streams/kafka/app.py). SIGTERM stops it, then this.
supervise() {
  local name="$1$2" port=$((base_port + $2 - 1)) dir="$data/$1$2" child="" code command
  if [[ "$1" == w ]]; then
    command=(-m faust -A streams.process.worker worker -l info --web-port "$port" --web-bind "${WEB_BIND:-127.0.0.1}")
  else
    command=(-m streams.modules.runner --metrics-port $((port + 1000)))
  fi
  trap 'if [[ -n "$child" ]]; then kill -TERM "$child" 2>/dev/null; wait "$child"; fi; exit 0' TERM INT
  local generation=0
  while :; do
    generation=$((generation + 1))
    echo "workers: $name generation $generation starting at $(date -u +%FT%T.%3NZ)" >> "$dir.log"
    DATA_DIR="$dir" WEB_PORT="$port" PYTHONPATH="$repo" "$python" "${command[@]}" \
      >> "$dir.log" 2>&1 < /dev/null &
    child=$!
    echo "$child" > "$dir.worker.pid"
    code=0
    wait "$child" || code=$?
    echo "workers: $name exited with $code; starting it again in 2 s" >> "$dir.log"
    sleep 2
  done
}

wait_ready() {
  local name="$1$2" marker="Ready" deadline=$((SECONDS + 120))
  [[ "$1" == m ]] && marker="modules running"
  until grep -q "$marker" "$data/$name.log" 2>/dev/null; do
    if ! alive "$data/$name.pid"; then log "$name exited; see $data/$name.log"; tail -n 20 "$data/$name.log" >&2; exit 1; fi
    if (( SECONDS > deadline )); then log "$name not ready in time"; exit 1; fi
    sleep 0.5
  done
}

kinds() { if modules_apart; then echo w m; else echo w; fi; }

start() {
  local count="${1:-2}"
  for n in $(seq 1 "$count"); do for kind in $(kinds); do start_one "$kind" "$n"; done; done
  for n in $(seq 1 "$count"); do for kind in $(kinds); do wait_ready "$kind" "$n"; done; done
  log "$count worker(s) ready$(modules_apart && echo ", each with its module runner")"
}

supervisors() { shopt -s nullglob; echo "$data"/[wm][0-9].pid "$data"/[wm][0-9][0-9].pid; }

stop() {
  shopt -s nullglob
  local pids=()
  for pidfile in $(supervisors); do
    if alive "$pidfile"; then kill -TERM "$(cat "$pidfile")"; pids+=("$(cat "$pidfile")"); fi
    rm -f "$pidfile"
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" || true
  done
  for pidfile in "$data"/*.worker.pid; do  # a process whose supervisor had to be killed
    alive "$pidfile" && kill -KILL "$(cat "$pidfile")" || true
    rm -f "$pidfile"
  done
  log "stopped ${#pids[@]} process(es)"
}

status() {
  for pidfile in $(supervisors); do
    if alive "$pidfile"; then
      echo "$(basename "$pidfile" .pid) running (supervisor pid $(cat "$pidfile"), process pid $(cat "${pidfile%.pid}.worker.pid" 2>/dev/null))"
    fi
  done
}

case "${1:-}" in
  start) start "${2:-2}" ;;
  stop) stop ;;
  supervise) supervise "$2" "$3" ;;
  status) status ;;
  *) echo "usage: $0 start [N]|stop|status" >&2; exit 2 ;;
esac
