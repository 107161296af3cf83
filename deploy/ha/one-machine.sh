#!/usr/bin/env bash
# one-machine.sh: ipledger's high-availability layout on ONE machine, on loopback only.
#
# What: 3 etcd 3.4 members (Patroni's store of who leads), 3 PostgreSQL 15 nodes managed by
# Patroni 3 in strict synchronous mode (a commit is acknowledged only once a standby has it, and
# only that standby may be promoted), HAProxy in front of PostgreSQL and of the ipledger nodes, and
# 3 ipledger nodes whose journal is in that PostgreSQL cluster: one holds the writer's lease, the
# others follow and serve reads.
#
# Why: to run and break the HA set-up (kill the ipledger writer, kill the PostgreSQL primary) on a
# laptop or one VM before spreading it over three hosts, which deploy/ha/patroni.yml, haproxy.cfg
# and ipledger-node.env describe. One machine is one failure domain: this is for trying and
# learning, not for production. The timings (etcd heartbeat, Patroni ttl, ipledger lease) are the
# ones tests/it/ha_cluster.rs measured stable on a loaded 2-core machine.
#
# Usage (from anywhere; DIR defaults to /tmp/ipledger-ha):
#   bash deploy/ha/one-machine.sh start  [DIR]   write configs into DIR (once), start everything, wait
#   bash deploy/ha/one-machine.sh status [DIR]   Patroni members, the ipledger writer, HAProxy servers
#   bash deploy/ha/one-machine.sh stop   [DIR]   stop everything; DIR (data, configs, logs) is kept
# `start` on a DIR that was stopped starts the same cluster again with its data; on a DIR where some
# processes still run (after a fault drill's kill -9) it starts only the missing ones.
#
# Needs: etcd and etcdctl 3.4, patroni 3 (patronictl), haproxy 2.6 (/usr/sbin is searched), the
# PostgreSQL 15 server binaries in /usr/lib/postgresql/15/bin (PG_BIN overrides), curl, python3,
# setsid, ss; and the ipledger binary: $IPLEDGER_BIN, else `ipledger` on PATH, else
# target/release/ipledger, else target/debug/ipledger of this repository.
# On Debian 12: apt-get install postgresql-15 etcd-server etcd-client patroni haproxy curl
#
# Fixed loopback ports (documented so that clients and examples can name them; `start` refuses if
# one is taken):
#   etcd clients 12379 22379 32379, peers 12380 22380 32380
#   PostgreSQL pg1..pg3 5441 5442 5443, their Patroni REST APIs 8008 8009 8010
#   HAProxy 5000   PostgreSQL read-write (follows the primary; the ipledger journal goes through it)
#   HAProxy 50061  ipledger writes (the node whose GET /healthz/writer answers 200)
#   HAProxy 50062  ipledger reads  (every node whose GET /healthz answers 200)
#   ipledger ipl1..ipl3 50051 50052 50053
# 50051-50062 lie in Linux's default ephemeral range (32768-60999): an outgoing connection may hold
# one as its source port for a moment, so `start` waits for such a port to clear before it binds it.
# HAProxy's stats socket is DIR/haproxy.sock. Every process logs to DIR/<name>.log and has its
# pid in DIR/<name>.pid (names: etcd1..3, pg1..3, haproxy, ipl1..3). DIR/admin.token holds the
# first admin's token (shared by the three nodes), DIR/signing-key.p8 the cluster's journal signing
# key (shared too: a node follows only groups signed by it), DIR/secrets.env the PostgreSQL
# passwords.
#
# As root, PostgreSQL and Patroni run as the `postgres` user (initdb and postgres refuse root) and
# DIR is chowned to it; the other processes run as the caller.
set -euo pipefail

readonly ETCD_CLIENT_PORTS=(12379 22379 32379)
readonly ETCD_PEER_PORTS=(12380 22380 32380)
readonly PG_PORTS=(5441 5442 5443)
readonly REST_PORTS=(8008 8009 8010)
readonly HAPROXY_PG_RW_PORT=5000
readonly IPL_WRITE_PORT=50061
readonly IPL_READ_PORT=50062
readonly IPL_PORTS=(50051 50052 50053)
readonly PG_NAMES=(pg1 pg2 pg3)
readonly IPL_NAMES=(ipl1 ipl2 ipl3)
# The ports above that lie in Linux's default ephemeral range, in sysctl's syntax (see wait_port_free).
readonly IPL_RESERVED_PORTS=50051-50053,50061-50062

# Patroni's leader key lives TTL s without renewal: a dead primary is replaced after about
# TTL + LOOP_WAIT s. Patroni requires LOOP_WAIT + 2 * RETRY_TIMEOUT <= TTL. Half the usual 20 s
# ttl, as measured stable by tests/it/ha_cluster.rs on a loaded 2-core machine.
readonly TTL_SECS=10 LOOP_WAIT_SECS=2 RETRY_TIMEOUT_SECS=3
# ipledger's writer lease: a killed writer is replaced within about 1.5 leases (tests/it/ha.rs).
readonly LEASE_MS=3000

# PostgreSQL's server programs: PG_BIN, else pg_config --bindir, else the newest Debian version.
PG_BIN=${PG_BIN:-$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
readonly PG_BIN
# The repository this script belongs to: where target/ and proto/ are, whatever the caller's cwd.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly REPO

usage() {
  echo "usage: bash $0 start|status|stop [DIR]   (DIR default /tmp/ipledger-ha)" >&2
  exit 2
}

die() {
  echo "one-machine.sh: $*" >&2
  exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# A secret as lowercase hex: safe unquoted in YAML, in a libpq URL and in an SQL literal.
hex_secret() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

# --- processes --------------------------------------------------------------------------------

# The pid recorded for KEY if that process still runs and is ours: its command line names DIR, so
# a stale pid file whose pid was reused by an unrelated process is never signalled.
pid_of() {
  local file="$DIR/$1.pid" pid
  [ -s "$file" ] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  # A zombie has exited already.
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  # An empty command line: the process is between its shell and exec (launch), still ours.
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  [ -z "$cmdline" ] || grep -F -- "$DIR/" <<<"$cmdline" >/dev/null || return 1
  echo "$pid"
}

alive() { pid_of "$1" >/dev/null; }

# True (saying so) if KEY runs already: `start` on a layout of which some processes were stopped or
# killed (as in a fault drill) starts only the missing ones.
running_already() {
  local pid
  pid=$(pid_of "$1") || return 1
  echo "  $1 is running already (pid $pid)"
}

# Starts KEY's command in a session of its own (setsid): it outlives this script, leads its own
# process group (so `stop` signals it and its children at once) and gets no terminal signals. The
# pid is written by the process itself after setsid and before exec, so it is the session's.
launch() {
  local key=$1
  shift
  rm -f "$DIR/$key.pid"
  echo "==== $(date '+%F %T') started by one-machine.sh: $*" >>"$DIR/$key.log"
  # shellcheck disable=SC2016 # expanded by the inner bash, on purpose
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$DIR/$key.pid" "$@" >>"$DIR/$key.log" 2>&1 </dev/null &
  local i
  for i in $(seq 50); do
    if [ -s "$DIR/$key.pid" ]; then
      echo "  started $key (pid $(<"$DIR/$key.pid"), log $DIR/$key.log)"
      return 0
    fi
    sleep 0.1
  done
  die "$key did not start; see $DIR/$key.log"
}

# The last lines of some logs, for a failure message.
log_tails() {
  local key
  for key in "$@"; do
    echo "---- last 20 lines of $DIR/$key.log" >&2
    tail -n 20 "$DIR/$key.log" >&2 2>/dev/null || echo "(no log)" >&2
  done
}

# wait_until WHAT SECONDS "KEYS" COMMAND...: polls COMMAND every half second for at most SECONDS.
# KEYS are the processes the wait depends on: if one of them exits the wait fails at once, and on
# failure their logs are named (with their last lines). Every wait in this script is bounded.
wait_until() {
  local what=$1 seconds=$2 keys=$3 key
  shift 3
  local deadline=$((SECONDS + seconds)) started=$SECONDS
  while ! "$@" >/dev/null 2>&1; do
    for key in $keys; do
      if ! alive "$key"; then
        log_tails "$key"
        die "$key exited while waiting for $what; see $DIR/$key.log (then: bash $0 stop $DIR)"
      fi
    done
    if [ "$SECONDS" -ge "$deadline" ]; then
      # shellcheck disable=SC2086 # keys are words on purpose
      log_tails $keys
      die "timed out after ${seconds}s waiting for $what; see $(for key in $keys; do printf '%s ' "$DIR/$key.log"; done)(then: bash $0 stop $DIR)"
    fi
    sleep 0.5
  done
  echo "  $what: $((SECONDS - started))s"
}

# Sends SIGNAL to KEY's whole process group, waits up to SECONDS for it to exit; true if it did.
signal_and_wait() {
  local key=$1 sig=$2 seconds=$3 pid i
  pid=$(pid_of "$key") || return 0
  kill "-$sig" -- "-$pid" 2>/dev/null || true
  for i in $(seq $((seconds * 10))); do
    alive "$key" || return 0
    sleep 0.1
  done
  return 1
}

# stop_processes SECONDS KEY...: SIGTERM (a clean shutdown) to each at once, then SIGKILL to any
# still there after SECONDS.
stop_processes() {
  local seconds=$1 key pid started=$SECONDS deadline left running=()
  shift
  for key in "$@"; do
    if pid=$(pid_of "$key"); then
      kill -TERM -- "-$pid" 2>/dev/null || true
      running+=("$key")
    else
      rm -f "$DIR/$key.pid"
    fi
  done
  [ ${#running[@]} -gt 0 ] || return 0
  set -- "${running[@]}"
  deadline=$((SECONDS + seconds))
  while :; do
    left=()
    for key in "$@"; do alive "$key" && left+=("$key"); done
    [ ${#left[@]} -eq 0 ] || [ "$SECONDS" -ge "$deadline" ] && break
    sleep 0.2
  done
  for key in "${left[@]}"; do
    echo "  $key did not stop within ${seconds}s of SIGTERM: SIGKILL (see $DIR/$key.log)"
    signal_and_wait "$key" KILL 10 || die "$key survived SIGKILL; see $DIR/$key.log"
  done
  for key in "$@"; do rm -f "$DIR/$key.pid"; done
  echo "  stopped $* in $((SECONDS - started))s"
}

# The sockets other than listeners and TIME-WAIT whose LOCAL port is PORT: outgoing connections the
# kernel gave PORT as their source port. 50051-50062 lie inside Linux's default ephemeral range
# (net.ipv4.ip_local_port_range, 32768-60999), so on a busy machine a short-lived connection (or a
# pooled one, for long) can hold one of them; while it does nothing can listen there.
port_held_by() {
  ss -Htanp 2>/dev/null | awk -v p="$1" '$1 != "TIME-WAIT" && $1 != "LISTEN" {
    n = split($4, a, ":"); if (a[n] == p) print "  " $1, $4, "->", $5, $6 }'
}

port_listened() {
  ss -Hltn 2>/dev/null | awk -v p="$1" '{n = split($4, a, ":"); if (a[n] == p) found = 1} END {exit !found}'
}

# Waits (up to 20 s) until PORT can be listened on: refuses at once if something listens there,
# waits while an outgoing connection holds it as its source port (those are mostly short-lived).
wait_port_free() {
  local port=$1 owner=$2 deadline=$((SECONDS + 20)) held
  if port_listened "$port"; then
    die "port $port (for $owner) is taken: $(ss -Hltnp "sport = :$port" 2>/dev/null | awk '{print $4, $6}' | head -n 1)"
  fi
  while held=$(port_held_by "$port") && [ -n "$held" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "port $port (for $owner) has been the source port of these connections for 20 s:" >&2
      echo "$held" >&2
      echo "It lies in the ephemeral range ($(tr -s '\t ' - </proc/sys/net/ipv4/ip_local_port_range)) the kernel takes source ports from; to keep this layout's ports out of it (as root): sysctl -w net.ipv4.ip_local_reserved_ports=$IPL_RESERVED_PORTS" >&2
      die "port $port is in use (then: bash $0 stop $DIR)"
    fi
    sleep 0.5
  done
}

# launch_listening KEY "PORTS" COMMAND...: launch, then wait until the process listens on every
# one of PORTS. A process that exits because a port was taken at the moment it bound (an outgoing
# connection got it as source port after the check) is started again, at most 3 times.
launch_listening() {
  local key=$1 ports=$2 attempt port lines started listening
  shift 2
  for attempt in 1 2 3; do
    for port in $ports; do wait_port_free "$port" "$key"; done
    # Where this attempt's output begins in the log, to look for its bind error only.
    lines=0
    [ ! -f "$DIR/$key.log" ] || lines=$(wc -l <"$DIR/$key.log")
    launch "$key" "$@"
    started=$SECONDS
    while alive "$key"; do
      listening=yes
      for port in $ports; do port_listened "$port" || listening=no; done
      [ $listening = yes ] && return 0
      [ $((SECONDS - started)) -lt 60 ] || break
      sleep 0.2
    done
    if alive "$key"; then
      log_tails "$key"
      die "$key does not listen on $ports after 60 s; see $DIR/$key.log (then: bash $0 stop $DIR)"
    fi
    if tail -n +"$((lines + 1))" "$DIR/$key.log" | grep -E 'Address already in use|cannot bind' >/dev/null; then
      echo "  $key: a port was taken by an outgoing connection as it bound (attempt $attempt of 3)"
      continue
    fi
    log_tails "$key"
    die "$key exited at start; see $DIR/$key.log (then: bash $0 stop $DIR)"
  done
  log_tails "$key"
  die "$key could not bind $ports in 3 attempts; see $DIR/$key.log (then: bash $0 stop $DIR)"
}

# --- HTTP, Patroni, HAProxy -------------------------------------------------------------------

# The HTTP status of GET PATH on a loopback port, 000 when nothing answers (HTTP/1.1, as the
# ipledger health endpoints are specified).
http_status() {
  curl -s -o /dev/null -w '%{http_code}' --http1.1 --max-time 3 "http://127.0.0.1:$1$2" || true
}

http_ok() { [ "$(http_status "$1" "$2")" = 200 ]; }

# Patroni's member list (`GET /cluster` of the first REST API that answers) as lines
# "name role state" (role: leader, sync_standby, replica).
patroni_members() {
  local port body
  for port in "${REST_PORTS[@]}"; do
    if body=$(curl -sf --max-time 3 "http://127.0.0.1:$port/cluster"); then
      python3 -c '
import json, sys
for m in json.loads(sys.argv[1]).get("members", []):
    print(m.get("name", "?"), m.get("role", "?"), m.get("state", "?"))' "$body"
      return 0
    fi
  done
  return 1
}

# True once Patroni lists a running leader that answers /primary and a synchronous standby: in
# strict synchronous mode the primary commits nothing before that.
leader_and_sync_listed() {
  local members leader i
  members=$(patroni_members) || return 1
  leader=$(awk '($2 == "leader" || $2 == "master") && $3 == "running" {print $1}' <<<"$members")
  [ -n "$leader" ] || return 1
  awk '$2 == "sync_standby" && ($3 == "running" || $3 == "streaming") {found = 1} END {exit !found}' <<<"$members" || return 1
  for i in 0 1 2; do
    [ "${PG_NAMES[$i]}" = "$leader" ] && http_ok "${REST_PORTS[$i]}" /primary && return 0
  done
  return 1
}

patroni_leader() {
  patroni_members 2>/dev/null | awk '$2 == "leader" || $2 == "master" {print $1; exit}'
}

# HAProxy's `show stat` from its stats socket as lines "listen server status".
haproxy_stat() {
  python3 - "$DIR/haproxy.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(3)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
lines = data.decode().splitlines()
header = lines[0].lstrip("# ").split(",")
status = header.index("status")
for line in lines[1:]:
    cells = line.split(",")
    if len(cells) > status and cells[1] not in ("FRONTEND", "BACKEND"):
        print(cells[0], cells[1], cells[status])
PY
}

# The servers of one HAProxy listen section that are UP, space-separated.
haproxy_up() {
  haproxy_stat 2>/dev/null | awk -v l="$1" '$1 == l && $3 ~ /^UP/ {printf "%s ", $2}'
}

haproxy_routes_pg_to_leader() {
  local leader
  leader=$(patroni_leader)
  [ -n "$leader" ] && [ "$(haproxy_up pg_rw)" = "$leader " ]
}

# --- configuration ----------------------------------------------------------------------------

# Every port this layout listens on: "port process use", for the check before `start`.
all_ports() {
  local i
  for i in 0 1 2; do
    echo "${ETCD_CLIENT_PORTS[$i]} etcd$((i + 1)) etcd-clients"
    echo "${ETCD_PEER_PORTS[$i]} etcd$((i + 1)) etcd-peers"
    echo "${PG_PORTS[$i]} ${PG_NAMES[$i]} postgresql"
    echo "${REST_PORTS[$i]} ${PG_NAMES[$i]} patroni-rest"
    echo "${IPL_PORTS[$i]} ${IPL_NAMES[$i]} ipledger"
  done
  echo "$HAPROXY_PG_RW_PORT haproxy postgresql-read-write"
  echo "$IPL_WRITE_PORT haproxy ipledger-writes"
  echo "$IPL_READ_PORT haproxy ipledger-reads"
}

check_ports_free() {
  local listening taken="" port key use
  # Every listening TCP socket's port, whatever its address (0.0.0.0:5000 blocks 127.0.0.1:5000).
  listening=$(ss -Hltn | awk '{n = split($4, a, ":"); print a[n]}' | sort -u)
  while read -r port key use; do
    # A process of this layout still running keeps its ports (start brings back only the others).
    alive "$key" && continue
    if grep -qx -- "$port" <<<"$listening"; then
      taken+="  $port (for $key, $use): $(ss -Hltnp "sport = :$port" 2>/dev/null | awk '{print $4, $6}' | head -n 1)"$'\n'
    fi
  done < <(all_ports)
  if [ -n "$taken" ]; then
    printf 'one-machine.sh: these fixed ports are taken, so nothing was started:\n%s' "$taken" >&2
    echo "Stop what listens there (or, if it is this layout in another DIR: bash $0 stop THAT_DIR)." >&2
    exit 1
  fi
}

find_ipledger() {
  local candidate
  if [ -n "${IPLEDGER_BIN:-}" ]; then
    [ -x "$IPLEDGER_BIN" ] || die "IPLEDGER_BIN=$IPLEDGER_BIN is not an executable file"
    candidate=$IPLEDGER_BIN
  elif candidate=$(command -v ipledger); then
    :
  elif [ -x "$REPO/target/release/ipledger" ]; then
    candidate=$REPO/target/release/ipledger
  elif [ -x "$REPO/target/debug/ipledger" ]; then
    candidate=$REPO/target/debug/ipledger
  else
    die "no ipledger binary: set IPLEDGER_BIN, put ipledger on PATH, or run 'cargo build --release' in $REPO"
  fi
  # Absolute: the nodes outlive this script and its working directory.
  readlink -f "$candidate"
}

find_haproxy() {
  # Debian installs it in /usr/sbin, which is not on a normal user's PATH.
  if [ -x /usr/sbin/haproxy ]; then echo /usr/sbin/haproxy; else command -v haproxy || die "haproxy is not installed"; fi
}

check_tools() {
  local tool
  for tool in etcd etcdctl patroni patronictl curl python3 setsid ss openssl; do
    command -v "$tool" >/dev/null || die "$tool is not installed (see the header of $0)"
  done
  if [ ! -x "$PG_BIN/postgres" ] || [ ! -x "$PG_BIN/psql" ]; then
    die "no PostgreSQL server programs in '$PG_BIN' (install postgresql, or set PG_BIN)"
  fi
  if is_root; then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to run PostgreSQL and Patroni as"
  fi
}

# The passwords of the PostgreSQL roles, made once per DIR and kept in DIR/secrets.env (owner-only)
# so that a restart on the same data uses the same ones.
load_secrets() {
  if [ ! -s "$DIR/secrets.env" ]; then
    (
      umask 077
      {
        echo "# PostgreSQL passwords of this cluster (made by one-machine.sh start; keep private)"
        echo "PG_SUPERUSER_PASSWORD=$(hex_secret 16)"
        echo "PG_REPLICATION_PASSWORD=$(hex_secret 16)"
        echo "PG_REWIND_PASSWORD=$(hex_secret 16)"
        echo "IPLEDGER_PG_PASSWORD=$(hex_secret 16)"
      } >"$DIR/secrets.env"
    )
  fi
  # shellcheck disable=SC1091 # made above
  . "$DIR/secrets.env"
}

# The first admin's token, shared by the three nodes: whichever node first holds the writer's
# lease on the empty journal creates the admin with it. The format of `ipledger`'s own tokens:
# `ipl_` and 43 URL-safe base64 characters of 32 random bytes, without padding.
make_admin_token() {
  [ -s "$DIR/admin.token" ] && return 0
  local token
  token="ipl_$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')"
  [ "${#token}" -eq 47 ] || die "made a malformed admin token (${#token} characters)"
  (
    umask 077
    echo "$token" >"$DIR/admin.token"
  )
}

# The cluster's journal signing key, shared by the three nodes (--signing-key): the writer signs
# every group it appends with it, and a follower applies only groups it signed, so rows written
# into the journal's table by anyone else are refused. Ed25519 in PKCS#8 DER, owner-only.
make_signing_key() {
  [ -s "$DIR/signing-key.p8" ] && return 0
  (
    umask 077
    openssl genpkey -algorithm ed25519 -outform DER -out "$DIR/signing-key.p8"
  )
}

# A config file is written only when missing: a restart keeps the cluster's own files (and any
# edit made to them); delete one to have it written again from the template below.
write_config() {
  local file=$1
  if [ -e "$file" ]; then
    # Read the template anyway: the writer of the pipe must not die of SIGPIPE (pipefail).
    cat >/dev/null
    echo "  keeping $file"
  else
    (
      umask 077
      cat >"$file"
    )
    echo "  wrote $file"
  fi
}

patroni_config() {
  local i=$1 name=${PG_NAMES[$1]} hosts
  hosts=$(printf '127.0.0.1:%s, ' "${ETCD_CLIENT_PORTS[@]}")
  hosts=${hosts%, }
  cat <<EOF
# Patroni 3 configuration of $name, written by deploy/ha/one-machine.sh (loopback only). The
# multi-host version with every setting explained is deploy/ha/patroni.yml.
scope: ipledger-one-machine
name: $name
log: {level: INFO}
restapi: {listen: "127.0.0.1:${REST_PORTS[$i]}", connect_address: "127.0.0.1:${REST_PORTS[$i]}"}
# etcd 3.4 serves only the v3 API by default.
etcd3: {hosts: [$hosts]}
watchdog: {mode: "off"}
bootstrap:
  dcs:
    # A dead primary is replaced after about ttl + loop_wait; loop_wait + 2 x retry_timeout <= ttl.
    ttl: $TTL_SECS
    loop_wait: $LOOP_WAIT_SECS
    retry_timeout: $RETRY_TIMEOUT_SECS
    maximum_lag_on_failover: 1048576
    # A commit waits for the synchronous standby, and only it may be promoted; strict: with no
    # standby left commits wait rather than being acknowledged by a primary alone, which a later
    # failover would lose (ipledger would have answered those writes).
    synchronous_mode: true
    synchronous_mode_strict: true
    synchronous_node_count: 1
    postgresql:
      use_pg_rewind: true
      use_slots: true
      # wal_retrieve_retry_interval 1s: a standby whose first try to stream from a newly promoted
      # primary fails retries after 1 s instead of 5 (in strict mode the new primary's commits
      # wait for it). shared_buffers small: three servers share one machine.
      parameters: {synchronous_commit: "on", wal_log_hints: "on", shared_buffers: 64MB, wal_retrieve_retry_interval: 1s}
  initdb: [{encoding: UTF8}, {locale: C.UTF-8}, data-checksums]
postgresql:
  listen: "127.0.0.1:${PG_PORTS[$i]}"
  connect_address: "127.0.0.1:${PG_PORTS[$i]}"
  data_dir: "$DIR/$name"
  bin_dir: "$PG_BIN"
  pgpass: "$DIR/pgpass-$name"
  # Patroni, replication, pg_rewind and ipledger all connect over TCP with passwords. The Unix
  # socket (in DIR, owner-only) admits an OS user only as the role of the same name: as root,
  # runuser -u postgres -- psql -h DIR -p ${PG_PORTS[$i]}
  pg_hba:
    - local all all peer
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
  authentication:
    superuser: {username: postgres, password: "$PG_SUPERUSER_PASSWORD"}
    replication: {username: replicator, password: "$PG_REPLICATION_PASSWORD"}
    rewind: {username: rewinder, password: "$PG_REWIND_PASSWORD"}
  parameters: {unix_socket_directories: "$DIR"}
EOF
}

haproxy_config() {
  local i
  cat <<EOF
# HAProxy for deploy/ha/one-machine.sh (loopback only). The multi-host version, with TLS to the
# ipledger nodes, is deploy/ha/haproxy.cfg. Plain TCP passthrough everywhere: HAProxy only decides
# where a connection goes, from HTTP health checks.
global
    # In the foreground (-db) server state changes go to stderr, that is haproxy.log.
    stats socket $DIR/haproxy.sock mode 600 level admin

defaults
    mode tcp
    timeout connect 2s
    timeout check 2s

# PostgreSQL read-write: the primary only (Patroni answers OPTIONS /primary with 200 there).
listen pg_rw
    bind 127.0.0.1:$HAPROXY_PG_RW_PORT
    # The journal's connections sit idle while the ledger is quiet, and a connection found lost at
    # the next append is a storage failure to ipledger: no idle cut-off short of a day.
    timeout client 24h
    timeout server 24h
    option clitcpka
    option srvtcpka
    option httpchk OPTIONS /primary
    http-check expect status 200
    # Marked down after two failed checks; then its open connections are cut (shutdown-sessions):
    # a demoted primary must not keep its clients.
    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
EOF
  for i in 0 1 2; do
    echo "    server ${PG_NAMES[$i]} 127.0.0.1:${PG_PORTS[$i]} check port ${REST_PORTS[$i]}"
  done
  local listen port path balance
  for listen in ipledger_write ipledger_read; do
    if [ "$listen" = ipledger_write ]; then
      port=$IPL_WRITE_PORT path=/healthz/writer balance=""
    else
      # HTTP/2 carries all of a client's calls on one connection: spread connections evenly.
      port=$IPL_READ_PORT path=/healthz balance="    balance leastconn"$'\n'
    fi
    cat <<EOF

# ipledger: $path answers 200 on $([ "$listen" = ipledger_write ] && echo "the node holding the writer's lease" || echo "every node that serves reads").
listen $listen
    bind 127.0.0.1:$port
    # gRPC streams (imports, exports, change feeds) stay open long; the server pings every 30 s.
    timeout client 1h
    timeout server 1h
${balance}    option httpchk
    # HTTP/1.1 with a Host header, as the endpoint is specified.
    http-check send meth GET uri $path ver HTTP/1.1 hdr Host ipledger
    http-check expect status 200
    # gRPC's answer to an unknown path is HTTP 200 with grpc-status 12: not a healthy node.
    http-check expect ! hdr name grpc-status
    # As for pg_rw, and checked twice as often: a new writer is routed to one check after it wins.
    default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
EOF
    for i in 0 1 2; do
      echo "    server ${IPL_NAMES[$i]} 127.0.0.1:${IPL_PORTS[$i]} check"
    done
  done
}

# --- start ------------------------------------------------------------------------------------

start_etcd() {
  local i=$1 key="etcd$(($1 + 1))" cluster="" j state=new
  running_already "$key" && return 0
  for j in 0 1 2; do cluster+="e$((j + 1))=http://127.0.0.1:${ETCD_PEER_PORTS[$j]},"; done
  # A member with data rejoins with it (etcd then ignores the initial-cluster flags anyway).
  [ -d "$DIR/$key/member" ] && state=existing
  # A slower heartbeat than etcd's 100 ms suits a loaded machine running nine servers.
  launch "$key" etcd --name "e$((i + 1))" --data-dir "$DIR/$key" \
    --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$i]}" \
    --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[$i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[$i]}" \
    --initial-cluster "${cluster%,}" --initial-cluster-state "$state" \
    --initial-cluster-token ipledger-one-machine \
    --heartbeat-interval 250 --election-timeout 2500
}

start_patroni() {
  local name=${PG_NAMES[$1]}
  running_already "$name" && return 0
  if is_root; then
    launch "$name" setpriv --reuid=postgres --regid=postgres --init-groups patroni "$DIR/$name.yml"
  else
    launch "$name" patroni "$DIR/$name.yml"
  fi
}

all_etcd_healthy() {
  local port
  for port in "${ETCD_CLIENT_PORTS[@]}"; do http_ok "$port" /health || return 1; done
}

all_members_running() {
  [ "$(patroni_members | awk '$3 == "running" || $3 == "streaming"' | wc -l)" -eq 3 ]
}

psql_rw() {
  PGPASSWORD=$PG_SUPERUSER_PASSWORD PGCONNECT_TIMEOUT=5 timeout 60 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$HAPROXY_PG_RW_PORT" -U postgres -d postgres
}

# ipledger's own role and database, as deploy/ha/patroni.yml says to make them (not the superuser:
# ipledger needs only its table). Once, through HAProxy to the primary; the password goes through
# stdin, never a command line. Idempotent: a restart finds both.
create_ipledger_database() {
  psql_rw <<SQL
SELECT 'CREATE ROLE ipledger LOGIN PASSWORD ''$IPLEDGER_PG_PASSWORD'''
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ipledger')\gexec
SELECT 'CREATE DATABASE ipledger OWNER ipledger'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'ipledger')\gexec
SQL
}

start_ipledger() {
  local i=$1 name=${IPL_NAMES[$1]} address="127.0.0.1:${IPL_PORTS[$1]}"
  running_already "$name" && return 0
  # The journal URL carries a password: handed over in the environment (IPLEDGER_JOURNAL, readable
  # only by the process's owner), not as --journal, which every user sees in the process list.
  # connect_timeout: a connection attempt during a failover fails fast and is retried;
  # target_session_attrs: refuse a node that is no longer the primary even before HAProxy notices.
  # NO_COLOR: the log is a file, to be read with less or grep, not a terminal.
  NO_COLOR=1 IPLEDGER_JOURNAL="postgres://ipledger:$IPLEDGER_PG_PASSWORD@127.0.0.1:$HAPROXY_PG_RW_PORT/ipledger?connect_timeout=5&target_session_attrs=read-write&application_name=$name" \
    launch_listening "$name" "${IPL_PORTS[$i]}" "$IPLEDGER" serve --listen "$address" --advertise "$address" \
    --lease-ms "$LEASE_MS" --data-dir "$DIR/$name" --admin-token-file "$DIR/admin.token" \
    --signing-key "$DIR/signing-key.p8"
}

one_ipledger_writer() {
  local port writers=0
  for port in "${IPL_PORTS[@]}"; do http_ok "$port" /healthz/writer && writers=$((writers + 1)); done
  [ "$writers" -eq 1 ]
}

all_ipledger_serving() {
  local port
  for port in "${IPL_PORTS[@]}"; do http_ok "$port" /healthz || return 1; done
}

haproxy_routes_ipledger() {
  [ "$(haproxy_up ipledger_write | wc -w)" -eq 1 ] && [ "$(haproxy_up ipledger_read | wc -w)" -eq 3 ]
}

# The server accepts the admin token made here: an authenticated read through the writer port (the
# JSON API on the gRPC port: no gRPC client needed). 200, not 401.
admin_token_accepted() {
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
    -H "authorization: Bearer $(<"$DIR/admin.token")" -H 'content-type: application/json' -d '{}' \
    "http://127.0.0.1:$IPL_WRITE_PORT/api/ipledger.v1.ExposureService/GetExposure")" = 200 ]
}

cmd_start() {
  check_tools
  IPLEDGER=$(find_ipledger)
  local key already=""
  for key in etcd1 etcd2 etcd3 "${PG_NAMES[@]}" haproxy "${IPL_NAMES[@]}"; do
    [ -d "$DIR" ] && alive "$key" && already+=" $key"
  done
  check_ports_free
  # PostgreSQL's socket path (DIR/.s.PGSQL.5441) must fit in 107 bytes.
  [ "${#DIR}" -le 90 ] || die "DIR is too long for PostgreSQL's socket path (at most 90 characters): $DIR"

  local began=$SECONDS fresh=yes
  [ -d "$DIR/pg1" ] && fresh=no
  echo "Starting ipledger's HA layout in $DIR ($([ $fresh = yes ] && echo "new cluster" || echo "existing data"); ipledger: $IPLEDGER)"
  [ -z "$already" ] || echo "Running already:$already; starting the others."
  mkdir -p "$DIR"
  chmod 700 "$DIR"
  load_secrets
  make_admin_token
  make_signing_key
  local i
  for i in 0 1 2; do patroni_config "$i" | write_config "$DIR/${PG_NAMES[$i]}.yml"; done
  haproxy_config | write_config "$DIR/haproxy.cfg"
  if is_root; then
    # Patroni (as postgres) reads its config and creates the data directories and its password
    # files in DIR; root (this script, etcd, HAProxy, ipledger) can use DIR whoever owns it.
    chown postgres:postgres "$DIR" "$DIR"/pg?.yml
  fi
  local haproxy
  haproxy=$(find_haproxy)
  "$haproxy" -c -q -f "$DIR/haproxy.cfg" || die "HAProxy refuses $DIR/haproxy.cfg"

  echo "etcd: 3 members"
  for i in 0 1 2; do start_etcd "$i"; done
  wait_until "every etcd member to answer /health" 60 "etcd1 etcd2 etcd3" all_etcd_healthy

  echo "Patroni + PostgreSQL 15: 3 nodes"
  if [ $fresh = yes ]; then
    # pg1 bootstraps the cluster alone (initdb); the others then copy it with pg_basebackup.
    start_patroni 0
    wait_until "pg1 to initialise the cluster and lead it (/primary on :${REST_PORTS[0]})" 180 pg1 http_ok "${REST_PORTS[0]}" /primary
    start_patroni 1
    start_patroni 2
  else
    # Existing data: the three elect a leader among themselves (the most advanced one).
    for i in 0 1 2; do start_patroni "$i"; done
  fi
  wait_until "a PostgreSQL leader and a synchronous standby" 240 "pg1 pg2 pg3" leader_and_sync_listed
  # The third member may still be copying or catching up; ipledger needs only the two above.
  wait_until "all three PostgreSQL members running" 120 "pg1 pg2 pg3" all_members_running

  echo "HAProxy"
  running_already haproxy || launch_listening haproxy "$HAPROXY_PG_RW_PORT $IPL_WRITE_PORT $IPL_READ_PORT" "$haproxy" -db -f "$DIR/haproxy.cfg"
  wait_until "HAProxy's :$HAPROXY_PG_RW_PORT to route to the leader" 30 haproxy haproxy_routes_pg_to_leader
  wait_until "ipledger's role and database in PostgreSQL (through :$HAPROXY_PG_RW_PORT)" 60 "haproxy pg1 pg2 pg3" create_ipledger_database

  echo "ipledger: 3 nodes"
  for i in 0 1 2; do start_ipledger "$i"; done
  wait_until "one ipledger node to hold the writer's lease (/healthz/writer 200)" 120 "ipl1 ipl2 ipl3" one_ipledger_writer
  wait_until "every ipledger node to serve (/healthz 200)" 120 "ipl1 ipl2 ipl3" all_ipledger_serving
  wait_until "HAProxy to route :$IPL_WRITE_PORT to the writer and :$IPL_READ_PORT to all three" 30 "haproxy ipl1 ipl2 ipl3" haproxy_routes_ipledger
  wait_until "the admin token in $DIR/admin.token to be accepted" 30 "ipl1 ipl2 ipl3" admin_token_accepted

  echo "Up in $((SECONDS - began))s."
  echo
  print_layout
  print_examples
}

# --- status, stop -----------------------------------------------------------------------------

print_layout() {
  local i pid writer=""
  echo "What runs where (logs DIR/<name>.log, pids DIR/<name>.pid; DIR=$DIR):"
  for i in 0 1 2; do
    pid=$(pid_of "etcd$((i + 1))" || echo -)
    printf '  %-8s pid %-7s etcd member e%s   clients 127.0.0.1:%s peers 127.0.0.1:%s\n' "etcd$((i + 1))" "$pid" "$((i + 1))" "${ETCD_CLIENT_PORTS[$i]}" "${ETCD_PEER_PORTS[$i]}"
  done
  for i in 0 1 2; do
    pid=$(pid_of "${PG_NAMES[$i]}" || echo -)
    printf '  %-8s pid %-7s Patroni REST 127.0.0.1:%s, PostgreSQL 127.0.0.1:%s, data %s\n' "${PG_NAMES[$i]}" "$pid" "${REST_PORTS[$i]}" "${PG_PORTS[$i]}" "$DIR/${PG_NAMES[$i]}"
  done
  pid=$(pid_of haproxy || echo -)
  printf '  %-8s pid %-7s PostgreSQL read-write 127.0.0.1:%s, ipledger writes 127.0.0.1:%s, reads 127.0.0.1:%s, stats %s\n' haproxy "$pid" "$HAPROXY_PG_RW_PORT" "$IPL_WRITE_PORT" "$IPL_READ_PORT" "$DIR/haproxy.sock"
  for i in 0 1 2; do
    pid=$(pid_of "${IPL_NAMES[$i]}" || echo -)
    http_ok "${IPL_PORTS[$i]}" /healthz/writer && writer=" (writer)" || writer=""
    printf '  %-8s pid %-7s ipledger gRPC 127.0.0.1:%s, data %s%s\n' "${IPL_NAMES[$i]}" "$pid" "${IPL_PORTS[$i]}" "$DIR/${IPL_NAMES[$i]}" "$writer"
  done
  echo "PostgreSQL leader: $(patroni_leader || true); passwords in $DIR/secrets.env"
  echo "Admin token file: $DIR/admin.token"
}

print_examples() {
  local follower="" i
  for i in 0 1 2; do
    if ! http_ok "${IPL_PORTS[$i]}" /healthz/writer; then follower=${IPL_PORTS[$i]}; break; fi
  done
  cat <<EOF

Try it (from $REPO, for proto/ and tests/examples/):
  cd $REPO
  export TOKEN=\$(cat $DIR/admin.token)
  ipl() { local t=\$1; shift; buf curl --protocol grpc --http2-prior-knowledge --schema proto -H "authorization: Bearer \$t" "\$@"; }
  # A bank's token, through the writer port (HAProxy :$IPL_WRITE_PORT follows the writer):
  BANK=\$(ipl "\$TOKEN" -d '{"name": "icbc-hangzhou", "role": "BANK", "creditCode": "914403001922038216"}' \\
    http://127.0.0.1:$IPL_WRITE_PORT/ipledger.v1.AdminService/CreateToken | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  # Register as that bank; -v prints the response header x-ipledger-sequence (the write's journal entry):
  ipl "\$BANK" -v -d @tests/examples/register.json http://127.0.0.1:$IPL_WRITE_PORT/ipledger.v1.PledgeService/RegisterPledge
  # Read your write on a follower (:$follower) or any reader (HAProxy :$IPL_READ_PORT), once it has that entry:
  ipl "\$BANK" -H "x-ipledger-min-sequence: SEQ" -d '{"regionCode": "330108"}' http://127.0.0.1:$follower/ipledger.v1.ExposureService/GetExposure
  ipl "\$BANK" -H "x-ipledger-min-sequence: SEQ" -d '{"regionCode": "330108"}' http://127.0.0.1:$IPL_READ_PORT/ipledger.v1.ExposureService/GetExposure
  # A write sent to a follower is refused with UNAVAILABLE, reason NOT_WRITER, naming the writer.

Break it:
  bash $0 status $DIR       # which node writes, the PostgreSQL leader, HAProxy's routing
  # If ipl1 writes: another node takes the lease once it expires (lease $((LEASE_MS / 1000)) s), and HAProxy
  # :$IPL_WRITE_PORT follows it.
  kill -9 \$(cat $DIR/ipl1.pid)
  # If pg1 leads, its host "crashes": Patroni and postmaster together (the postmaster alone would be
  # restarted in place). The synchronous standby is promoted after about ttl + loop_wait = $((TTL_SECS + LOOP_WAIT_SECS)) s,
  # HAProxy :$HAPROXY_PG_RW_PORT follows it and ipledger's writes resume.
  kill -9 \$(cat $DIR/pg1.pid) \$(head -n 1 $DIR/pg1/postmaster.pid)
  patronictl -c $DIR/pg1.yml list
  bash $0 start $DIR        # starts again only what was killed (a PostgreSQL node rejoins as a replica)
  bash $0 stop $DIR         # stop everything (DIR is kept); start again with: bash $0 start $DIR
EOF
}

cmd_status() {
  [ -d "$DIR" ] || die "no $DIR: nothing was started there"
  local key i code writer pid
  echo "Processes (DIR=$DIR):"
  for key in etcd1 etcd2 etcd3 "${PG_NAMES[@]}" haproxy "${IPL_NAMES[@]}"; do
    if pid=$(pid_of "$key"); then
      printf '  %-8s running, pid %s\n' "$key" "$pid"
    else
      printf '  %-8s not running\n' "$key"
    fi
  done
  echo
  echo "etcd:"
  etcdctl --dial-timeout 2s --command-timeout 3s \
    --endpoints "$(printf 'http://127.0.0.1:%s,' "${ETCD_CLIENT_PORTS[@]}" | sed 's/,$//')" endpoint health 2>&1 | sed 's/^/  /' || true
  echo
  echo "Patroni (patronictl -c $DIR/pg1.yml list):"
  timeout 20 patronictl -c "$DIR/pg1.yml" list 2>&1 | sed 's/^/  /' || true
  echo
  echo "ipledger nodes:"
  for i in 0 1 2; do
    code=$(http_status "${IPL_PORTS[$i]}" /healthz)
    writer=$(curl -s --http1.1 --max-time 3 "http://127.0.0.1:${IPL_PORTS[$i]}/healthz/writer" || true)
    printf '  %s 127.0.0.1:%s  /healthz %s  /healthz/writer: %s\n' "${IPL_NAMES[$i]}" "${IPL_PORTS[$i]}" "$code" "${writer:-no answer}"
  done
  echo
  echo "HAProxy servers (from $DIR/haproxy.sock; UP means routed to: pg_rw only the primary,"
  echo "ipledger_write only the writer, ipledger_read every serving node):"
  if alive haproxy; then
    local listen
    for listen in pg_rw ipledger_write ipledger_read; do
      printf '  %-15s :%-5s %s\n' "$listen" \
        "$(case $listen in pg_rw) echo "$HAPROXY_PG_RW_PORT" ;; ipledger_write) echo "$IPL_WRITE_PORT" ;; *) echo "$IPL_READ_PORT" ;; esac)" \
        "$(haproxy_stat 2>/dev/null | awk -v l="$listen" '$1 == l {printf "%s %s  ", $2, $3}')"
    done
  else
    echo "  HAProxy is not running"
  fi
}

# Makes sure node I's PostgreSQL is gone: Patroni stops it when it gets SIGTERM, but PostgreSQL
# runs in a session of its own, so a Patroni that was killed leaves it running.
stop_postmaster() {
  local name=${PG_NAMES[$1]} pid
  [ -s "$DIR/$name/postmaster.pid" ] || return 0
  pid=$(head -n 1 "$DIR/$name/postmaster.pid")
  # Only a postmaster on this data directory: the file outlives its process.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -F -- "$DIR/$name" >/dev/null || return 0
  wait_gone "$pid" 5 && return 0
  echo "  $name's postmaster $pid outlived its Patroni: fast shutdown (SIGINT)"
  kill -INT "$pid" 2>/dev/null || true
  wait_gone "$pid" 30 && return 0
  echo "  $name's postmaster $pid: immediate shutdown (SIGQUIT)"
  kill -QUIT "$pid" 2>/dev/null || true
  wait_gone "$pid" 10 || echo "  $name's postmaster $pid is still running; see $DIR/$name.log"
}

# True once process PID has exited, waiting up to SECONDS.
wait_gone() {
  local i
  for i in $(seq $(($2 * 10))); do
    [ -d "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ] || return 0
    sleep 0.1
  done
  return 1
}

cmd_stop() {
  [ -d "$DIR" ] || die "no $DIR: nothing was started there"
  local i writer="" leader order=()
  echo "Stopping ipledger's HA layout in $DIR"
  # ipledger first (nothing writes to PostgreSQL afterwards); followers before the writer, so that
  # no follower takes the lease over from a writer that is only stopping.
  for i in 0 1 2; do
    if http_ok "${IPL_PORTS[$i]}" /healthz/writer; then writer=${IPL_NAMES[$i]}; else order+=("${IPL_NAMES[$i]}"); fi
  done
  [ ${#order[@]} -eq 0 ] || stop_processes 30 "${order[@]}"
  [ -z "$writer" ] || stop_processes 30 "$writer"
  stop_processes 10 haproxy
  # Replicas before the leader, so that stopping the leader does not promote a replica; each
  # Patroni stops its PostgreSQL cleanly on SIGTERM.
  leader=$(patroni_leader || true)
  order=()
  for i in 0 1 2; do [ "${PG_NAMES[$i]}" != "$leader" ] && order+=("$i"); done
  for i in 0 1 2; do [ "${PG_NAMES[$i]}" = "$leader" ] && order+=("$i"); done
  for i in "${order[@]}"; do
    stop_processes 60 "${PG_NAMES[$i]}"
    stop_postmaster "$i"
  done
  # etcd last: Patroni needs it to give up its leader key cleanly. One at a time: a stopping etcd
  # leader hands its leadership to a member still running, where all at once it waits 10 s for one.
  for i in 1 2 3; do stop_processes 20 "etcd$i"; done
  echo "Stopped. $DIR is kept (data, configs, logs, admin token):"
  echo "  start again: bash $0 start $DIR"
  echo "  remove it:   rm -rf $DIR"
}

case "${1:-}" in
  start | status | stop) ;;
  *) usage ;;
esac
[ $# -le 2 ] || usage
# Absolute: configs, pid checks and the processes' command lines all name DIR.
DIR=$(realpath -m "${2:-/tmp/ipledger-ha}")
readonly DIR
"cmd_$1"
