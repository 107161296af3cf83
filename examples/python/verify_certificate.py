"""Checks an ipledger pledge certificate offline, as a bank does before it relies on one.

A pledge certificate (ipledger.v1.PledgeCertificate, fetched with PledgeService/GetPledgeCertificate
and saved as the proto3 JSON grpcurl or buf curl print) carries a pledge's journal entries, each
with an inclusion proof in a Merkle tree (RFC 9162), and the tree head the server signed. This
program checks, with nothing but hashlib and an Ed25519 library (no gRPC, no protobuf library, no
ipledger code, no network):

  1. the tree head's Ed25519 signature, by the key the bank trusts (the server's signing-key.pub);
  2. each entry's inclusion proof (RFC 9162 §2.1.3.2) against the signed root: the entry is in the
     history the server signed, and no one can change a byte of it without breaking the proof;
  3. what each entry says, read from its own bytes (a tiny protobuf wire-format reader): its
     sequence, time, principal, event and pledge id agree with the certificate's plain fields, so
     those fields cannot say something the signed bytes do not; the registration comes first;
  4. the certificate's digest (what the printed certificate's QR code carries) over the tree head
     and the entries;
  5. the cosignatures of the witnesses the bank names (--witness-key): they kept the same tree
     head, so the server cannot show the bank a history it shows no one else.

Why offline and self-contained: a bank should not have to trust the server that wrote the
certificate, nor run its code, to know a certificate is genuine; the formats are simple enough
(SHA-256, Ed25519, a few protobuf fields) to check in one short file a bank's engineers can read.

What it does not prove: that the certificate lists every entry of the pledge (the server chose the
entries; a later change would be in a later tree head), nor anything about the pledge beyond the
fields read here.

Usage:

    python3 verify_certificate.py CERT.json --key signing-key.pub [--witness-key HEX_OR_FILE ...]

Exit status: 0 when everything checks (a summary on stdout), 1 when anything does not (one line on
stderr saying why), 2 for a usage error.
"""

import argparse
import base64
import dataclasses
import datetime
import hashlib
import json
import re
import sys
import uuid
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# The signed messages start with a context and a zero byte, so a signature over one kind of
# message can never be taken for another (docs and the proto's comments give each layout).
TREE_HEAD_CONTEXT = b"ipledger signed tree head v1\x00"
COSIGNATURE_CONTEXT = b"ipledger tree head cosignature v1\x00"
DIGEST_CONTEXT = b"ipledger pledge certificate v1\x00"

# The entry format this verifier reads (docs/journal-format.md): version byte 1, then the protobuf
# encoding of ipledger.journal.v1.Entry.
ENTRY_VERSION = 1
# Entry's `event` oneof: the field numbers of the pledge events and their names in the certificate.
EVENTS = {10: "PLEDGE_REGISTERED", 11: "PLEDGE_CHANGED", 12: "PLEDGE_RELEASED"}
REGISTERED = "PLEDGE_REGISTERED"

# Protobuf wire types (https://protobuf.dev/programming-guides/encoding/).
VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5

# The ledger's business happens in China: entry times are shown there (UTC+8, no daylight saving).
CHINA = datetime.timezone(datetime.timedelta(hours=8))
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
ONE_MICROSECOND = datetime.timedelta(microseconds=1)

U64_MAX = (1 << 64) - 1


class Invalid(Exception):
    """The certificate does not check (or cannot be read); the message says why, in one line."""


# ---- RFC 9162 §2.1: the Merkle tree's hashes and the inclusion proof's verification ----


def sha256(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()


def leaf_hash(entry):
    """RFC 9162 §2.1.1: a leaf is SHA-256(0x00 || entry). The prefixes keep a leaf from ever
    passing for an interior node (second-preimage attacks)."""
    return sha256(b"\x00", entry)


def node_hash(left, right):
    """RFC 9162 §2.1.1: an interior node is SHA-256(0x01 || left || right)."""
    return sha256(b"\x01", left, right)


def verify_inclusion(leaf, index, size, proof, root):
    """RFC 9162 §2.1.3.2, step by step: whether `proof` (hashes from the leaf's sibling up) shows
    `leaf` is leaf `index` of the tree of `size` leaves whose root is `root`. A proof with a hash
    too many or too few fails: sn must reach 0 exactly when the hashes run out."""
    if index >= size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False  # hashes left over: the proof is too long
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # Levels where this node is the last and has no right sibling: it is carried up
            # unhashed, so skip them (a no-op when fn is odd).
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# ---- A protobuf wire-format reader: just enough for the entry's few fields ----


def read_varint(buf, pos):
    """A base-128 varint at `pos`: (value, position after it). At most 10 bytes, 64 bits."""
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(buf):
            raise Invalid("entry encoding: truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value > U64_MAX:
                raise Invalid("entry encoding: varint over 64 bits")
            return value, pos
    raise Invalid("entry encoding: varint longer than 10 bytes")


def read_fields(buf):
    """Every field of a message as (number, wire type, value): an int for varints and fixed
    fields, bytes for length-delimited ones. Unknown fields are read like any other, so a later
    version's additions are skipped by the caller rather than refused."""
    fields, pos = [], 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise Invalid("entry encoding: field number 0")
        value, pos = read_value(buf, pos, wire_type)
        fields.append((number, wire_type, value))
    return fields


def read_value(buf, pos, wire_type):
    if wire_type == VARINT:
        return read_varint(buf, pos)
    if wire_type in (FIXED64, FIXED32):
        end = pos + (8 if wire_type == FIXED64 else 4)
        if end > len(buf):
            raise Invalid("entry encoding: truncated fixed-width field")
        return int.from_bytes(buf[pos:end], "little"), end
    if wire_type == LEN:
        length, pos = read_varint(buf, pos)
        if length > len(buf) - pos:
            raise Invalid("entry encoding: length-delimited field runs past the end")
        return bytes(buf[pos : pos + length]), pos + length
    # Groups (3, 4) are proto2-only and never in the journal; 6 and 7 do not exist.
    raise Invalid(f"entry encoding: unsupported wire type {wire_type}")


def pick_fields(buf, wanted, what):
    """The fields numbered in `wanted` ({number: wire type}), each at most once, by number.

    A field the writer (prost) wrote once appearing twice, or with another wire type, is refused
    rather than resolved: protobuf's own rules (last one wins, messages merge) would let two
    readers disagree about what the signed bytes say."""
    found = {}
    for number, wire_type, value in read_fields(buf):
        if number not in wanted:
            continue
        if wire_type != wanted[number]:
            raise Invalid(f"{what}: field {number} has wire type {wire_type}, expected {wanted[number]}")
        if number in found:
            raise Invalid(f"{what}: field {number} appears twice")
        found[number] = value
    return found


# ---- The journal entry (docs/journal-format.md, proto/ipledger/journal/v1/journal.proto) ----


@dataclasses.dataclass
class Entry:
    sequence: int
    at_micros: int
    principal: str
    event: str
    pledge_id: bytes
    registration_number: str  # PledgeRegistered only; "" for the other events


def decode_entry(data):
    """Reads a stored entry's bytes: the version byte, then ipledger.journal.v1.Entry."""
    if not data:
        raise Invalid("entry is empty")
    if data[0] == 0:
        raise Invalid(
            "entry is version 0 (a legacy entry written before the journal format): "
            "this verifier reads version 1 only; the Rust verifier `ipledger certificate verify` reads it"
        )
    if data[0] != ENTRY_VERSION:
        raise Invalid(f"entry has version byte {data[0]}, this verifier reads version {ENTRY_VERSION} only")
    wanted = {1: VARINT, 3: VARINT, 4: LEN, **{number: LEN for number in range(10, 27)}}
    fields = pick_fields(data[1:], wanted, "entry")
    events = [number for number in fields if number >= 10]
    if not events:
        raise Invalid("entry has no event this verifier knows (a pledge event is field 10, 11 or 12)")
    if len(events) > 1:
        raise Invalid(f"entry has {len(events)} events in its oneof, expected one")
    if events[0] not in EVENTS:
        raise Invalid(f"entry's event (field {events[0]}) is not a pledge event")
    event = EVENTS[events[0]]
    body = pick_fields(fields[events[0]], {1: LEN, 2: LEN} if event == REGISTERED else {1: LEN}, event)
    return Entry(
        sequence=fields.get(1, 0),
        # int64 on the wire is the 64-bit two's complement as an unsigned varint.
        at_micros=signed64(fields.get(3, 0)),
        principal=utf8(fields.get(4, b""), "entry's principal"),
        event=event,
        pledge_id=body.get(1, b""),
        registration_number=utf8(body.get(2, b""), "entry's registration number"),
    )


def signed64(value):
    return value - (1 << 64) if value >= 1 << 63 else value


def utf8(raw, what):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid(f"{what} is not UTF-8") from None


# ---- Reading the certificate's proto3 JSON ----


def get(obj, camel, kind, default):
    """Field `camel` of a JSON object, of Python type `kind`; `default` when absent (proto3 JSON
    leaves out empty fields). Parsers must accept the proto field name too (snake_case)."""
    if not isinstance(obj, dict):
        raise Invalid(f"expected a JSON object holding {camel}")
    snake = re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), camel)
    names = [name for name in dict.fromkeys((camel, snake)) if name in obj]
    if len(names) > 1:
        raise Invalid(f"both {camel} and {snake} are present")
    value = obj[names[0]] if names else default
    if value is None:  # proto3 JSON: null is the default value
        value = default
    # bool is an int to Python, never to JSON.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise Invalid(f"{camel} is not a JSON {JSON_TYPES[kind]}")
    return value


JSON_TYPES = {dict: "object", list: "array", str: "string", (int, str): "integer or string"}


def uint64(obj, camel):
    """A uint64: proto3 JSON writes it as a decimal string, and accepts a number too."""
    value = get(obj, camel, (int, str), 0)
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]+", value):
            raise Invalid(f"{camel} is not an unsigned integer: {value!r}")
        value = int(value)
    if not 0 <= value <= U64_MAX:
        raise Invalid(f"{camel} is out of the uint64 range")
    return value


def hex_bytes(text, what, size):
    """Hex of exactly `size` bytes. bytes.fromhex alone would also take spaces."""
    if not isinstance(text, str) or not re.fullmatch(r"[0-9a-fA-F]{%d}" % (2 * size), text):
        raise Invalid(f"{what} is not {size} bytes of hex: {str(text)[:80]!r}")
    return bytes.fromhex(text)


def base64_bytes(text, what):
    """proto3 JSON `bytes`: standard base64 with padding as printed; parsers also accept the
    URL-safe alphabet and missing padding, so this does too."""
    text = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:  # binascii.Error, or a character outside ASCII
        raise Invalid(f"{what} is not base64") from None


TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)


def timestamp_micros(text, what):
    """An RFC 3339 google.protobuf.Timestamp as integer microseconds since the epoch, exactly:
    integer arithmetic throughout (a float has 53 bits, too few for today's microseconds plus
    nanoseconds). The signature is over microseconds, so a finer fraction must be zero."""
    m = TIMESTAMP.fullmatch(text) if isinstance(text, str) else None
    if not m:
        raise Invalid(f"{what} is not an RFC 3339 time: {str(text)[:80]!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    nanos = int((m.group(7) or "").ljust(9, "0"))
    if nanos % 1000:
        raise Invalid(f"{what} is not in whole microseconds: {text}")
    offset = 0 if m.group(8) else (1 if m.group(9) == "+" else -1) * (int(m.group(10)) * 60 + int(m.group(11)))
    try:
        when = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.timezone.utc)
    except ValueError as e:
        raise Invalid(f"{what} is not a valid time: {text} ({e})") from None
    local = (when - EPOCH) // ONE_MICROSECOND + nanos // 1000
    return local - offset * 60_000_000


@dataclasses.dataclass
class CertifiedEntry:
    sequence: int
    event: str
    entry: bytes
    proof: list


@dataclasses.dataclass
class Cosignature:
    witness: str
    public_key: bytes
    signature: bytes


@dataclasses.dataclass
class TreeHead:
    size: int
    root: bytes
    time_text: str
    time_micros: int
    public_key: bytes
    signature: bytes
    cosignatures: list


@dataclasses.dataclass
class Certificate:
    pledge_id: str
    registration_number: str
    entries: list
    head: TreeHead
    digest: bytes


def parse_certificate(obj):
    head = get(obj, "treeHead", dict, None)
    if head is None:
        raise Invalid("the certificate has no treeHead")
    return Certificate(
        pledge_id=get(obj, "pledgeId", str, ""),
        registration_number=get(obj, "registrationNumber", str, ""),
        entries=[parse_entry(e, i) for i, e in enumerate(get(obj, "entries", list, []))],
        head=parse_tree_head(head),
        digest=hex_bytes(get(obj, "digest", str, ""), "digest", 32),
    )


def parse_entry(obj, i):
    proof = get(obj, "inclusionProof", list, [])
    return CertifiedEntry(
        sequence=uint64(obj, "sequence"),
        event=get(obj, "event", str, ""),
        entry=base64_bytes(get(obj, "entry", str, ""), f"entries[{i}].entry"),
        proof=[hex_bytes(h, f"entries[{i}].inclusionProof[{j}]", 32) for j, h in enumerate(proof)],
    )


def parse_tree_head(obj):
    time_text = get(obj, "time", str, "")
    return TreeHead(
        size=uint64(obj, "treeSize"),
        root=hex_bytes(get(obj, "rootHash", str, ""), "treeHead.rootHash", 32),
        time_text=time_text,
        time_micros=timestamp_micros(time_text, "treeHead.time"),
        public_key=hex_bytes(get(obj, "publicKey", str, ""), "treeHead.publicKey", 32),
        signature=hex_bytes(get(obj, "signature", str, ""), "treeHead.signature", 64),
        cosignatures=[parse_cosignature(c, i) for i, c in enumerate(get(obj, "cosignatures", list, []))],
    )


def parse_cosignature(obj, i):
    return Cosignature(
        witness=get(obj, "witness", str, ""),
        public_key=hex_bytes(get(obj, "publicKey", str, ""), f"cosignatures[{i}].publicKey", 32),
        signature=hex_bytes(get(obj, "signature", str, ""), f"cosignatures[{i}].signature", 64),
    )


# ---- The checks ----


def ed25519_valid(public_key, signature, message):
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


def check_tree_head(head, trusted_key):
    """Check 1: the head is signed by the key the bank trusts, over its size, root and time."""
    if head.public_key != trusted_key:
        raise Invalid(f"the tree head is signed by {head.public_key.hex()}, not the trusted key {trusted_key.hex()}")
    message = (
        TREE_HEAD_CONTEXT
        + head.size.to_bytes(8, "big")
        + head.root
        + head.time_micros.to_bytes(8, "big", signed=True)
    )
    if not ed25519_valid(head.public_key, head.signature, message):
        raise Invalid("the tree head's signature does not verify")


def check_entries(cert):
    """Checks 2 and 3 for every entry: proven in the signed tree, and saying what the certificate
    says. Returns the decoded entries and their leaf hashes."""
    if not cert.entries:
        raise Invalid("the certificate has no entries")
    pledge_id = parse_pledge_id(cert.pledge_id)
    decoded, leaves, previous = [], [], 0
    for i, item in enumerate(cert.entries):
        where = f"entry {i + 1} (sequence {item.sequence})"
        if item.sequence == 0:
            raise Invalid(f"{where}: sequences start at 1")
        if item.sequence <= previous:
            raise Invalid(f"{where}: sequences are not strictly increasing")
        previous = item.sequence
        leaf = leaf_hash(item.entry)
        if not verify_inclusion(leaf, item.sequence - 1, cert.head.size, item.proof, cert.head.root):
            raise Invalid(f"{where}: the inclusion proof does not verify against the signed root")
        decoded.append(check_entry_content(item, pledge_id, cert.registration_number, i == 0, where))
        leaves.append(leaf)
    return decoded, leaves


def parse_pledge_id(text):
    try:
        return uuid.UUID(text).bytes
    except ValueError:
        raise Invalid(f"pledgeId is not a UUID: {text[:80]!r}") from None


def check_entry_content(item, pledge_id, registration_number, first, where):
    """Check 3: the signed bytes agree with the certificate's plain fields."""
    try:
        entry = decode_entry(item.entry)
    except Invalid as e:
        raise Invalid(f"{where}: {e}") from None
    if entry.sequence != item.sequence:
        raise Invalid(f"{where}: the entry's bytes say sequence {entry.sequence}")
    if entry.event != item.event:
        raise Invalid(f"{where}: the entry's bytes say {entry.event}, the certificate {item.event or 'nothing'}")
    if entry.pledge_id != pledge_id:
        raise Invalid(f"{where}: the entry is about pledge {entry.pledge_id.hex()}, not {uuid.UUID(bytes=pledge_id)}")
    if first != (entry.event == REGISTERED):
        raise Invalid(f"{where}: the registration must be the first entry, and only the first")
    if first and entry.registration_number != registration_number:
        raise Invalid(f"{where}: the entry registers {entry.registration_number!r}, not {registration_number!r}")
    return entry


def certificate_digest(head, sequences, leaves):
    """Check 4's digest: over the tree head and each entry's sequence and leaf hash."""
    parts = [DIGEST_CONTEXT, head.size.to_bytes(8, "big"), head.root]
    for sequence, leaf in zip(sequences, leaves):
        parts += [sequence.to_bytes(8, "big"), leaf]
    return sha256(*parts)


def check_cosignatures(head, witness_keys):
    """Check 5: every witness the bank requires cosigned this tree head. Returns one line per
    cosignature; those by keys the bank did not name are checked and shown, never required."""
    message = COSIGNATURE_CONTEXT + head.size.to_bytes(8, "big") + head.root
    lines = []
    for key in witness_keys:
        mine = [c for c in head.cosignatures if c.public_key == key]
        if not mine:
            raise Invalid(f"no cosignature by the required witness {key.hex()}")
        for c in mine:
            if not ed25519_valid(c.public_key, c.signature, message):
                raise Invalid(f"the cosignature by the required witness {c.witness!r} ({key.hex()}) does not verify")
            lines.append(f"cosigned by witness {c.witness!r} key {key.hex()}: required, verified")
    for c in head.cosignatures:
        if c.public_key not in witness_keys:
            state = "verifies" if ed25519_valid(c.public_key, c.signature, message) else "DOES NOT VERIFY"
            lines.append(f"cosigned by witness {c.witness!r} key {c.public_key.hex()}: not required, signature {state}")
    return lines


def china_time(micros):
    try:
        when = EPOCH + micros * ONE_MICROSECOND
    except OverflowError:
        raise Invalid(f"entry time {micros} µs is out of range") from None
    return when.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S.%f China (UTC+8)")


def verify(obj, trusted_key, witness_keys):
    """All five checks on a certificate's parsed JSON; the summary's lines when they all pass,
    Invalid when any fails."""
    cert = parse_certificate(obj)
    check_tree_head(cert.head, trusted_key)
    entries, leaves = check_entries(cert)
    if certificate_digest(cert.head, [e.sequence for e in entries], leaves) != cert.digest:
        raise Invalid("the digest does not match the tree head and the entries")
    cosigned = check_cosignatures(cert.head, witness_keys)
    lines = [f"pledge {cert.pledge_id} registration {cert.registration_number}"]
    for e in entries:
        lines.append(f"  entry {e.sequence} {e.event} at {china_time(e.at_micros)} by {e.principal}")
    lines.append(f"tree size {cert.head.size} root {cert.head.root.hex()}")
    lines.append(f"signed at {cert.head.time_text} by {cert.head.public_key.hex()}")
    lines += cosigned or ["no witness cosignatures"]
    lines.append("certificate verified")
    return lines


# ---- The command line ----


def key_argument(value):
    """--key / --witness-key: 64 hex digits, or a file holding them (signing-key.pub)."""
    text = value.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        try:
            text = Path(value).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise argparse.ArgumentTypeError(f"neither 64 hex digits nor a readable key file: {e}")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
            raise argparse.ArgumentTypeError(f"{value} does not hold 64 hex digits")
    return bytes.fromhex(text)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="verify_certificate.py",
        description="Checks an ipledger pledge certificate (proto3 JSON) offline.",
    )
    parser.add_argument("certificate", help="the PledgeCertificate as JSON (grpcurl or buf curl output)")
    parser.add_argument("--key", required=True, type=key_argument,
                        help="the server's public key you trust: 64 hex digits or a file (signing-key.pub)")
    parser.add_argument("--witness-key", action="append", default=[], type=key_argument,
                        help="a witness whose cosignature is required: 64 hex digits or a file (repeatable)")
    return parser.parse_args(argv)


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise Invalid(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Invalid(f"{path} is not JSON: {e}") from None


def main(argv=None):
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:  # argparse: usage errors (2) and --help (0)
        return e.code
    try:
        lines = verify(load_json(args.certificate), args.key, list(dict.fromkeys(args.witness_key)))
    except Invalid as e:
        print(f"certificate NOT verified: {e}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
