#!/usr/bin/env bash
# bench/side-by-side.sh: PostgreSQL 15 with the schema a bank would write (bench/postgres/) and
# ipledger, measured in one run on this machine, one after the other so neither competes with
# the other for the cores, then one table side by side: registrations/s and latency at each
# client count, bulk load against streaming import, bytes on disk per pledge.
#
#   bash bench/side-by-side.sh [--pledges N] [--seconds S] [--unary M] [--queries Q]
#                              [--clients 64,256] [--no-build]
#
# PostgreSQL: a throwaway cluster in a temp directory (as the `postgres` user when run as root:
# initdb refuses root) on a free port of 127.0.0.1, default durability (fsync, synchronous
# commit), settings for 256 clients. N pledges are bulk-loaded (4 sessions, 10,000 per
# transaction), then pgbench runs register.sql for S seconds at each client count. ipledger:
# `ipledger bench` with the same N, M unary registrations at each caller count. Everything the
# script starts and the temp directory are removed on exit, however it exits.
set -euo pipefail

pledges=100000
duration=30
unary=20000
queries=300
clients=64,256
build=1

usage() {
    sed -n '7,8p' "$0" | sed 's/^# *//'
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --pledges) pledges=$2; shift 2 ;;
        --seconds) duration=$2; shift 2 ;;
        --unary) unary=$2; shift 2 ;;
        --queries) queries=$2; shift 2 ;;
        --clients) clients=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        -h | --help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
for n in "$pledges" "$duration" "$unary" "$queries"; do
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "not a number: $n" >&2; exit 2; }
done
[[ "$clients" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { echo "--clients: comma-separated counts" >&2; exit 2; }
# The bytes-per-pledge and load figures divide by the load: it cannot be empty.
[ "$pledges" -gt 0 ] || { echo "--pledges must be at least 1" >&2; exit 2; }
IFS=, read -r -a levels <<<"$clients"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pgbin=/usr/lib/postgresql/15/bin
target=${CARGO_TARGET_DIR:-$root/target}
binary=$target/release/ipledger

# The machine's CPU busy share over 2 s, sampled while nothing of this run works: the share
# other work takes, printed with the figures (the cores are shared, and it shows in them).
cpu_sample() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print $5 + $6, t }' /proc/stat; }
cpu_busy() {
    local idle0 total0 idle1 total1
    read -r idle0 total0 < <(cpu_sample)
    sleep 2
    read -r idle1 total1 < <(cpu_sample)
    awk -v i=$((idle1 - idle0)) -v t=$((total1 - total0)) 'BEGIN { printf "%.0f", (t > 0 ? 100 * (1 - i / t) : 0) }'
}

log() { printf '\n== %s (load average %s)\n' "$*" "$(cut -d' ' -f1-3 /proc/loadavg)" >&2; }

# PostgreSQL refuses to run as root: as root, its server-side commands run as `postgres`.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ ! -x "$pgbin/pgbench" ] || [ ! -x "$pgbin/initdb" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "PostgreSQL 15 is missing: run as root to install it, or apt-get install postgresql-15" >&2
        exit 1
    fi
    log "installing postgresql-15"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-15
fi
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "no postgres user: the postgresql-15 package creates it" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ipledger-side-by-side.XXXXXX")
# The postgres user must reach its data directory and socket inside it.
chmod 755 "$work"
pgdata=$work/pg
bench_pid=
load_pids=()

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${load_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
        # The bench and the server it started share the session setsid gave them.
        kill -TERM -- "-$bench_pid" 2>/dev/null || kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
    if [ -f "$pgdata/postmaster.pid" ]; then
        as_pg "$pgbin/pg_ctl" -D "$pgdata" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port nothing listens on; bash's /dev/tcp connect fails on a free one.
free_port() {
    local port
    for _ in $(seq 500); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

if [ "$build" -eq 1 ]; then
    log "building ipledger (release)"
    (cd "$root" && nice -n 10 cargo build --release --locked)
fi
[ -x "$binary" ] || { echo "no binary at $binary (build it, or drop --no-build)" >&2; exit 1; }

# ---------------------------------------------------------------- PostgreSQL 15
port=$(free_port)
if [ "$(id -u)" -eq 0 ]; then pg_owner=postgres; else pg_owner=$(id -un); fi
install -d -o "$pg_owner" -m 700 "$pgdata"
log "PostgreSQL 15: initdb in $pgdata, port $port"
# Locale C: the codes and numbers are ASCII, and C collation is what a DBA picks for such keys.
as_pg "$pgbin/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 --locale=C >"$work/initdb.log"
cat >>"$pgdata/postgresql.conf" <<EOF
# bench/side-by-side.sh: a throwaway cluster for 256 clients; durability stays the default
# (fsync on, synchronous_commit on, full_page_writes on).
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$pgdata'
max_connections = 300
shared_buffers = 1GB
# As a DBA sizes it for a write load: checkpoints by time, not every minute of WAL.
max_wal_size = 4GB
EOF
as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 120 start >/dev/null

psql_() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"; }
scalar() { psql_ -At -c "$1"; }

psql_ -f "$root/bench/postgres/schema.sql"
psql_ -f "$root/bench/postgres/credit_lines.sql"
psql_ -f "$root/bench/postgres/rules.sql"
echo "rules checked: a right in two active pledges and an overdraw are refused" >&2

log "PostgreSQL: bulk load of $pledges pledges (4 sessions, 10,000 pledges per transaction)"
chunk=10000
chunks=$(((pledges + chunk - 1) / chunk))
wal_before=$(scalar "SELECT pg_current_wal_lsn()")
load_started=$(date +%s.%N)
for stream in 0 1 2 3; do
    (
        c=$stream
        while [ "$c" -lt "$chunks" ]; do
            first=$((c * chunk + 1))
            last=$(((c + 1) * chunk))
            [ "$last" -le "$pledges" ] || last=$pledges
            psql_ -v first="$first" -v last="$last" -f "$root/bench/postgres/load.sql"
            c=$((c + 4))
        done
    ) &
    load_pids+=("$!")
done
for pid in "${load_pids[@]}"; do wait "$pid"; done
load_pids=()
load_seconds=$(awk -v a="$load_started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
wal_load=$(scalar "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$wal_before')")
loaded=$(scalar "SELECT count(*) FROM pledges")
[ "$loaded" -eq "$pledges" ] || { echo "loaded $loaded pledges, expected $pledges" >&2; exit 1; }
pg_load_rate=$(awk -v n="$pledges" -v s="$load_seconds" 'BEGIN { printf "%.0f", n / s }')
echo "loaded $pledges pledges in $load_seconds s: $pg_load_rate/s, WAL $wal_load bytes" >&2
psql_ -c "VACUUM ANALYZE" >/dev/null

# pgbench's per-transaction log gives the latency percentiles; its summary gives tps.
declare -A pg_tps pg_p50 pg_p99 pg_failed
jobs_max=$(nproc)
busy_pg=$(cpu_busy)
echo "CPU busy with other work before the pgbench runs: $busy_pg%" >&2
wal_runs_before=$(scalar "SELECT pg_current_wal_lsn()")
count_before_runs=$(scalar "SELECT count(*) FROM pledges")
for c in "${levels[@]}"; do
    log "PostgreSQL: pgbench register.sql, $c clients, $duration s"
    # Each run starts without a checkpoint pending, as pgbench runs usually do.
    psql_ -c CHECKPOINT
    jobs=$((c < jobs_max ? c : jobs_max))
    status=0
    "$pgbin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n -M prepared \
        -f "$root/bench/postgres/register.sql" -c "$c" -j "$jobs" -T "$duration" -P 10 \
        -l --log-prefix="$work/pgbench-$c" postgres >"$work/pgbench-summary-$c" || status=$?
    cat "$work/pgbench-summary-$c"
    # Exit status 2 means some clients aborted (a failed registration); the figures still stand
    # for the others, and the failures are reported.
    if [ "$status" -ne 0 ] && [ "$status" -ne 2 ]; then
        echo "pgbench failed ($status)" >&2
        exit 1
    fi
    pg_tps[$c]=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$work/pgbench-summary-$c")
    pg_failed[$c]=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$work/pgbench-summary-$c")
    # Columns: client, transaction, latency in µs (or "failed"), script, epoch, µs.
    cat "$work/pgbench-$c".* | awk '$3 ~ /^[0-9]+$/ { print $3 }' | sort -n >"$work/latency-$c"
    # The same percentile rule as ipledger bench: the sample at round((n - 1) q).
    read -r p50 p99 < <(awk '{ v[NR] = $1 } END {
        i50 = int((NR - 1) * 0.5 + 0.5) + 1; i99 = int((NR - 1) * 0.99 + 0.5) + 1
        printf "%.2f %.2f\n", v[i50] / 1000, v[i99] / 1000 }' "$work/latency-$c")
    pg_p50[$c]=$p50
    pg_p99[$c]=$p99
done
registered=$(($(scalar "SELECT count(*) FROM pledges") - count_before_runs))
wal_runs=$(scalar "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$wal_runs_before')")

log "PostgreSQL: sizes"
psql_ -P footer=off -c "
SELECT relname AS table, pg_size_pretty(pg_table_size(oid)) AS heap,
       pg_size_pretty(pg_indexes_size(oid)) AS indexes, pg_size_pretty(pg_total_relation_size(oid)) AS total
FROM pg_class WHERE relname IN ('pledges', 'pledged_rights', 'credit_lines') ORDER BY relname"
pg_pledges=$(scalar "SELECT count(*) FROM pledges")
pg_rights=$(scalar "SELECT count(*) FROM pledged_rights")
pg_rel_bytes=$(scalar "SELECT sum(pg_total_relation_size(t))::bigint
    FROM unnest(ARRAY['pledges', 'pledged_rights', 'credit_lines']::regclass[]) AS t")
as_pg "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null
pg_dir_bytes=$(du -sb "$pgdata" | cut -f1)
pg_wal_dir_bytes=$(du -sb "$pgdata/pg_wal" | cut -f1)
echo "$pg_pledges pledges, $pg_rights rights; tables and indexes $pg_rel_bytes bytes;" \
    "data directory $pg_dir_bytes bytes (pg_wal $pg_wal_dir_bytes)" >&2
# Free the disk and memory before ipledger runs.
rm -rf "$pgdata"

# ---------------------------------------------------------------- ipledger
log "ipledger bench: $pledges pledges imported, $unary unary registrations at $clients callers"
busy_ipl=$(cpu_busy)
echo "CPU busy with other work before the ipledger bench: $busy_ipl%" >&2
# Its own session, so an interrupted run takes its server down with it (see cleanup).
setsid "$binary" bench --pledges "$pledges" --unary "$unary" --queries "$queries" --callers "$clients" \
    --data-dir "$work/ipledger" >"$work/ipledger.out" &
bench_pid=$!
wait "$bench_pid"
bench_pid=
cat "$work/ipledger.out"

# A cell of the bench's Markdown table: the row whose first cell is $1, column $2 (1-based).
cell() {
    awk -F'|' -v row="$1" -v col="$2" '{ k = $2; gsub(/^ +| +$/, "", k) }
        k == row { v = $(col + 1); gsub(/^ +| +$/, "", v); sub(/\/s$/, "", v); print v; exit }' "$work/ipledger.out"
}
ipl_import=$(cell "ImportPledges (4 streams)" 3)
ipl_pledges=$(cell "pledges stored" 2)
ipl_bytes=$(cell "bytes on disk" 2 | sed -n 's/.*(\([0-9]*\) bytes per pledge).*/\1/p')
declare -A ipl_tps ipl_p50 ipl_p99
for c in "${levels[@]}"; do
    ipl_tps[$c]=$(cell "RegisterPledge, $c callers" 3)
    ipl_p50[$c]=$(cell "RegisterPledge, $c callers" 4)
    ipl_p99[$c]=$(cell "RegisterPledge, $c callers" 5)
done

# ---------------------------------------------------------------- side by side
row() { # metric, PostgreSQL, ipledger: the ratio is ipledger ÷ PostgreSQL
    awk -v m="$1" -v p="$2" -v i="$3" 'BEGIN {
        r = (p + 0 > 0 && i != "") ? sprintf("%.2f", i / p) : "";
        printf "| %s | %s | %s | %s |\n", m, p, i, r }'
}
per_pledge() { awk -v b="$1" -v n="$2" 'BEGIN { printf "%.0f", b / n }'; }

echo
echo "Side by side on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ); PostgreSQL: $pledges pledges bulk-loaded," \
    "then pgbench $duration s per client count; ipledger: $pledges imported, $unary unary per caller count."
echo
echo "| metric | PostgreSQL 15 | ipledger | ipledger ÷ PostgreSQL |"
echo "|---|---|---|---|"
for c in "${levels[@]}"; do
    row "RegisterPledge/s, $c clients (callers)" "$(printf '%.0f' "${pg_tps[$c]:-0}")" "${ipl_tps[$c]}"
    row "p50 ms, $c clients" "${pg_p50[$c]}" "${ipl_p50[$c]}"
    row "p99 ms, $c clients" "${pg_p99[$c]}" "${ipl_p99[$c]}"
done
row "bulk load/s (PG: 4 sessions × 10,000 per transaction; ipledger: ImportPledges, 4 streams)" \
    "$pg_load_rate" "$ipl_import"
row "bytes on disk per pledge (PG: tables + indexes; ipledger: data directory)" \
    "$(per_pledge "$pg_rel_bytes" "$pg_pledges")" "$ipl_bytes"
row "bytes on disk per pledge (PG: whole data directory, WAL included)" \
    "$(per_pledge "$pg_dir_bytes" "$pg_pledges")" "$ipl_bytes"
row "WAL bytes per pledge, bulk load (PG)" "$(per_pledge "$wal_load" "$pledges")" ""
row "WAL bytes per registration, pgbench runs (PG)" "$(per_pledge "$wal_runs" "$registered")" ""
row "pledges stored at the end" "$pg_pledges" "$ipl_pledges"
failed=0
for c in "${levels[@]}"; do failed=$((failed + ${pg_failed[$c]:-0})); done
echo
echo "Rights per pledge in PostgreSQL: $(awk -v r="$pg_rights" -v n="$pg_pledges" 'BEGIN { printf "%.2f", r / n }')." \
    "Failed pgbench transactions: $failed." \
    "CPU busy with other work just before (2 s): PostgreSQL runs $busy_pg%, ipledger bench $busy_ipl%."
