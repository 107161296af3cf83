#!/usr/bin/env bash
# Runs the Python bank client example (examples/python/) against the real server, as a bank
# integrator would: an admin creates the bank's token and credit line, the stubs are generated from
# proto/, and the example runs twice (the second run registers another loan and resumes the change
# feed from the sequence the first saved). Its output is checked against the figures computed here
# from the loan files: the pledge's amount in the exposure total, the same pledge on the retry, the
# pledge count unmoved by it, the BadRequest's fields, the ErrorInfo's reason, and the feed's second
# run starting after the saved sequence. Installs nothing: CI installs
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
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr="127.0.0.1:$port"
"$ipledger" serve --listen "$addr" --data-dir "$data/ipledger-data" >"$data/server.log" 2>&1 &
server=$!
# The server goes whatever happens below, and its data with it.
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 300); do
  grep -q serving "$data/server.log" && break
  sleep 0.1
done
if ! grep -q serving "$data/server.log" || ! [ -s "$data/ipledger-data/admin.token" ]; then
  echo "FAILED: the server did not start with an admin token:"
  cat "$data/server.log"
  exit 1
fi

fail() {
  echo "FAILED: $1"
  echo "--- output of the run:"
  cat "$2"
  echo "Python client example: 0 passed, 1 failed"
  exit 1
}
# Whether a run's output has a line matching an extended regular expression.
has() { grep -E >/dev/null -- "$2" "$1"; }

# The stubs go to a temporary directory, as the example allows (IPLEDGER_STUBS), so nothing is left
# in the work tree.
bash examples/python/generate_stubs.sh "$data/stubs" >/dev/null
export IPLEDGER_STUBS="$data/stubs"

# What the admin does once for the bank: its token (to a 0600 file) and a credit line in Hangzhou.
python3 examples/python/admin_setup.py "$addr" --admin-token-file "$data/ipledger-data/admin.token" \
  --bank-token-out "$data/bank.token" >"$data/setup.out"
line=$(sed -n 's/^credit line \([^ ]*\) limit 50000000.00 available 50000000.00$/\1/p' "$data/setup.out")
[ -n "$line" ] || fail "no credit line of 50000000.00 from the admin setup" "$data/setup.out"
[ "$(stat -c %a "$data/bank.token")" = 600 ] || { echo "FAILED: the bank token file is not owner-only"; exit 1; }

# The figures a run must print, from the loan files themselves: the loan's amount and canonical
# first right, and the book's total after it (exact decimals, as the ledger sums them).
expect() {
  python3 - "$@" <<'PY'
import json, re, sys
from decimal import Decimal
loans = [json.load(open(f, encoding="utf-8")) for f in sys.argv[1:]]
# A patent number in canonical form: ZL + digits + "." + check (README "Rules and errors").
number = re.sub(r"[ ]", "", loans[-1]["rights"][0]["number"])
total = sum(Decimal(l["securedAmount"]) for l in loans)
print(loans[-1]["securedAmount"], number, f"{total:.2f}", len(loans))
PY
}
loan1=examples/python/loans/hangzhou-2019.json
loan2=examples/python/loans/hangzhou-2021.json

run() {
  local out=$1 loan=$2
  IPLEDGER_TOKEN_FILE="$data/bank.token" python3 examples/python/bank_client.py "$addr" \
    --loan "$loan" --credit-line "$line" --state-dir "$data/state" >"$out" 2>&1 \
    || fail "bank_client.py exited with an error on $loan" "$out"
}

# The checks both runs share: the registration, the retry, the count, the exposure, the errors.
check_run() {
  local out=$1 count_before=$2
  shift 2
  local amount right total count
  read -r amount right total count < <(expect "$@")
  id=$(sed -n 's/^registered pledge \([^ ]*\) registration .* status ACTIVE after [0-9]* attempts$/\1/p' "$out")
  [ -n "$id" ] || fail "no 'registered pledge' line" "$out"
  has "$out" "^registered pledge $id registration IPL-[0-9]{4}-[0-9]{9} amount $amount status ACTIVE " \
    || fail "the registered amount is not $amount" "$out"
  # The first attempt's tiny deadline makes it time out; the retry (same request id) is answered.
  has "$out" "^attempt 1 DEADLINE_EXCEEDED: outcome unknown, retrying with request id " \
    || fail "the first attempt did not time out and get retried" "$out"
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
  [ "$(cat "$data/state/feed.sequence")" = "$saved" ] \
    || fail "the state file does not hold sequence $saved" "$out"
  has "$out" "^event $saved PLEDGE_REGISTERED pledge $id " \
    || fail "the feed did not end on the registration of $id" "$out"
}

run "$data/run1.out" "$loan1"
check_run "$data/run1.out" 0 "$loan1"
id1=$id saved1=$saved
has "$data/run1.out" "^feed starts at the beginning$" \
  || fail "the first run did not read the feed from the start" "$data/run1.out"
echo "run 1: pledge $id1, feed saved at sequence $saved1"

run "$data/run2.out" "$loan2"
check_run "$data/run2.out" 1 "$loan1" "$loan2"
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
echo "run 2: pledge $id2, feed resumed after $saved1 at $first, saved at sequence $saved2"
sed 's/^/  /' "$data/run2.out"

kill -TERM $server
wait $server
echo "Python client example: 1 passed, 0 failed"
