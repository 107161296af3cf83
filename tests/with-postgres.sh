#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL on loopback whose base connection string is in
# IPLEDGER_TEST_JOURNAL: how the integration tests run against the PostgreSQL journal
# (tests/it/helpers.rs gives every data directory a database of its own). The cluster and its
# directory are removed when the command ends, whatever its outcome.
#   bash tests/with-postgres.sh cargo test --test it -- pledges::
set -euo pipefail
# PostgreSQL's server programs, found as the tests find them (tests/support/tools.rs): PG_BIN, else
# pg_config --bindir, else the newest /usr/lib/postgresql/*/bin.
bin=${PG_BIN:-}
if [ -z "$bin" ] && command -v pg_config >/dev/null; then bin=$(pg_config --bindir); fi
if [ -z "$bin" ] || ! [ -x "$bin/initdb" ]; then bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1); fi
if [ -z "$bin" ] || ! [ -x "$bin/initdb" ]; then
  echo "PostgreSQL's server programs (initdb, pg_ctl) are not installed: bash tests/setup-and-test.sh installs them (on Debian: apt-get install postgresql), or set PG_BIN" >&2
  exit 1
fi
dir=$(mktemp -d /tmp/ipledger-pg.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# initdb and postgres refuse root: run them as the postgres user then.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
cleanup() {
  as_postgres "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
# Enough connections for every test server at once (four each: writer, reader, listener, lease).
as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=400" >/dev/null
export IPLEDGER_TEST_JOURNAL="host=127.0.0.1 port=$port user=postgres"
"$@"
