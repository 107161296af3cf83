#!/usr/bin/env bash
# Runs the README's buf curl examples against the real release binary, as a new user would, and
# checks the answers: reflection alone (no .proto files on the client), register, retry, credit
# line, JSON-lines import, exact exposure by county, city and province recomputed here from the
# example files, and the signed history (head, proof, a signed dump restored under the server's key).
set -euo pipefail
# grep without -q below: with pipefail, an early-exiting grep -q would fail the pipe on SIGPIPE.
trap 'echo "README examples: 0 passed, 1 failed (line $LINENO)"' ERR
cd "$(dirname "$0")/.."

command -v buf >/dev/null || { echo "buf is not installed (npm install -g @bufbuild/buf)"; exit 1; }
cargo build --release --locked --quiet
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr="127.0.0.1:$port"
./target/release/ipledger serve --listen "$addr" --data-dir "$data/ipledger-data" >"$data/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 300); do
  grep -q serving "$data/server.log" && break
  sleep 0.1
done
grep -q "created the first admin token" "$data/server.log"

token=$(cat "$data/ipledger-data/admin.token")
# buf curl sends -H with the call and --reflect-header with its reflection requests.
call() { buf curl --protocol grpc --http2-prior-knowledge -H "authorization: Bearer $token" --reflect-header "authorization: Bearer $token" "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

call --list-methods "http://$addr" | grep >/dev/null '^ipledger.v1.PledgeService/RegisterPledge$'
call -d '{"service":"ipledger.v1.PledgeService"}' "http://$addr/grpc.health.v1.Health/Check" | json 'd["status"]' | grep -x >/dev/null SERVING

first=$(call -d @tests/examples/register.json "http://$addr/ipledger.v1.PledgeService/RegisterPledge")
echo "$first" | json 'd["status"], d["rights"][0]["number"]' | grep -x >/dev/null "ACTIVE ZL201811564288.X"
again=$(call -d @tests/examples/register.json "http://$addr/ipledger.v1.PledgeService/RegisterPledge")
[ "$(echo "$first" | json 'd["id"]')" = "$(echo "$again" | json 'd["id"]')" ]
# The public register: the right is pledged, with its registration, and nothing of the amount.
call -d '{"rightNumber": "ZL201811564288.X"}' "http://$addr/ipledger.v1.PledgeService/LookupRight" \
  | json 'd["pledged"], d["registrationNumber"], d["registeredOn"], "securedAmount" in d' \
  | grep -x >/dev/null "True IPL-2019-000000001 2019-06-05 False"

call -d @tests/examples/credit-line.json "http://$addr/ipledger.v1.CreditLineService/CreateCreditLine" \
  | json 'd["available"]' | grep -x >/dev/null 2600000000.00

summary=$(call -d @- "http://$addr/ipledger.v1.PledgeService/ImportPledges" < tests/examples/pledges.jsonl)
echo "$summary" | json 'd["received"], d["registered"]' | grep -x >/dev/null "20 20"

expected() {
  python3 - "$1" <<'PY'
import json, sys
from decimal import Decimal
region = sys.argv[1]
records = [json.loads(l)["pledge"] for l in open("tests/examples/pledges.jsonl")]
records.append(json.load(open("tests/examples/register.json"))["pledge"])
prefix = region[:2] if region.endswith("0000") else region[:4] if region.endswith("00") else region
inside = [r for r in records if r["countyCode"].startswith(prefix)]
amount = sum(Decimal(r["securedAmount"]) for r in inside)
print(f'{amount:.2f} {len(inside)} {len({r["pledgor"]["creditCode"] for r in inside})} {sum(len(r["rights"]) for r in inside)}')
PY
}
for region in 330108 330100 330000 320000; do
  got=$(call -d "{\"regionCode\":\"$region\",\"groupBy\":\"CHILD_REGION\"}" "http://$addr/ipledger.v1.ExposureService/GetExposure" \
    | json 'd["total"]["securedAmount"], d["total"].get("pledgeCount","0"), d["total"].get("enterpriseCount","0"), d["total"].get("rightCount","0")')
  want=$(expected "$region")
  [ "$got" = "$want" ] || { echo "exposure of $region: got $got, want $want"; exit 1; }
  echo "exposure $region: $got"
done

# As of the end of 2020-03-09 nothing of the 2020-03-10 import was in force; a day later all of it.
asof() {
  call -d "{\"regionCode\": \"330000\", \"groupBy\": \"CHILD_REGION\", \"asOf\": \"$1\"}" \
    "http://$addr/ipledger.v1.ExposureService/GetExposure" | json 'd["total"].get("pledgeCount", "0")'
}
[ "$(asof 2020-03-09)" = "1" ] && [ "$(asof 2020-03-10)" = "13" ]
# Statistics of 2020 in 10,000 yuan: the 12 Zhejiang records of the import, against the one
# pledge of 2019.
call -d '{"regionCode": "330000", "from": "2020-01-01", "to": "2020-12-31", "groupBy": "CHILD_REGION", "unit": "TEN_THOUSAND_YUAN"}' \
  "http://$addr/ipledger.v1.ExposureService/GetStatistics" \
  | json 'd["total"]["registrations"], d["total"]["registeredAmount"], d["total"]["previousRegisteredAmount"], d["total"]["amountGrowthPercent"]' \
  | grep -x >/dev/null "12 4400.000574 1500.000000 193.33"

# A bank's token sees only its own book.
bank=$(call -d '{"name": "bank-hz", "role": "BANK", "creditCode": "914403001922038216"}' \
  "http://$addr/ipledger.v1.AdminService/CreateToken" | json 'd["token"]')
buf curl --protocol grpc --http2-prior-knowledge -H "authorization: Bearer $bank" --reflect-header "authorization: Bearer $bank" \
  -d '{"groupBy": "PLEDGEE"}' "http://$addr/ipledger.v1.ExposureService/GetExposure" \
  | json 'd["total"]["securedAmount"], [r["key"] for r in d["rows"]]' | grep -x >/dev/null "15000000.00 \['914403001922038216'\]"
# Without a token, nothing: reflection answers (it shows only the published schema), so the call
# reaches the method, which says UNAUTHENTICATED (not "failed to find service").
if refused=$(buf curl --protocol grpc --http2-prior-knowledge -d '{}' "http://$addr/ipledger.v1.ExposureService/GetExposure" 2>&1); then
  echo "served without a token"; false
fi
echo "$refused" | grep >/dev/null -i unauthenticated

# The dashboard's JSON API: the same answer as over gRPC, with the same token.
grpc_total=$(call -d '{"regionCode": "330000"}' "http://$addr/ipledger.v1.ExposureService/GetExposure" | json 'd["total"]')
http_total=$(curl -sf -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"regionCode": "330000"}' "http://$addr/api/ipledger.v1.ExposureService/GetExposure" | json 'd["total"]')
[ "$grpc_total" = "$http_total" ]
curl -sf "http://$addr/dashboard/" | grep >/dev/null '<title>ipledger'
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' -d '{}' \
  "http://$addr/api/ipledger.v1.ExposureService/GetExposure")" = 401 ]

# Signed history: the signed head and a proof of the last write, then a signed dump restored
# under the server's key into a new directory, which verifies.
head=$(call -d '{}' "http://$addr/ipledger.v1.JournalService/GetSignedHead")
sequence=$(echo "$head" | json 'd["sequence"]')
[ "$(echo "$head" | json 'd["publicKey"]')" = "$(cat "$data/ipledger-data/signing-key.pub")" ]
call -d "{\"sequence\": $sequence}" "http://$addr/ipledger.v1.JournalService/GetJournalProof" \
  | json 'len(d["entries"]), d["signedHead"]["sequence"]' | grep -x >/dev/null "1 $sequence"
./target/release/ipledger export --server "http://$addr" --token-file "$data/ipledger-data/admin.token" >"$data/journal.jsonl"
./target/release/ipledger restore --data-dir "$data/restored" --input "$data/journal.jsonl" \
  --trusted-key "$data/ipledger-data/signing-key.pub" | grep >/dev/null "^ok: $sequence entries"

kill -TERM $server
wait $server
grep -q "every accepted write is committed" "$data/server.log"
echo "README examples: 1 passed, 0 failed"
