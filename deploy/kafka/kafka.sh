#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) from Maven Central jars.
#   kafka.sh start   fetch jars if missing, format storage once, start, wait until a metadata request succeeds
#   kafka.sh stop    stop the broker cleanly (SIGTERM, then wait)
#   kafka.sh status  exit 0 when running
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_HEAP (1g), DATA_DIR (<repo>/.data)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-9093}"
heap="${KAFKA_HEAP:-1g}"
data="${DATA_DIR:-$repo/.data}/kafka"
pidfile="$data/kafka.pid"
python="${PYTHON:-$repo/.venv/bin/python}"

log() { echo "kafka: $*" >&2; }

running() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

fetch_jars() {
  # The stamp ties lib/ to the pom, so a version bump refetches.
  local stamp; stamp="$(sha256sum "$here/pom.xml" | cut -d' ' -f1)"
  if [[ "$(cat "$here/lib/.stamp" 2>/dev/null)" == "$stamp" ]]; then return; fi
  log "fetching broker jars from Maven Central"
  rm -rf "$here/lib"
  (cd "$here" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies)
  echo "$stamp" > "$here/lib/.stamp"
}

write_config() {
  mkdir -p "$data/logs" "$data/log-dirs"
  cat > "$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${controller_port}
listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:${port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=${data}/log-dirs
num.partitions=8
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.check.interval.ms=300000
PROPS
}

format_storage() {
  if [[ -f "$data/log-dirs/meta.properties" ]]; then return; fi
  # The storage tool logs to stdout too, so the cluster id is made here rather than read back.
  local cluster_id
  cluster_id="$(python3 -c 'import base64,os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    if not s.startswith("-"): print(s); break')"
  log "formatting KRaft storage (cluster $cluster_id)"
  java -cp "$here/lib/*" -Dlog4j.configuration="file:$here/log4j.properties" \
    -Dkafka.logs.dir="$data/logs" \
    kafka.tools.StorageTool format -t "$cluster_id" -c "$data/server.properties" --ignore-formatted \
    >> "$data/logs/format.log" 2>&1
}

wait_ready() {
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  until "$python" -m streams.kafka.admin ping --bootstrap "127.0.0.1:${port}" 2>/dev/null; do
    if ! running; then log "broker exited; see $data/logs/"; tail -n 30 "$data/logs/console.log" >&2 || true; exit 1; fi
    if (( SECONDS > deadline )); then log "not ready in time"; exit 1; fi
    sleep 0.5
  done
}

start() {
  if running; then log "already running (pid $(cat "$pidfile")) on 127.0.0.1:${port}"; return; fi
  fetch_jars
  write_config
  format_storage
  local started=$SECONDS
  # setsid: the broker outlives the shell that started it (make, CI steps).
  setsid java -Xms512m -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$here/log4j.properties" \
    -Dkafka.logs.dir="$data/logs" \
    -cp "$here/lib/*" kafka.Kafka "$data/server.properties" \
    > "$data/logs/console.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  (cd "$repo" && wait_ready)
  log "ready on 127.0.0.1:${port} in $((SECONDS - started))s (pid $(cat "$pidfile"))"
}

stop() {
  if ! running; then log "not running"; rm -f "$pidfile"; return; fi
  local pid; pid="$(cat "$pidfile")"
  kill -TERM "$pid"
  for _ in $(seq 1 120); do
    if ! kill -0 "$pid" 2>/dev/null; then rm -f "$pidfile"; log "stopped"; return; fi
    sleep 0.5
  done
  log "did not stop in 60s, killing"; kill -KILL "$pid" || true; rm -f "$pidfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) running ;;
  fetch) fetch_jars ;;
  *) echo "usage: $0 start|stop|status|fetch" >&2; exit 2 ;;
esac
