"""A bank's system talking to ipledger over gRPC, as documentation for bank integrators.

What it does, in the order a bank's loan system would:
  1. connects with the bank's bearer token (`authorization: Bearer ipl_…` metadata on every call);
  2. registers a pledge for a loan (the pledge read from a JSON file in the proto's JSON form, as in
     docs/api-guide.md "Register a pledge"), with a request id the client chooses and a deadline;
  3. retries safely: the first attempt gets a deliberately tiny deadline (1 ms), so it nearly always
     ends in DEADLINE_EXCEEDED (or CANCELLED "Timeout expired" when the server's side of the deadline
     ends it first) with its outcome unknown: the server may have committed it or not. The retry
     sends the same request with the same request id, and the ledger answers with the pledge it
     recorded, never a second one. (When the first attempt does answer in time, the output says
     "after 1 attempts"; `--first-deadline-ms 0` makes the timeout certain, the deadline being over
     before the request leaves.) The identical request is then sent once more, as after a lost
     answer, to show it returns the same pledge, and the bank's pledge count is checked throughout;
  4. reads the exposure of the bank's own book (ExposureService/GetExposure);
  5. follows the change feed (JournalService/WatchEvents) from the sequence saved by the previous
     run, saving the last sequence seen, so a second run resumes after it and sees only newer events;
  6. provokes two refusals and decodes their google.rpc.Status details with grpcio-status: a
     malformed request (INVALID_ARGUMENT, a google.rpc.BadRequest naming each bad field) and a rule
     broken by the ledger's state (FAILED_PRECONDITION, a google.rpc.ErrorInfo whose reason a
     program branches on: here the same loan sent with a fresh request id, RIGHT_ALREADY_PLEDGED).

Why: the proto file alone does not say how to authenticate, how to retry a write without doubling
it, how to read the error details or how to resume a feed; this program shows each, runs in CI
against the real server (tests/python_client.sh), and prints plain lines a test can check.

Usage (stubs generated first with generate_stubs.sh; the token from the admin, see admin_setup.py):

    IPLEDGER_TOKEN_FILE=bank.token python3 bank_client.py 127.0.0.1:50051 \\
        --loan loans/hangzhou-1.json --credit-line <credit line id> --state-dir state
"""

import argparse
import datetime
import os
import sys
import time
import uuid
from pathlib import Path

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

# The generated modules live outside the repository's tracked files (generate_stubs.sh writes them
# to ./generated, or IPLEDGER_STUBS names another directory), so they always match the proto.
sys.path.insert(0, os.environ.get("IPLEDGER_STUBS", str(Path(__file__).resolve().parent / "generated")))
from ipledger.v1 import ipledger_pb2 as pb  # noqa: E402
from ipledger.v1 import ipledger_pb2_grpc as rpc  # noqa: E402

# Every call gets a deadline: without one a call to a server that stopped answering waits forever.
# The server bounds unary calls at 30 s itself; a bank's own budget is usually shorter.
DEADLINE_S = 10.0
# How often a write is tried in all before the bank gives up (and keeps the request id to try later).
ATTEMPTS = 5
# Codes after which the write's outcome is unknown or nothing was written: safe to resend with the
# same request id. Any other code is an answer (the ledger decided) and resending cannot change it.
# CANCELLED is among them: the server's gRPC library (tonic) honours the client's deadline itself
# and, when it runs out there first, answers CANCELLED "Timeout expired" instead of
# DEADLINE_EXCEEDED; the write may still commit then, exactly as after DEADLINE_EXCEEDED.
RETRYABLE = (
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
)


def read_token(token_file: str | None) -> str:
    """The bank's token: from a file (preferred) or the environment, never from the command line,
    where every user of the machine could read it in the process list (as `ipledger` itself does)."""
    path = token_file or os.environ.get("IPLEDGER_TOKEN_FILE")
    if path:
        return Path(path).read_text().strip()
    token = os.environ.get("IPLEDGER_TOKEN")
    if not token:
        sys.exit("no token: give --token-file FILE, or set IPLEDGER_TOKEN_FILE or IPLEDGER_TOKEN")
    return token


def open_channel(address: str, ca_cert: str | None) -> grpc.Channel:
    """A plaintext channel for a server on loopback (the server refuses plaintext elsewhere), or TLS
    checked against the CA the bank was given."""
    if ca_cert:
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca_cert).read_bytes())
        return grpc.secure_channel(address, credentials)
    return grpc.insecure_channel(address)


def decode_error(err: grpc.RpcError) -> list[str]:
    """One line per thing a program would branch on in a refusal. The server puts a google.rpc.Status
    in the trailers (grpc-status-details-bin); rpc_status.from_call unpacks it, and each detail is
    a google.protobuf.Any to unpack into the googleapis type it holds."""
    code = err.code().name
    status = rpc_status.from_call(err)
    if status is None:
        # A failure from the transport or the client library itself (no details from the ledger).
        return [f"error {code} message={err.details()}"]
    lines = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            # The reason is the stable, documented name (docs/errors.md); the metadata
            # says which right, line or number it concerns. Sorted, so the line is stable.
            metadata = "".join(f" {key}={info.metadata[key]}" for key in sorted(info.metadata))
            lines.append(f"error {code} reason={info.reason} domain={info.domain}{metadata}")
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            # Field paths use the JSON names (`pledge.securedAmount`, `pledge.rights[0].number`), so
            # a bank can point at the field of its own form that was wrong.
            for violation in bad.field_violations:
                lines.append(f"error {code} field={violation.field} description={violation.description}")
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            lines.append(f"error {code} retry_after={retry.retry_delay.ToTimedelta().total_seconds()}s")
        elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            resource = error_details_pb2.ResourceInfo()
            detail.Unpack(resource)
            lines.append(f"error {code} resource={resource.resource_type} {resource.resource_name}")
    return lines or [f"error {code} message={status.message}"]


def retry_delay(err: grpc.RpcError, attempt: int) -> float:
    """How long to wait before the next attempt: the server's RetryInfo when it sent one (a bound of
    its capacity was reached), else exponential backoff from 100 ms."""
    status = rpc_status.from_call(err)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            return retry.retry_delay.ToTimedelta().total_seconds()
    return 0.1 * 2**attempt


class Bank:
    """The bank's view of the ledger: one channel, its token on every call."""

    def __init__(self, channel: grpc.Channel, token: str):
        self.auth = (("authorization", f"Bearer {token}"),)
        self.pledges = rpc.PledgeServiceStub(channel)
        self.exposure = rpc.ExposureServiceStub(channel)
        self.journal = rpc.JournalServiceStub(channel)
        # The journal sequence of the bank's last write (response header x-ipledger-sequence): sent
        # as x-ipledger-min-sequence with reads, so a read on any node of a cluster reflects it.
        self.last_write_sequence = 0

    def read_metadata(self):
        if self.last_write_sequence:
            return self.auth + (("x-ipledger-min-sequence", str(self.last_write_sequence)),)
        return self.auth

    def register(self, request: pb.RegisterPledgeRequest, first_deadline_s: float) -> tuple[pb.Pledge, int]:
        """RegisterPledge until the ledger answers; the pledge and the attempts it took. Every
        attempt sends the same request, request id included: a write that committed but whose
        answer was lost is answered again, not redone."""
        for attempt in range(ATTEMPTS):
            deadline = first_deadline_s if attempt == 0 else DEADLINE_S
            try:
                pledge, call = self.pledges.RegisterPledge.with_call(request, metadata=self.auth, timeout=deadline)
            except grpc.RpcError as err:
                if err.code() not in RETRYABLE or attempt == ATTEMPTS - 1:
                    raise
                # The ledger may or may not have recorded the pledge: only a retry with the same
                # request id can tell, and it cannot record it twice.
                print(
                    f"attempt {attempt + 1} {err.code().name}: outcome unknown,"
                    f" retrying with request id {request.request_id}"
                )
                time.sleep(retry_delay(err, attempt))
                continue
            self.note_sequence(call)
            return pledge, attempt + 1
        raise AssertionError("unreachable: the last attempt raises or returns")

    def note_sequence(self, call) -> None:
        for key, value in call.initial_metadata():
            if key == "x-ipledger-sequence":
                self.last_write_sequence = max(self.last_write_sequence, int(value))

    def book(self, group_by=pb.EXPOSURE_GROUP_BY_UNSPECIFIED) -> pb.GetExposureResponse:
        # An empty region is the caller's whole scope: for a bank, its own book in every region.
        return self.exposure.GetExposure(
            pb.GetExposureRequest(group_by=group_by), metadata=self.read_metadata(), timeout=DEADLINE_S
        )


def load_loan(path: str, credit_line: str | None) -> pb.Pledge:
    """The pledge of a loan, in the proto's JSON form (what tests/examples/register.json has under
    "pledge"); json_format checks the field names and types against the generated messages.

    `registeredOn` is the day CNIPA registered the pledge, from its notice. A bank records its
    registrations within 30 days of that day (older ones are an IP office's backfill), so a loan
    file without one is registered today, in China (UTC+8), where registrations are dated."""
    pledge = json_format.Parse(Path(path).read_text(encoding="utf-8"), pb.Pledge())
    if not pledge.registered_on:
        china = datetime.timezone(datetime.timedelta(hours=8))
        pledge.registered_on = datetime.datetime.now(china).date().isoformat()
    if credit_line:
        pledge.credit_line_id = credit_line
    return pledge


def register_and_retry(bank: Bank, pledge: pb.Pledge, first_deadline_s: float) -> pb.Pledge:
    before = bank.book().total.pledge_count
    # A real system generates the request id when it decides to register the loan, and stores it
    # with the loan before the first attempt: after a crash of its own it resends with the stored
    # id. A new id is a new registration (see the FAILED_PRECONDITION below).
    request = pb.RegisterPledgeRequest(request_id=str(uuid.uuid4()), pledge=pledge)
    print(f"request id {request.request_id}")
    registered, attempts = bank.register(request, first_deadline_s)
    print(
        f"registered pledge {registered.id} registration {registered.registration_number}"
        f" amount {registered.secured_amount} status {pb.PledgeStatus.Name(registered.status)}"
        f" after {attempts} attempts"
    )
    after_registration = bank.book().total.pledge_count

    # The identical request once more, as a bank resends when an answer was lost: the same pledge
    # comes back (same id, same version) and nothing is recorded.
    again, _ = bank.register(request, DEADLINE_S)
    if again.id != registered.id or again.version != registered.version:
        sys.exit(f"retry returned another pledge {again.id} (version {again.version}), not {registered.id}")
    print(f"retry returned the same pledge {again.id} version {again.version}")
    after_retry = bank.book().total.pledge_count
    print(f"pledge count before {before} after registration {after_registration} after retry {after_retry}")
    if after_registration != before + 1 or after_retry != after_registration:
        sys.exit("the pledge count moved by other than the one registration")
    return registered


def print_exposure(bank: Bank) -> None:
    """The bank's book now: its total and one row per right kind (a pledge of a patent and a
    trademark counts in both rows). Amounts are exact decimal strings: never parse them as floats."""
    answer = bank.book(pb.RIGHT_KIND)
    total = answer.total
    print(
        f"exposure total secured={total.secured_amount} pledges={total.pledge_count}"
        f" enterprises={total.enterprise_count} rights={total.right_count}"
        f" credit_limit={total.credit_limit or '-'} credit_drawn={total.credit_drawn or '-'}"
    )
    for row in answer.rows:
        if row.pledge_count:
            print(
                f"exposure {row.key} secured={row.secured_amount} pledges={row.pledge_count} rights={row.right_count}"
            )


def provoke_errors(bank: Bank, loan: pb.Pledge) -> None:
    # 1. Malformed: an amount with three decimals and a credit code whose check character is wrong.
    #    Checked before anything is looked up; every bad field is named, not only the first.
    bad = pb.Pledge()
    bad.CopyFrom(loan)
    bad.secured_amount = "15000000.005"
    code = bad.pledgor.credit_code
    bad.pledgor.credit_code = code[:-1] + ("0" if code[-1] != "0" else "1")
    try:
        bank.pledges.RegisterPledge(
            pb.RegisterPledgeRequest(request_id=str(uuid.uuid4()), pledge=bad), metadata=bank.auth, timeout=DEADLINE_S
        )
        sys.exit("a malformed pledge was accepted")
    except grpc.RpcError as err:
        for line in decode_error(err):
            print(line)

    # 2. Well-formed but refused by the ledger's state: the loan already registered, sent with a
    #    fresh request id, as a system that lost its request id would. The ledger does not
    #    register the right twice; the ErrorInfo names the right and, since this bank may read it,
    #    the pledge that holds it. Resending with the original request id is the way to learn it.
    try:
        bank.pledges.RegisterPledge(
            pb.RegisterPledgeRequest(request_id=str(uuid.uuid4()), pledge=loan), metadata=bank.auth, timeout=DEADLINE_S
        )
        sys.exit("the same loan was registered twice")
    except grpc.RpcError as err:
        for line in decode_error(err):
            print(line)


def save_sequence(path: Path, sequence: int) -> None:
    # Written to a temporary file and renamed over the old one: a crash mid-write leaves the old
    # sequence or the new one, never a torn number.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{sequence}\n")
    os.replace(tmp, path)


def follow_feed(bank: Bank, state_dir: Path, follow_s: float) -> None:
    """The change feed from the sequence after the last one this bank processed. It streams the
    history, then follows new events as they commit; events outside the bank's book are skipped by
    the server. A bank's system keeps it open for good; this example stops at the journal's head as
    it was when it started (or after `follow_s` seconds when the last events are not the bank's)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    saved = state_dir / "feed.sequence"
    last = int(saved.read_text()) if saved.exists() else 0
    print(f"feed resumes after sequence {last}" if last else "feed starts at the beginning")
    head = bank.journal.GetSignedHead(pb.GetSignedHeadRequest(), metadata=bank.auth, timeout=DEADLINE_S).sequence
    if head <= last:
        print(f"feed up to date at sequence {last}")
        return
    # No gap, no duplicate: resume with the last sequence seen + 1.
    feed = bank.journal.WatchEvents(pb.WatchEventsRequest(from_sequence=last + 1), metadata=bank.auth, timeout=follow_s)
    try:
        for event in feed:
            print(f"event {event.sequence} {event.event} {subject(event)}")
            # Saved after the event is handled: a crash in between handles it again on resume
            # (at least once), so handle events idempotently, e.g. keyed by their sequence.
            save_sequence(saved, event.sequence)
            if event.sequence >= head:
                break
    except grpc.RpcError as err:
        # The follow window ended before an event of the bank's at or past the head arrived (ended
        # by the client's timer, or by the server's side of the deadline: see RETRYABLE).
        if err.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            raise
    finally:
        feed.cancel()
    print(f"feed saved sequence {saved.read_text().strip() if saved.exists() else 0}")


def subject(event: pb.JournalEvent) -> str:
    if event.HasField("pledge"):
        p = event.pledge
        return f"pledge {p.id} {p.registration_number} {p.secured_amount}"
    if event.HasField("credit_line"):
        return f"credit line {event.credit_line.id} {event.credit_line.limit}"
    if event.HasField("token"):
        return f"principal {event.token.name}"
    return f"by {event.principal}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address", help="host:port of the ipledger server")
    parser.add_argument("--token-file", help="the bank's token (default: $IPLEDGER_TOKEN_FILE, else $IPLEDGER_TOKEN)")
    parser.add_argument("--ca-cert", help="PEM of the CA that signed the server's certificate (TLS); none: plaintext")
    parser.add_argument("--loan", required=True, help="the pledge to register, as JSON (see loans/)")
    parser.add_argument("--credit-line", help="id of the bank's credit line the pledge draws on")
    parser.add_argument("--state-dir", default="state", help="where the feed's last sequence is kept between runs")
    parser.add_argument(
        "--first-deadline-ms",
        type=float,
        default=1.0,
        help="deadline of the first attempt, tiny so that the retry path is shown (0: always times out);"
        " a real system uses its normal deadline on every attempt",
    )
    parser.add_argument("--follow-seconds", type=float, default=5.0, help="how long to follow the feed at most")
    args = parser.parse_args()

    with open_channel(args.address, args.ca_cert) as channel:
        # Connect before the first call, so the tiny first deadline is spent on the call, not on
        # the TCP and HTTP/2 handshake.
        grpc.channel_ready_future(channel).result(timeout=DEADLINE_S)
        bank = Bank(channel, read_token(args.token_file))
        loan = load_loan(args.loan, args.credit_line)
        register_and_retry(bank, loan, args.first_deadline_ms / 1000)
        print_exposure(bank)
        follow_feed(bank, Path(args.state_dir), args.follow_seconds)
        provoke_errors(bank, loan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
