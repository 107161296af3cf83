#!/usr/bin/env bash
# Every test, on a fresh machine too: installs what the tests need when it is missing, saying what
# and why, then runs them all (formatting and lints, the unit and integration tests, the
# correctness tests again on the PostgreSQL journal, the high-availability test, the API guide's
# examples with buf curl, every command of the docs, the Python bank client example and the Python
# certificate verifier's tests). CI (.ci/run) runs exactly this.
#
# Needs the Rust toolchain (cargo with rustfmt and clippy) and Debian or Ubuntu (apt-get). Installs,
# as root or through sudo, only what is missing:
#   - Debian packages: gcc and libc6-dev (the linker), postgresql (the journal's tests; any version
#     Debian ships, found with pg_config), chromium and chromium-driver (the dashboard's browser
#     tests), patroni, etcd-server, etcd-client and haproxy (the HA test), openssl and curl (the
#     examples), python3-venv, npm, procps and ca-certificates;
#   - buf from the npm registry (@bufbuild/buf, the API guide's buf curl examples);
#   - the Python example's pinned packages (examples/python/requirements.txt) from PyPI, into a
#     virtual environment under target/ (never the system Python).
# IPLEDGER_SETUP_ONLY=1 installs and stops there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup-and-test: %s\n' "$*" >&2; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    say "not root and no sudo: install as root: $*"
    exit 1
  fi
}

has() { command -v "$1" >/dev/null 2>&1; }

# PostgreSQL's server programs, found as the tests find them (tests/support/tools.rs).
pg_bin() {
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  local dir
  if has pg_config && dir=$(pg_config --bindir 2>/dev/null) && [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  echo "${dir:-}"
}

# Debian packages: "package(s)|why" for each missing program.
packages=()
need() { packages+=("$1"); say "missing: $2 -> apt-get install $1"; }
has cc || need "gcc libc6-dev" "a C compiler and linker (cc), which cargo links with"
pg=$(pg_bin)
{ [ -n "$pg" ] && [ -x "$pg/initdb" ] && [ -x "$pg/pg_ctl" ]; } \
  || need "postgresql" "PostgreSQL's server (initdb, pg_ctl) for the PostgreSQL journal's tests"
{ has chromedriver && [ -x "${CHROMIUM:-/usr/bin/chromium}" ]; } \
  || need "chromium chromium-driver" "headless Chromium and chromedriver for the dashboard's browser tests"
{ has patroni && has patronictl; } || need "patroni" "Patroni for the HA test and the deploy files' check"
{ has etcd && has etcdctl; } || need "etcd-server etcd-client" "etcd for the HA test"
{ has haproxy || [ -x /usr/sbin/haproxy ]; } || need "haproxy" "HAProxy for the HA test and the deploy files' check"
has openssl || need "openssl" "openssl for the Python example's throwaway CA"
has curl || need "curl" "curl for the API guide's HTTP example"
has kill || need "procps" "kill, which the crash tests send signals with"
has runuser || need "util-linux" "runuser and setpriv, which run PostgreSQL and Patroni as postgres (both refuse root)"
{ has python3 && python3 -c 'import venv, ensurepip' 2>/dev/null; } \
  || need "python3 python3-venv" "Python 3 with venv for the Python bank client example"
{ has buf || has npm; } || need "npm" "npm, which installs buf for the API guide's examples"
[ -e /etc/ssl/certs/ca-certificates.crt ] || need "ca-certificates" "CA certificates for npm and pip"
if [ ${#packages[@]} -gt 0 ]; then
  say "installing with apt-get: ${packages[*]}"
  as_root apt-get update -q
  # shellcheck disable=SC2068 # each entry may name several packages
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ${packages[@]}
fi
# /usr/sbin holds haproxy; a non-root PATH may lack it.
case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="$PATH:/usr/sbin" ;; esac

if ! has buf; then
  say "missing: buf for the API guide's examples -> npm install -g @bufbuild/buf@1.75.0"
  as_root npm install -g @bufbuild/buf@1.75.0
fi

# The Python example's packages in a virtual environment of the checkout's own, on PATH for the
# scripts below; pip runs only when a pinned version is missing.
venv="$(realpath -m "${CARGO_TARGET_DIR:-target}")/python-venv"
[ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
pins=$(grep -E '^[A-Za-z]' examples/python/requirements.txt)
if [ "$("$venv/bin/python3" -m pip freeze 2>/dev/null | grep -cxF "$pins")" != "$(echo "$pins" | wc -l)" ]; then
  say "missing: the Python example's pinned packages -> pip install -r examples/python/requirements.txt (into $venv)"
  "$venv/bin/python3" -m pip install -q -r examples/python/requirements.txt
fi
export PATH="$venv/bin:$PATH"

if [ "${IPLEDGER_SETUP_ONLY:-}" = 1 ]; then
  say "everything the tests need is installed"
  exit 0
fi

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
# The integration tests that matter for correctness (rules, concurrency, idempotency, the crash)
# again with the journal in PostgreSQL instead of the embedded one.
bash tests/with-postgres.sh cargo test --locked --test it -- pledges:: transparency:: credit_lines:: books:: durability:: import:: tokens:: risk:: journal::a_dump_ends journal::a_bank_reads_its_write
# High availability: 3 etcd, 3 Patroni-managed PostgreSQL, HAProxy and 3 ipledger nodes through
# every fault; prints the write outage per fault. Then the PostgreSQL cluster alone (no ipledger):
# every committed row on every node through a switchover, a leader's kill -9 and etcd faults. One
# at a time: two clusters at once would share the 2 cores and miss their fault timings.
cargo test --locked --test it -- --ignored --nocapture --test-threads=1 ha:: ha_cluster::
bash tests/readme_examples.sh
# Every shell command of the README and docs/, run as a reader runs them (the one-machine HA
# layout of docs/operations.md among them: up until Ctrl-C, `--check`, and under the benchmark).
python3 tests/docs_commands.py
# The Python certificate verifier (examples/python/verify_certificate.py) against certificates its
# tests build from first principles (RFC 9162's definitions, a key of their own): seconds.
python3 -m unittest examples/python/test_verify_certificate.py
# The Python bank client example against the real binary: token, retry, exposure, feed, errors.
bash tests/python_client.sh
say "every test passed"
