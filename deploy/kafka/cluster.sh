#!/usr/bin/env bash
# A local Apache Kafka cluster: BROKERS (3) KRaft nodes, each a combined broker+controller and
# a voter of one quorum, from the same Maven jars as kafka.sh (which runs the single node).
#   cluster.sh start      make the network and certificates, format storage once, start every
#                         node, wait until the metadata lists them all; prints the bootstrap
#   cluster.sh stop       stop every node (SIGTERM, then wait) and remove the network
#   cluster.sh status     exit 0 when every node runs
#   cluster.sh bootstrap  the PLAINTEXT bootstrap servers
#   cluster.sh env        the client settings of the SASL_SSL listener, as shell assignments
#   cluster.sh pid N      the pid of node N (for kill -9)
#   cluster.sh host K     a namespace for worker K on the cluster's network; prints its address
#   cluster.sh exec K CMD runs CMD there (a worker that serves its web view on that address)
# Network (CLUSTER_NET): "netns" puts every node in a network namespace of its own (a "host"
# at ${CLUSTER_SUBNET}.1N, a veth pair on one bridge, the host side at ${CLUSTER_SUBNET}.1;
# needs root and iproute2); "loopback" runs them on 127.0.0.1 with ports from
# CLUSTER_BASE_PORT; "auto" (default) takes netns when it works. The choice is kept with the
# data, like the node count and the listeners.
# SASL_SSL=1 adds a SASL_SSL listener on every node (port 9094 in netns; base+200+N-1 on
# loopback): SCRAM-SHA-512 user SASL_USERNAME (orderflow) with SASL_PASSWORD, server
# certificate from a CA made here with openssl, client certificate required, its key
# encrypted with SSL_KEY_PASSWORD.
# Environment: BROKERS (3), CLUSTER_DIR (<repo>/.data/cluster), CLUSTER_NET (auto),
# CLUSTER_NAME (ofk: names namespaces, veths and the bridge), CLUSTER_SUBNET (10.77.0),
# CLUSTER_BASE_PORT (19092), KAFKA_HEAP (768m per node), SASL_SSL (0).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="${CLUSTER_DIR:-$repo/.data/cluster}"
python="${PYTHON:-$repo/.venv/bin/python}"
heap="${KAFKA_HEAP:-768m}"
state="$dir/cluster.env"

log() { echo "cluster: $*" >&2; }

# The layout: from the data when the cluster was made, else from the environment.
load_layout() {
  if [[ -f "$state" ]]; then
    # shellcheck source=/dev/null
    source "$state"
    return
  fi
  brokers="${BROKERS:-3}"
  name="${CLUSTER_NAME:-ofk}"
  subnet="${CLUSTER_SUBNET:-10.77.0}"
  base_port="${CLUSTER_BASE_PORT:-19092}"
  sasl="${SASL_SSL:-0}"
  net="${CLUSTER_NET:-auto}"
  if [[ "$net" == auto ]]; then net="$(netns_works && echo netns || echo loopback)"; fi
  cluster_id=""
}

save_layout() {
  mkdir -p "$dir"
  cat > "$state" <<ENV
brokers=$brokers
name=$name
subnet=$subnet
base_port=$base_port
sasl=$sasl
net=$net
cluster_id=$cluster_id
sasl_user=$sasl_user
sasl_password=$sasl_password
key_password=$key_password
ENV
}

# Debian's package for a missing tool, when we may install it (as postgres.sh does).
ensure_tool() { # tool package
  command -v "$1" >/dev/null && return 0
  [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null || return 1
  log "installing Debian's $2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1; }
}

netns_works() {
  [[ "$(id -u)" == 0 ]] && ensure_tool ip iproute2 || return 1
  local probe="${CLUSTER_NAME:-ofk}-probe"
  ip netns add "$probe" 2>/dev/null || return 1
  ip netns del "$probe"
}

host_of() { if [[ "$net" == netns ]]; then echo "$subnet.$((10 + $1))"; else echo 127.0.0.1; fi; }
port_of() { # node, listener offset (0 PLAINTEXT, 1 CONTROLLER, 2 SASL_SSL)
  if [[ "$net" == netns ]]; then echo $((9092 + $2)); else echo $((base_port + 100 * $2 + $1 - 1)); fi
}
ns_of() { echo "$name$1"; }

bootstrap() {
  local out=() i
  for i in $(seq 1 "$brokers"); do out+=("$(host_of "$i"):$(port_of "$i" 0)"); done
  (IFS=,; echo "${out[*]}")
}

sasl_bootstrap() {
  local out=() i
  for i in $(seq 1 "$brokers"); do out+=("$(host_of "$i"):$(port_of "$i" 2)"); done
  (IFS=,; echo "${out[*]}")
}

# Network namespaces, one per node, on one bridge with the host

# A namespace on the cluster's bridge, at an address of the subnet.
attach() { # namespace address
  local ns="$1" address="$2"
  if ! ip netns list | grep -qw "$ns"; then ip netns add "$ns"; fi
  if ! ip link show "${ns}h" >/dev/null 2>&1; then
    ip link add "${ns}h" type veth peer name "${ns}n"
    ip link set "${ns}n" netns "$ns"
    ip link set "${ns}h" master "${name}br"
    ip netns exec "$ns" ip addr add "$address/24" dev "${ns}n"
  fi
  ip link set "${ns}h" up
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" ip link set "${ns}n" up
}

net_up() {
  [[ "$net" == netns ]] || return 0
  local bridge="${name}br" i
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    ip addr add "$subnet.1/24" dev "$bridge"
  fi
  ip link set "$bridge" up
  for i in $(seq 1 "$brokers"); do attach "$(ns_of "$i")" "$(host_of "$i")"; done
}

net_down() {
  [[ "$net" == netns ]] || return 0
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^${name}(w?[0-9]+)$" || true); do
    ip link del "${ns}h" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  ip link del "${name}br" 2>/dev/null || true
}

# Hosts for workers: namespace ${name}wK at ${subnet}.2K, beside the nodes
worker_ns() { echo "${name}w$1"; }
worker_host() { echo "$subnet.$((20 + $1))"; }

host_up() {
  local k="$1"
  if [[ "$net" != netns ]] || ! status; then
    log "worker hosts need a running cluster in namespaces (CLUSTER_NET=netns)"; exit 1
  fi
  attach "$(worker_ns "$k")" "$(worker_host "$k")"
  worker_host "$k"
}

# Certificates and users of the SASL_SSL listener

sasl_user="${SASL_USERNAME:-orderflow}"
sasl_password="${SASL_PASSWORD:-orderflow-secret}"
key_password="${SSL_KEY_PASSWORD:-orderflow-key}"

make_certs() {
  local tls="$dir/tls" sans="IP:127.0.0.1,DNS:localhost" i
  [[ "$sasl" == 1 && ! -f "$tls/client.key" ]] || return 0
  ensure_tool openssl openssl || { log "SASL_SSL needs openssl"; exit 1; }
  mkdir -p "$tls"
  for i in $(seq 1 "$brokers"); do sans+=",IP:$(host_of "$i")"; done
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=orderflow local CA" \
      -keyout ca.key -out ca.pem
    # The brokers' key is PKCS#8 without a password, as Kafka's PEM keystore reads it.
    openssl req -newkey rsa:2048 -nodes -subj "/CN=orderflow-broker" -keyout broker.key -out broker.csr
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$sans" > broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -sha256 -extfile broker.ext -out broker.crt
    cat broker.key broker.crt ca.pem > broker.pem
    # The client's key is encrypted: SSL_KEY_PASSWORD opens it.
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$sasl_user" -keyout client.plain.key -out client.csr
    printf 'extendedKeyUsage=clientAuth\n' > client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -sha256 -extfile client.ext -out client.crt
    openssl pkcs8 -topk8 -v2 aes-256-cbc -in client.plain.key -out client.key \
      -passout "pass:$key_password"
    rm -f client.plain.key ./*.csr ./*.ext ca.srl
    chmod 600 ./*.key broker.pem
  ) > "$dir/openssl.log" 2>&1 || { log "openssl failed; see $dir/openssl.log"; exit 1; }
}

client_env() {
  local tls="$dir/tls"
  cat <<ENV
KAFKA_BOOTSTRAP_SERVERS=$(sasl_bootstrap)
SECURITY_PROTOCOL=SASL_SSL
SASL_MECHANISM=SCRAM-SHA-512
SASL_USERNAME=$sasl_user
SASL_PASSWORD=$sasl_password
SSL_CAFILE=$tls/ca.pem
SSL_CERTFILE=$tls/client.crt
SSL_KEYFILE=$tls/client.key
SSL_KEY_PASSWORD=$key_password
ENV
}

# Nodes

node_dir() { echo "$dir/node-$1"; }
pid_of() { cat "$(node_dir "$1")/kafka.pid" 2>/dev/null; }
# Running, and not a zombie that a kill left for init to reap.
alive() { local stat; stat="$(ps -o stat= -p "$1" 2>/dev/null)" && [[ -n "$stat" && "$stat" != Z* ]]; }
node_running() { local pid; pid="$(pid_of "$1")" && [[ -n "$pid" ]] && alive "$pid"; }

write_config() {
  local i="$1" d voters="" listeners advertised j rf min_isr
  d="$(node_dir "$i")"
  mkdir -p "$d/logs" "$d/log-dirs"
  for j in $(seq 1 "$brokers"); do voters+="${voters:+,}$j@$(host_of "$j"):$(port_of "$j" 1)"; done
  rf=$((brokers < 3 ? brokers : 3))
  min_isr=$((rf >= 3 ? 2 : 1))
  listeners="PLAINTEXT://$(host_of "$i"):$(port_of "$i" 0),CONTROLLER://$(host_of "$i"):$(port_of "$i" 1)"
  advertised="PLAINTEXT://$(host_of "$i"):$(port_of "$i" 0)"
  if [[ "$sasl" == 1 ]]; then
    listeners+=",SASL_SSL://$(host_of "$i"):$(port_of "$i" 2)"
    advertised+=",SASL_SSL://$(host_of "$i"):$(port_of "$i" 2)"
  fi
  cat > "$d/server.properties" <<PROPS
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs=$d/log-dirs
num.partitions=8
default.replication.factor=$rf
min.insync.replicas=$min_isr
unclean.leader.election.enable=false
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=8
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.check.interval.ms=300000
PROPS
  if [[ "$sasl" == 1 ]]; then
    cat >> "$d/server.properties" <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$dir/tls/broker.pem
listener.name.sasl_ssl.ssl.truststore.type=PEM
listener.name.sasl_ssl.ssl.truststore.location=$dir/tls/ca.pem
listener.name.sasl_ssl.ssl.client.auth=required
PROPS
  fi
}

format_storage() {
  local i="$1" d scram=()
  d="$(node_dir "$i")"
  if [[ -f "$d/log-dirs/meta.properties" ]]; then return; fi
  if [[ "$sasl" == 1 ]]; then
    scram=(--add-scram "SCRAM-SHA-512=[name=$sasl_user,password=$sasl_password]")
  fi
  java -cp "$here/lib/*" -Dlog4j.configuration="file:$here/log4j.properties" \
    -Dkafka.logs.dir="$d/logs" \
    kafka.tools.StorageTool format -t "$cluster_id" -c "$d/server.properties" --ignore-formatted \
    "${scram[@]}" >> "$d/logs/format.log" 2>&1
}

start_node() {
  local i="$1" d prefix=()
  d="$(node_dir "$i")"
  if node_running "$i"; then return; fi
  if [[ "$net" == netns ]]; then prefix=(ip netns exec "$(ns_of "$i")"); fi
  # setsid: the node outlives the shell that started it; ip netns exec execs java, so the
  # pid is the broker's.
  setsid "${prefix[@]}" java -Xms256m -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$here/log4j.properties" \
    -Dkafka.logs.dir="$d/logs" \
    -cp "$here/lib/*" kafka.Kafka "$d/server.properties" \
    > "$d/logs/console.log" 2>&1 < /dev/null &
  echo $! > "$d/kafka.pid"
}

# Every node answers a metadata request itself, and the metadata lists them all (a node just
# killed stays listed until its session expires, so the list alone proves nothing).
all_answer() {
  local i
  for i in $(seq 1 "$brokers"); do
    # PLAINTEXT, whatever the caller's client settings.
    env -u SECURITY_PROTOCOL -u SASL_MECHANISM -u SASL_USERNAME -u SASL_PASSWORD \
      -u SSL_CAFILE -u SSL_CERTFILE -u SSL_KEYFILE -u SSL_KEY_PASSWORD \
      "$python" -m streams.kafka.admin ping --bootstrap "$(host_of "$i"):$(port_of "$i" 0)" \
      --brokers "$brokers" 2>/dev/null || return 1
  done
}

wait_ready() {
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120})) i
  until all_answer; do
    for i in $(seq 1 "$brokers"); do
      if ! node_running "$i"; then
        log "node $i exited; see $(node_dir "$i")/logs/"
        tail -n 30 "$(node_dir "$i")/logs/console.log" >&2 || true
        exit 1
      fi
    done
    if (( SECONDS > deadline )); then log "not ready in time"; exit 1; fi
    sleep 0.5
  done
}

start() {
  load_layout
  if [[ -f "$state" && -n "${BROKERS:-}" && "${BROKERS}" != "$brokers" ]]; then
    log "the cluster in $dir has $brokers nodes, not $BROKERS: make clean (or CLUSTER_DIR=) first"
    exit 1
  fi
  if [[ -f "$state" && "${SASL_SSL:-$sasl}" != "$sasl" ]]; then
    log "the cluster in $dir was made with SASL_SSL=$sasl: make clean (or CLUSTER_DIR=) first"
    exit 1
  fi
  local i all=1
  for i in $(seq 1 "$brokers"); do node_running "$i" || all=0; done
  if (( all )); then log "already running ($net): $(bootstrap)"; bootstrap; return; fi
  bash "$here/kafka.sh" fetch
  if [[ -z "$cluster_id" ]]; then
    cluster_id="$(python3 -c 'import base64,os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    if not s.startswith("-"): print(s); break')"
  fi
  save_layout
  local started=$SECONDS
  net_up
  make_certs
  for i in $(seq 1 "$brokers"); do write_config "$i"; format_storage "$i"; done
  for i in $(seq 1 "$brokers"); do start_node "$i"; done
  (cd "$repo" && wait_ready)
  log "$brokers nodes ready ($net) in $((SECONDS - started))s: $(bootstrap)"
  if [[ "$sasl" == 1 ]]; then log "SASL_SSL: $(sasl_bootstrap) (client settings: $0 env)"; fi
  bootstrap
}

stop() {
  [[ -f "$state" ]] || return 0
  load_layout
  local i pid pids=()
  for i in $(seq 1 "$brokers"); do
    if node_running "$i"; then pid="$(pid_of "$i")"; kill -TERM "$pid"; pids+=("$pid"); fi
  done
  # All at once, so that each node's controlled shutdown is granted while a quorum remains.
  # A node still waiting for its grant when the others are gone waits for a quorum that will
  # not come back (seen: the active controller, 60 s and more): 15 s after the first node
  # exited it is killed. Its writes are in the page cache, so nothing acknowledged is lost;
  # it recovers its logs at the next start.
  local deadline=$((SECONDS + 60)) first_exit="" left
  while :; do
    left=()
    for pid in "${pids[@]}"; do alive "$pid" && left+=("$pid"); done
    (( ${#left[@]} )) || break
    if [[ -z "$first_exit" ]] && (( ${#left[@]} < ${#pids[@]} )); then first_exit=$SECONDS; fi
    if (( SECONDS > deadline )) || { [[ -n "$first_exit" ]] && (( SECONDS - first_exit > 15 )); }; then
      log "node pids ${left[*]} still stopping without a quorum, killing"
      kill -KILL "${left[@]}" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.5
  done
  for i in $(seq 1 "$brokers"); do rm -f "$(node_dir "$i")/kafka.pid"; done
  net_down
  if (( ${#pids[@]} )); then log "stopped"; fi
}

status() {
  [[ -f "$state" ]] || return 1
  load_layout
  local i
  for i in $(seq 1 "$brokers"); do node_running "$i" || return 1; done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  bootstrap) load_layout; bootstrap ;;
  env) load_layout; client_env ;;
  pid) load_layout; pid_of "${2:?node}" ;;
  host) load_layout; host_up "${2:?worker host number}" ;;
  exec) load_layout; k="${2:?worker host number}"; shift 2; exec ip netns exec "$(worker_ns "$k")" "$@" ;;
  *) echo "usage: $0 start|stop|status|bootstrap|env|pid N|host K|exec K COMMAND..." >&2; exit 2 ;;
esac
