#!/usr/bin/env bash
# Runs the API guide's (docs/api-guide.md) and the README's buf curl examples against the real release binary, as a new user would, and
# checks the answers: reflection alone (no .proto files on the client), register, retry, credit
# line, JSON-lines import, exact exposure by county, city and province recomputed here from the
# example files, the risk side in docs/risk.md's order (a right recorded, a pledge on it, a valuation,
# a court's freeze, a programme, a default, a claim computed, decided and paid, the risk columns of
# exposure, the freeze lifted, the default written off), and the signed history (head, proof, a
# signed dump restored under the server's key, which decides every risk entry again).
set -euo pipefail
# grep without -q below: with pipefail, an early-exiting grep -q would fail the pipe on SIGPIPE.
trap 'echo "README examples: 0 passed, 1 failed (line $LINENO)"' ERR
cd "$(dirname "$0")/.."

command -v buf >/dev/null || { echo "buf is not installed (npm install -g @bufbuild/buf)"; exit 1; }
cargo build --release --locked --quiet
# Where cargo put it: CARGO_TARGET_DIR when set (relative to the repository root, as for cargo).
ipledger="${CARGO_TARGET_DIR:-target}/release/ipledger"
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr="127.0.0.1:$port"
"$ipledger" serve --listen "$addr" --data-dir "$data/ipledger-data" >"$data/server.log" 2>&1 &
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

# The risk side (docs/risk.md), in its order: a Guangzhou office and bank.
call_as() {
  local t=$1
  shift
  buf curl --protocol grpc --http2-prior-knowledge -H "authorization: Bearer $t" --reflect-header "authorization: Bearer $t" "$@"
}
office=$(call -d '{"name": "guangzhou-ip-office", "role": "OFFICE", "regionCode": "440100"}' \
  "http://$addr/ipledger.v1.AdminService/CreateToken" | json 'd["token"]')
gzbank=$(call -d '{"name": "bank-gz", "role": "BANK", "creditCode": "914401011905123458"}' \
  "http://$addr/ipledger.v1.AdminService/CreateToken" | json 'd["token"]')
risk="http://$addr/ipledger.v1.RiskService"
# The ids the server assigned, put into the example files' placeholders as docs/risk.md does.
ids() { sed "s/PLEDGE_ID/${pledge:-}/; s/PROGRAMME_ID/${programme:-}/; s/CLAIM_ID/${claim:-}/" "$1"; }
# A call that must be refused with PERMISSION_DENIED.
denied() {
  local out
  if out=$(call_as "$@" 2>&1); then
    echo "allowed: $*"
    false
  fi
  echo "$out" | grep >/dev/null -i permission_denied
}

# The office records the register's word on the patent; a bank reads it (registers are public)
# but may not write it.
call_as "$office" -d @tests/examples/risk-right.json "$risk/RecordRight" \
  | json 'd["rightNumber"], d["state"]["status"], repr(d.get("risk", ""))' | grep -x >/dev/null "ZL202210345678.8 IN_FORCE ''"
call_as "$gzbank" -d '{"rightKind": "INVENTION_PATENT", "rightNumber": "ZL202210345678.8"}' "$risk/GetRight" \
  | json 'd["state"]["holder"]["creditCode"], d["state"]["recordedBy"]' | grep -x >/dev/null "91440106MA59C3K2XE guangzhou-ip-office"
denied "$gzbank" -d @tests/examples/risk-right-lifted.json "$risk/RecordRight"

# The bank's January registration, without expiry dates, backfilled by the admin (a bank records
# its own within 30 days of their date; this one is older): the patent's is bounded by its 20-year
# term from its filing year 2022, the trademark's stays unknown.
registered=$(call -d @tests/examples/risk-register.json "http://$addr/ipledger.v1.PledgeService/RegisterPledge")
echo "$registered" \
  | json '[(r["number"], r.get("expiresOn", ""), r["expiryBasis"], r.get("statutoryTermYears", 0)) for r in d["rights"]]' \
  | grep -xF >/dev/null "[('ZL202210345678.8', '2042-12-31', 'STATUTORY_BOUND', 20), ('41234567', '', 'UNKNOWN', 0)]"
pledge=$(echo "$registered" | json 'd["id"]')

ids tests/examples/risk-valuation.json | call_as "$gzbank" -d @- "$risk/RecordValuation" \
  | json 'd["value"], d["method"]' | grep -x >/dev/null "12000000.00 INCOME"
call_as "$gzbank" -d "{\"id\": \"$pledge\"}" "http://$addr/ipledger.v1.PledgeService/GetPledge" \
  | json 'd["loanToValuePercent"], d.get("atRisk", False)' | grep -x >/dev/null "40.00 False"

# A court freezes the patent: the pledge is flagged at risk.
call_as "$office" -d @tests/examples/risk-right-frozen.json "$risk/RecordRight" \
  | json 'd["risk"], len(d["history"])' | grep -x >/dev/null "FROZEN 1"
call_as "$gzbank" -d "{\"id\": \"$pledge\"}" "http://$addr/ipledger.v1.PledgeService/GetPledge" \
  | json 'd["atRisk"], [(f["rightNumber"], f["reason"]) for f in d["riskFlags"]]' \
  | grep -xF >/dev/null "True [('ZL202210345678.8', 'FROZEN')]"

# The office's programme (Guangzhou's tiers, budget and stop line); a bank may not create one.
denied "$gzbank" -d @tests/examples/risk-programme.json "$risk/CreateProgramme"
created=$(call_as "$office" -d @tests/examples/risk-programme.json "$risk/CreateProgramme")
echo "$created" | json '[(t["loanUpTo"], t["fundSharePercent"]) for t in d["tiers"]], d["stopLinePercent"]' \
  | grep -xF >/dev/null "[('5000000.00', '40'), ('15000000.00', '30'), ('30000000.00', '20')] 3"
programme=$(echo "$created" | json 'd["id"]')
call_as "$gzbank" -d '{"regionCode": "440000"}' "$risk/ListProgrammes" \
  | json '[p["id"] for p in d["programmes"]]' | grep -xF >/dev/null "['$programme']"
call_as "$gzbank" -d "{\"id\": \"$programme\"}" "$risk/GetProgramme" | json 'd["budgetPerYear"]' | grep -x >/dev/null 1500000000.00

# The default with its loss after disposal, and the claim the ledger computes from it: tier 1 (the
# loan of 4.8 M is at most 5 M), 40% of 123,456.79 is 49,382.716, rounded down to the fen; the
# bank bears the rest. The stop line holds: 123,456.79 is 2.57% of the 4.8 M the bank lent in
# Guangzhou in 2026, the claim's year.
ids tests/examples/risk-default.json | call_as "$gzbank" -d @- "$risk/RecordDefault" \
  | json 'd["outstandingPrincipal"], d["loss"]' | grep -x >/dev/null "3600000.00 123456.79"
filed=$(ids tests/examples/risk-claim.json | call_as "$gzbank" -d @- "$risk/FileClaim")
echo "$filed" \
  | json 'd["status"], d["loanAmount"], d["loss"], d["fundSharePercent"], d["fundAmount"], d["insurerAmount"], d["guarantorAmount"], d["bankAmount"], d["bankLending"], d.get("cappedByBudget", False)' \
  | grep -x >/dev/null "FILED 4800000.00 123456.79 40 49382.71 0.00 0.00 74074.08 4800000.00 False"
claim=$(echo "$filed" | json 'd["id"]')
# Filed again with the same request id: the same claim, nothing new.
[ "$(ids tests/examples/risk-claim.json | call_as "$gzbank" -d @- "$risk/FileClaim" | json 'd["id"]')" = "$claim" ]

# The office decides and pays; the bank may do neither.
ids tests/examples/risk-decision.json >"$data/decision.json"
denied "$gzbank" -d @"$data/decision.json" "$risk/DecideClaim"
call_as "$office" -d @"$data/decision.json" "$risk/DecideClaim" \
  | json 'd["status"], d["decidedBy"]' | grep -x >/dev/null "APPROVED guangzhou-ip-office"
ids tests/examples/risk-payment.json | call_as "$office" -d @- "$risk/RecordPayment" \
  | json 'd["paidAmount"], len(d["payments"])' | grep -x >/dev/null "49382.71 1"
call_as "$gzbank" -d "{\"id\": \"$claim\"}" "$risk/GetClaim" | json 'd["status"], d["version"]' | grep -x >/dev/null "APPROVED 3"
call_as "$gzbank" -d '{}' "$risk/ListClaims" | json '[c["id"] for c in d["claims"]]' | grep -xF >/dev/null "['$claim']"
call_as "$office" -d "{\"programmeId\": \"$programme\"}" "$risk/ListClaims" | json 'len(d["claims"])' | grep -x >/dev/null 1

# The risk columns of Guangzhou as its office sees them. The budget columns are this year's (China
# time): the programme runs 2025-2027, and only its 2026 budget carries the claim filed in 2026.
year=$(python3 -c 'import datetime as t; print((t.datetime.now(t.timezone.utc) + t.timedelta(hours=8)).year)')
budget=0.00
if [ "$year" -ge 2025 ] && [ "$year" -le 2027 ]; then budget=1500000000.00; fi
left=$budget
if [ "$year" = 2026 ]; then left=1499950617.29; fi
columns='secured atRisk defaulted nonPerforming appraised loanToValue claimed paid budget left'
echo "exposure 440100 ($columns):"
# tee -a: opening /dev/stderr without append truncates stderr when it is a file (a CI log).
call_as "$office" -d '{"regionCode": "440100"}' "http://$addr/ipledger.v1.ExposureService/GetExposure" \
  | json '" ".join(d["total"][k] for k in ["securedAmount", "atRiskAmount", "defaultedAmount", "nonPerformingPercent", "appraisedValue", "loanToValuePercent", "compensationClaimed", "compensationPaid", "programmeBudget", "programmeBudgetLeft"])' \
  | tee -a /dev/stderr | grep -x >/dev/null "4800000.00 4800000.00 3600000.00 75.00 12000000.00 40.00 49382.71 49382.71 $budget $left"
# A bank sees the risk columns of its own book, and no budget.
call_as "$gzbank" -d '{"regionCode": "440000"}' "http://$addr/ipledger.v1.ExposureService/GetExposure" \
  | json 'd["total"]["atRiskCount"], d["total"]["defaultedCount"], "programmeBudget" in d["total"]' | grep -x >/dev/null "1 1 False"
# As of a date, in business time: on 2026-05-19 the court's freeze (from 2026-05-20) and the
# default (2026-06-30) lie ahead, the valuation (2026-01-08) is known; on 2026-06-30 both count,
# and the claim (filed 2026-09-01) still lies ahead, so the whole budget of 2026 is left.
asof_columns() {
  call_as "$office" -d "{\"regionCode\": \"440100\", \"asOf\": \"$1\"}" "http://$addr/ipledger.v1.ExposureService/GetExposure" \
    | json '" ".join(d["total"][k] for k in ["securedAmount", "atRiskAmount", "defaultedAmount", "appraisedValue", "compensationClaimed", "programmeBudget", "programmeBudgetLeft"])'
}
asof_columns 2026-05-19 | grep -x >/dev/null "4800000.00 0.00 0.00 12000000.00 0.00 1500000000.00 1500000000.00"
asof_columns 2026-06-30 | grep -x >/dev/null "4800000.00 4800000.00 3600000.00 12000000.00 0.00 1500000000.00 1500000000.00"

# The freeze lifted by recording the right without it; the default written off.
call_as "$office" -d @tests/examples/risk-right-lifted.json "$risk/RecordRight" \
  | json 'repr(d.get("risk", "")), len(d["history"])' | grep -x >/dev/null "'' 2"
ids tests/examples/risk-resolve.json | call_as "$gzbank" -d @- "$risk/ResolveDefault" \
  | json 'd["resolution"], d["loss"]' | grep -x >/dev/null "WRITTEN_OFF 123456.79"
call_as "$office" -d '{"regionCode": "440100"}' "http://$addr/ipledger.v1.ExposureService/GetExposure" \
  | json 'd["total"]["atRiskAmount"], d["total"]["defaultedAmount"], d["total"]["compensationPaid"]' \
  | grep -x >/dev/null "0.00 0.00 49382.71"
# The lift is dated (statusSince 2026-11-18): the freeze stays in the past.
asof_columns 2026-06-30 | grep -x >/dev/null "4800000.00 4800000.00 3600000.00 12000000.00 0.00 1500000000.00 1500000000.00"

# Co-owned rights, an invalidation under examination, a fee overdue (docs/risk.md, in its order):
# each refusal's ErrorInfo reason (the detail's first field), and what the registrations answer.
refused_with() {
  local reason=$1 out
  shift
  if out=$(call "$@" 2>&1); then
    echo "accepted: $*"
    false
  fi
  # buf curl prints the detail's bytes in base64 without padding.
  echo "$out" | python3 -c 'import base64, json, sys; s = json.load(sys.stdin)["details"][0]["value"]; v = base64.b64decode(s + "=" * (-len(s) % 4)); print(v[2:2 + v[1]].decode())' \
    | grep -x >/dev/null "$reason"
}
pledges="http://$addr/ipledger.v1.PledgeService"
call -d @tests/examples/registers-right-coowned.json "$risk/RecordRight" \
  | json 'd["state"]["holderSharePercent"], d["state"]["coHolders"][0]["sharePercent"]' | grep -x >/dev/null "60 40"
refused_with CO_OWNER_MISSING -d @tests/examples/registers-pledge-alone.json "$pledges/RegisterPledge"
call -d @tests/examples/registers-pledge-coowned.json "$pledges/RegisterPledge" \
  | json 'd["coPledgors"][0]["creditCode"], d.get("atRisk", False)' | grep -x >/dev/null "91330100716105852F False"
call -d @tests/examples/registers-right-invalidation.json "$risk/RecordRight" | json 'd["risk"]' | grep -x >/dev/null INVALIDATION_PENDING
refused_with RIGHT_INVALIDATION_PENDING -d @tests/examples/registers-pledge-invalidation.json "$pledges/RegisterPledge"
call -d @tests/examples/registers-pledge-invalidation-accepted.json "$pledges/RegisterPledge" \
  | json '[f["reason"] for f in d["riskFlags"]]' | grep -x >/dev/null "\['INVALIDATION_PENDING'\]"
call -d @tests/examples/registers-right-fee.json "$risk/RecordRight" | json 'd["risk"]' | grep -x >/dev/null FEE_OVERDUE
refused_with RIGHT_FEE_OVERDUE -d @tests/examples/registers-pledge-fee.json "$pledges/RegisterPledge"

# Alerts (docs/risk.md, "Alerts"): the defaults raise none on this pledge; a loan-to-value
# threshold of 35% does (40.00), for the bank and for its region's office; a window of 0 days is
# refused field by field.
call_as "$gzbank" -d '{}' "$risk/GetAlertPolicy" \
  | json 'd["expiryWithinDays"], d["defaultUnresolvedDays"], repr(d.get("loanToValueMaxPercent", ""))' \
  | grep -x >/dev/null "180 90 ''"
call_as "$gzbank" -d '{}' "$risk/ListAlerts" | json 'len(d.get("alerts", []))' | grep -x >/dev/null 0
policy='"pledgeeCreditCode": "914401011905123458", "expiryWithinDays": 180, "newlyAtRiskDays": 30, "defaultUnresolvedDays": 60, "claimUndecidedDays": 60'
call_as "$gzbank" -d "{\"policy\": {$policy, \"loanToValueMaxPercent\": \"35\"}}" "$risk/SetAlertPolicy" \
  | json 'd["setBy"], d["loanToValueMaxPercent"]' | grep -x >/dev/null "bank-gz 35"
call_as "$gzbank" -d '{}' "$risk/ListAlerts" \
  | json '[(a["kind"], a["pledgeId"], a["loanToValuePercent"], a["thresholdPercent"]) for a in d["alerts"]]' \
  | grep -xF >/dev/null "[('LOAN_TO_VALUE_ABOVE_POLICY', '$pledge', '40.00', '35')]"
call_as "$office" -d '{"regionCode": "440100", "kind": "LOAN_TO_VALUE_ABOVE_POLICY"}' "$risk/ListAlerts" \
  | json 'len(d["alerts"])' | grep -x >/dev/null 1
denied "$office" -d "{\"policy\": {$policy}}" "$risk/SetAlertPolicy"
if out=$(call_as "$gzbank" -d '{"policy": {"pledgeeCreditCode": "914401011905123458"}}' "$risk/SetAlertPolicy" 2>&1); then
  echo "a policy without windows was accepted"
  false
fi
echo "$out" | grep >/dev/null policy.expiryWithinDays

# Caps and shared losses (docs/risk.md, "Caps and shared losses, step by step"): Guangzhou 2023's
# caps on one borrower's loans, then Guangzhou's "5311" on an odd-fen loss.
rid() { python3 -c 'import uuid; print(uuid.uuid4())'; }
fill() { sed "s/REQUEST_ID/$(rid)/; s/PLEDGE_ID/${loan_id:-}/; s/PROGRAMME_ID/${scheme:-}/; s/TRADEMARK_NUMBER/$tm/; s/LOAN_AMOUNT/$loan/; s/LOSS_AMOUNT/$loss/" "$1"; }
lose() {
  loan=$1 loss=$2 tm=$3
  loan_id=$(fill tests/examples/caps-register.json | call -d @- "http://$addr/ipledger.v1.PledgeService/RegisterPledge" | json 'd["id"]')
  fill tests/examples/caps-default.json | call_as "$gzbank" -d @- "$risk/RecordDefault" >/dev/null
}
split() { json 'd["fundAmount"], d["insurerAmount"], d["valuerAmount"], d["bankAmount"], d.get("cappedBy", "-"), d["borrowerFundBefore"]'; }
scheme=$(call_as "$office" -d @tests/examples/caps-programme.json "$risk/CreateProgramme" | json 'd["id"]')
lose 30000000.00 30000000.00 51000001
fill tests/examples/caps-claim.json | call_as "$gzbank" -d @- "$risk/FileClaim" | split \
  | grep -x >/dev/null "10000000.00 0.00 0.00 20000000.00 LOAN_CAP 0.00"
lose 30000000.00 30000000.00 51000002
fill tests/examples/caps-claim.json | call_as "$gzbank" -d @- "$risk/FileClaim" | split \
  | grep -x >/dev/null "10000000.00 0.00 0.00 20000000.00 BORROWER_YEAR_CAP 10000000.00"
lose 4000000.00 1000000.00 51000003
if out=$(fill tests/examples/caps-claim.json | call_as "$gzbank" -d @- "$risk/FileClaim" 2>&1); then
  echo "a third loan of the borrower's year was compensated: $out"
  false
fi
# buf curl shows the ErrorInfo (reason BORROWER_CAP_REACHED) encoded: its code and message tell.
echo "$out" | grep >/dev/null failed_precondition
echo "$out" | grep >/dev/null "pays at most 20000000.00 a year for one borrower's loans"
scheme=$(call_as "$office" -d @tests/examples/shared-loss-programme.json "$risk/CreateProgramme" | json 'd["id"]')
lose 5000000.00 1234567.89 51000004
fill tests/examples/caps-claim.json | call_as "$gzbank" -d @- "$risk/FileClaim" | split \
  | grep -x >/dev/null "617283.94 370370.36 123456.78 123456.81 - 0.00"

# Signed history: the signed head and a proof of the last write, then a signed dump restored
# under the server's key into a new directory, which verifies.
head=$(call -d '{}' "http://$addr/ipledger.v1.JournalService/GetSignedHead")
sequence=$(echo "$head" | json 'd["sequence"]')
[ "$(echo "$head" | json 'd["publicKey"]')" = "$(cat "$data/ipledger-data/signing-key.pub")" ]
call -d "{\"sequence\": $sequence}" "http://$addr/ipledger.v1.JournalService/GetJournalProof" \
  | json 'len(d["entries"]), d["signedHead"]["sequence"]' | grep -x >/dev/null "1 $sequence"
"$ipledger" export --server "http://$addr" --token-file "$data/ipledger-data/admin.token" >"$data/journal.jsonl"
"$ipledger" restore --data-dir "$data/restored" --input "$data/journal.jsonl" \
  --trusted-key "$data/ipledger-data/signing-key.pub" | grep >/dev/null "^ok: $sequence entries"

kill -TERM $server
wait $server
grep -q "every accepted write is committed" "$data/server.log"
echo "README examples: 1 passed, 0 failed"
