#!/usr/bin/env bash
# Runs the Python bank client example (examples/python/) against the real server, as a bank
# integrator would: an admin creates the bank's token and credit line, the stubs are generated from
# proto/, and the example runs twice (the second run registers another loan and resumes the change
# feed from the sequence the first saved), then once more over TLS against a second server, as a
# bank reaches a server that is not on its own machine. Its output is checked against the figures
# computed here from the loan files: the pledge's amount in the exposure total, the same pledge on
# the retry, the pledge count unmoved by it, the BadRequest's fields, the ErrorInfo's reason, and
# the feed's second run starting after the saved sequence. Installs nothing: CI installs
# examples/python/requirements.txt first.
set -euo pipefail
# grep without -q below: with pipefail, an early-exiting grep -q would fail the pipe on SIGPIPE.
trap 'echo "Python client example: 0 passed, 1 failed (line $LINENO)"' ERR
cd "$(dirname "$0")/.."

modules='import grpc, grpc_tools.protoc, grpc_status.rpc_status, google.rpc.error_details_pb2'
python3 -c "$modules" 2>/dev/null || {
  echo "the example's Python packages are missing: python3 -m pip install -r examples/python/requirements.txt"
  exit 1
}
cargo build --locked --quiet
# Where cargo put it: CARGO_TARGET_DIR when set (relative to the repository root, as for cargo).
ipledger="${CARGO_TARGET_DIR:-target}/debug/ipledger"
data=$(mktemp -d)
servers=()
# The servers go whatever happens below, and their data with them.
trap 'for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$data"' EXIT

# Starts a server on a free port with a new data directory $data/NAME (its first start writes the
# admin token there) and any further flags; sets $addr.
start_server() {
  local name=$1 port
  shift
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  addr="127.0.0.1:$port"
  "$ipledger" serve --listen "$addr" --data-dir "$data/$name" "$@" >"$data/$name.log" 2>&1 &
  servers+=("$!")
  for _ in $(seq 300); do
    grep -q serving "$data/$name.log" && break
    sleep 0.1
  done
  if ! grep -q serving "$data/$name.log" || ! [ -s "$data/$name/admin.token" ]; then
    echo "FAILED: the server did not start with an admin token:"
    cat "$data/$name.log"
    exit 1
  fi
}

fail() {
  echo "FAILED: $1"
  echo "--- output of the run:"
  cat "$2"
  echo "Python client example: 0 passed, 1 failed"
  exit 1
}
# Whether a run's output has a line matching an extended regular expression.
has() { grep -E >/dev/null -- "$2" "$1"; }
# How many attempts a run's registration took.
attempts() { sed -n 's/^registered pledge .* after \([0-9]*\) attempts$/\1/p' "$1"; }

# The stubs go to a temporary directory, as the example allows (IPLEDGER_STUBS), so nothing is left
# in the work tree.
bash examples/python/generate_stubs.sh "$data/stubs" >/dev/null
export IPLEDGER_STUBS="$data/stubs"

# What the admin does once for the bank: its token (to a 0600 file) and a credit line in Hangzhou;
# sets $line to the line's id. Further arguments go to admin_setup.py (--ca-cert).
setup_bank() {
  local name=$1
  shift
  python3 examples/python/admin_setup.py "$addr" --admin-token-file "$data/$name/admin.token" \
    --bank-token-out "$data/$name.bank.token" "$@" >"$data/$name.setup.out"
  line=$(sed -n 's/^credit line \([^ ]*\) limit 50000000.00 available 50000000.00$/\1/p' "$data/$name.setup.out")
  [ -n "$line" ] || fail "no credit line of 50000000.00 from the admin setup" "$data/$name.setup.out"
  [ "$(stat -c %a "$data/$name.bank.token")" = 600 ] || fail "the bank token file is not owner-only" /dev/null
}

# The figures a run must print, from the loan files themselves: the last loan's amount and its first
# right as the ledger writes it (these files write a patent number with spaces or without: the
# canonical form has none), and the book's total and count after it (exact decimals).
expect() {
  python3 - "$@" <<'PY'
import json, sys
from decimal import Decimal
loans = [json.load(open(f, encoding="utf-8")) for f in sys.argv[1:]]
number = loans[-1]["rights"][0]["number"].replace(" ", "")
total = sum(Decimal(l["securedAmount"]) for l in loans)
print(loans[-1]["securedAmount"], number, f"{total:.2f}", len(loans))
PY
}
loan1=examples/python/loans/hangzhou-1.json
loan2=examples/python/loans/hangzhou-2.json

# run OUT NAME LOAN [ARGS]: the example as the bank of server NAME, its feed state in $data/NAME.state.
run() {
  local out=$1 name=$2 loan=$3
  shift 3
  IPLEDGER_TOKEN_FILE="$data/$name.bank.token" python3 examples/python/bank_client.py "$addr" \
    --loan "$loan" --credit-line "$line" --state-dir "$data/$name.state" "$@" >"$out" 2>&1 \
    || fail "bank_client.py exited with an error on $loan" "$out"
}

# check_run OUT NAME TIMEOUT COUNT_BEFORE LOANS...: the checks every run shares (the registration,
# the retry, the count, the exposure, the errors, the feed's saved sequence); sets $id and $saved.
# TIMEOUT "certain": the first attempt must have timed out and been retried; "likely": it may also
# have answered within its 1 ms (the client's and the server's timers race the write), and then
# only the identical resend shows the retry.
check_run() {
  local out=$1 name=$2 timeout=$3 count_before=$4
  shift 4
  local amount right total count
  read -r amount right total count < <(expect "$@")
  id=$(sed -n 's/^registered pledge \([^ ]*\) registration .* status ACTIVE after [0-9]* attempts$/\1/p' "$out")
  [ -n "$id" ] || fail "no 'registered pledge' line" "$out"
  has "$out" "^registered pledge $id registration IPL-[0-9]{4}-[0-9]{9} amount $amount status ACTIVE " \
    || fail "the registered amount is not $amount" "$out"
  # The first attempt's tiny deadline makes it time out: DEADLINE_EXCEEDED from the client's timer,
  # or CANCELLED "Timeout expired" when the server's (tonic's) side of the same deadline ends it
  # first. The retry, with the same request id, is answered.
  if [ "$timeout" = certain ] || ! has "$out" "^registered pledge $id .* after 1 attempts$"; then
    has "$out" "^attempt 1 (DEADLINE_EXCEEDED|CANCELLED): outcome unknown, retrying with request id " \
      || fail "the first attempt did not time out and get retried" "$out"
  fi
  has "$out" "^retry returned the same pledge $id version 1$" \
    || fail "the retry did not return pledge $id" "$out"
  has "$out" "^pledge count before $count_before after registration $count after retry $count$" \
    || fail "the pledge count is not $count_before, then $count after the registration and the retry" "$out"
  has "$out" "^exposure total secured=$total pledges=$count .* credit_limit=50000000.00 credit_drawn=$total$" \
    || fail "the exposure total is not $total in $count pledges, all drawn on the line of 50000000.00" "$out"
  has "$out" "^error INVALID_ARGUMENT reason=INVALID_FIELDS domain=ipledger.v1$" \
    || fail "no INVALID_FIELDS" "$out"
  has "$out" "^error INVALID_ARGUMENT field=pledge.securedAmount description=." \
    || fail "no field violation on pledge.securedAmount" "$out"
  has "$out" "^error INVALID_ARGUMENT field=pledge.pledgor.creditCode description=check character" \
    || fail "no field violation on pledge.pledgor.creditCode" "$out"
  has "$out" \
    "^error FAILED_PRECONDITION reason=RIGHT_ALREADY_PLEDGED domain=ipledger.v1 pledgeId=$id .*rightNumber=$right$" \
    || fail "no RIGHT_ALREADY_PLEDGED naming pledge $id and right $right" "$out"
  saved=$(sed -n 's/^feed saved sequence \([0-9]*\)$/\1/p' "$out")
  [ -n "$saved" ] || fail "no 'feed saved sequence' line" "$out"
  [ "$(cat "$data/$name.state/feed.sequence")" = "$saved" ] \
    || fail "the state file does not hold sequence $saved" "$out"
  has "$out" "^event $saved PLEDGE_REGISTERED pledge $id " \
    || fail "the feed did not end on the registration of $id" "$out"
}

start_server plain
setup_bank plain

run "$data/run1.out" plain "$loan1"
check_run "$data/run1.out" plain likely 0 "$loan1"
id1=$id saved1=$saved
has "$data/run1.out" "^feed starts at the beginning$" \
  || fail "the first run did not read the feed from the start" "$data/run1.out"
echo "run 1: pledge $id1 after $(attempts "$data/run1.out") attempts, feed saved at sequence $saved1"

run "$data/run2.out" plain "$loan2"
check_run "$data/run2.out" plain likely 1 "$loan1" "$loan2"
id2=$id saved2=$saved
[ "$id2" != "$id1" ] || fail "the second loan got the first one's pledge" "$data/run2.out"
# The second run resumes after the first's sequence: every event it prints is newer, and the first
# run's registration is not among them.
has "$data/run2.out" "^feed resumes after sequence $saved1$" \
  || fail "the feed did not resume after $saved1" "$data/run2.out"
first=$(sed -n 's/^event \([0-9]*\) .*/\1/p' "$data/run2.out" | head -n 1)
if [ -z "$first" ] || [ "$first" -le "$saved1" ]; then
  fail "the second run's feed starts at '$first', not after $saved1" "$data/run2.out"
fi
if has "$data/run2.out" "^event .* pledge $id1 "; then
  fail "the second run saw the first run's pledge again" "$data/run2.out"
fi
echo "run 2: pledge $id2 after $(attempts "$data/run2.out") attempts," \
  "feed resumed after $saved1 at $first, saved at $saved2"
sed 's/^/  /' "$data/run2.out"

# Over TLS: a throwaway CA signs a certificate for 127.0.0.1; the clients trust that CA alone.
tls="$data/tls"
mkdir "$tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj "/CN=ipledger example CA" -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 1 \
  -extfile <(echo "subjectAltName=IP:127.0.0.1") -out "$tls/server.pem" 2>/dev/null
start_server tls --tls-cert "$tls/server.pem" --tls-key "$tls/server.key"
setup_bank tls --ca-cert "$tls/ca.pem"
# The first attempt's deadline is over before it leaves: the timeout, and so the retry, is certain.
run "$data/run3.out" tls "$loan1" --ca-cert "$tls/ca.pem" --first-deadline-ms 0
check_run "$data/run3.out" tls certain 0 "$loan1"
echo "run 3 (TLS): pledge $id after $(attempts "$data/run3.out") attempts, feed saved at sequence $saved"

for pid in "${servers[@]}"; do
  kill -TERM "$pid"
  wait "$pid"
done
servers=()
echo "Python client example: 1 passed, 0 failed"
