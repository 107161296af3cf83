"""What an ipledger admin does once before a bank's system can connect: create the bank's principal
and bearer token (AdminService/CreateToken) and sign a credit line for the bank in a region
(CreditLineService/CreateCreditLine), so the bank's pledges can draw on it.

Why a script: bank_client.py needs both, and tests/python_client.sh sets them up with this over
gRPC against the running server, as an admin would with grpcurl (README "Access control" and
"Credit lines"). The bank token is written to a file readable by its owner only, never printed:
a token on a terminal or in a CI log is a token leaked.

Usage (stubs generated first with generate_stubs.sh):

    python3 admin_setup.py 127.0.0.1:50051 --admin-token-file ipledger-data/admin.token \\
        --bank-token-out bank.token

Prints `bank principal <name> <credit code>` and `credit line <id> limit <limit> available <amount>`.
"""

import argparse
import os
import sys
import uuid
from pathlib import Path

import grpc

# The generated modules live outside the repository's tracked files (generate_stubs.sh writes them
# to ./generated, or IPLEDGER_STUBS names another directory).
sys.path.insert(0, os.environ.get("IPLEDGER_STUBS", str(Path(__file__).resolve().parent / "generated")))
from ipledger.v1 import ipledger_pb2 as pb  # noqa: E402
from ipledger.v1 import ipledger_pb2_grpc as rpc  # noqa: E402

DEADLINE_S = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address", help="host:port of the ipledger server")
    parser.add_argument("--admin-token-file", required=True, help="the admin token (the server writes admin.token)")
    parser.add_argument("--bank-token-out", required=True, help="where to write the bank's new token (mode 0600)")
    parser.add_argument("--ca-cert", help="PEM of the CA that signed the server's certificate (TLS); none: plaintext")
    parser.add_argument("--bank-name", default="bank-hz", help="the bank principal's name")
    parser.add_argument("--bank-credit-code", default="914403001922038216")
    parser.add_argument("--bank-display-name", default="某某银行杭州分行")
    parser.add_argument("--region", default="330100", help="the credit line's region (province, city or county code)")
    parser.add_argument("--limit", default="50000000.00", help="the credit line's limit in yuan")
    parser.add_argument("--valid-from", default="2019-01-01")
    parser.add_argument("--valid-to", default="2030-12-31")
    args = parser.parse_args()

    admin_token = Path(args.admin_token_file).read_text().strip()
    auth = (("authorization", f"Bearer {admin_token}"),)
    if args.ca_cert:
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(args.ca_cert).read_bytes())
        channel = grpc.secure_channel(args.address, credentials)
    else:
        # Plaintext: only for a server on loopback (it refuses plaintext on other addresses).
        channel = grpc.insecure_channel(args.address)
    with channel:
        token = rpc.AdminServiceStub(channel).CreateToken(
            pb.CreateTokenRequest(name=args.bank_name, role=pb.BANK, credit_code=args.bank_credit_code),
            metadata=auth,
            timeout=DEADLINE_S,
        )
        # Created with mode 0600 from the start: no moment where another user could read it.
        fd = os.open(args.bank_token_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token.token + "\n")
        print(f"bank principal {token.principal.name} {token.principal.credit_code}")

        # The request id is derived from what the line is, so running this again returns the same line
        # instead of signing a second one (a retry with the same id and content is answered, not redone).
        request_id = uuid.uuid5(
            uuid.NAMESPACE_URL,
            f"ipledger-example-credit-line:{args.bank_credit_code}:{args.region}:{args.limit}:{args.valid_from}",
        )
        line = rpc.CreditLineServiceStub(channel).CreateCreditLine(
            pb.CreateCreditLineRequest(
                request_id=str(request_id),
                credit_line=pb.CreditLine(
                    bank=pb.Party(name=args.bank_display_name, credit_code=args.bank_credit_code),
                    region_code=args.region,
                    program="知识产权质押融资银企合作",
                    limit=args.limit,
                    valid_from=args.valid_from,
                    valid_to=args.valid_to,
                ),
            ),
            metadata=auth,
            timeout=DEADLINE_S,
        )
        print(f"credit line {line.id} limit {line.limit} available {line.available}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
