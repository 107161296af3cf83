"""Tests of verify_certificate.py, with certificates built here from first principles.

Nothing comes from the server or from the verifier's own code: the entries are encoded with a small
protobuf writer of this file, the Merkle tree and its proofs follow RFC 9162's recursive
definitions (MTH and PATH, §2.1.1 and §2.1.3.1) rather than the verifier's loop, the signatures
are made with a key generated per run. So a bug the verifier shares with the server's Rust code,
or with itself, cannot pass unnoticed: the hashing is also checked against Certificate
Transparency's published reference roots.

Run from the repository root: python3 -m unittest examples/python/test_verify_certificate.py
(or python3 examples/python/test_verify_certificate.py).
"""

import contextlib
import copy
import datetime
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import unittest
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import verify_certificate as v  # noqa: E402

SCRIPT = HERE / "verify_certificate.py"
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


# ---- RFC 9162 §2.1, as the RFC defines it (recursive, over the entries themselves) ----


def sha256(data):
    return hashlib.sha256(data).digest()


def split(n):
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d):
    """MTH(D[n]), §2.1.1."""
    if len(d) == 0:
        return sha256(b"")
    if len(d) == 1:
        return sha256(b"\x00" + d[0])
    k = split(len(d))
    return sha256(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m, d):
    """PATH(m, D[n]), §2.1.3.1: the inclusion proof of leaf m, from its sibling up."""
    if len(d) <= 1:
        return []
    k = split(len(d))
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


# ---- A protobuf writer, just what the entries need ----

# The event oneof's field numbers in ipledger.journal.v1.Entry.
REGISTERED, CHANGED, RELEASED, CREDIT_LINE = 10, 11, 12, 13


def varint(n):
    n &= (1 << 64) - 1  # int64: negative values as their 64-bit two's complement
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def field_varint(number, value):
    return varint(number << 3) + varint(value)


def field_bytes(number, value):
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def entry_bytes(sequence, at_micros, principal, event, pledge_id, registration_number="", version=1):
    """A journal entry as stored: the version byte, then ipledger.journal.v1.Entry. Carries the
    fields the verifier skips too (prev_hash, request id, rules, the registration's content, and
    fixed-width fields of a later version) to show it skips them."""
    body = field_bytes(1, pledge_id)
    if event == REGISTERED:
        body += field_bytes(2, registration_number)
        # NewPledge: pledgor (Party, its name), secured_amount_fen.
        content = field_bytes(2, field_bytes(1, "杭州某科技有限公司")) + field_varint(5, 123456000)
        body += field_bytes(3, content)
    else:
        body += field_varint(2, 20793)
    message = (
        field_varint(1, sequence)
        + field_bytes(2, bytes(32))
        + field_varint(3, at_micros)
        + field_bytes(4, principal)
        + field_bytes(5, bytes(range(16)))
        + field_varint(7, 1)
        + field_bytes(event, body)
        + varint(99 << 3 | 1) + bytes(8)  # an unknown fixed64
        + varint(98 << 3 | 5) + bytes(4)  # an unknown fixed32
    )
    return bytes([version]) + message


# ---- Keys, times and certificates ----


def new_key():
    key = Ed25519PrivateKey.generate()
    return key, key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def rfc3339(micros):
    return (EPOCH + datetime.timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def micros_of(text):
    """An RFC 3339 UTC time with 6 fractional digits, as integer microseconds."""
    when = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")
    return (when - EPOCH) // datetime.timedelta(microseconds=1)


NAMES = {REGISTERED: "PLEDGE_REGISTERED", CHANGED: "PLEDGE_CHANGED", RELEASED: "PLEDGE_RELEASED",
         CREDIT_LINE: "CREDIT_LINE_CREATED"}
PLEDGE = uuid.UUID("0b6f4a2e-8c1d-4f3a-9e7b-2d5c6a1f0e93")
OTHER = uuid.UUID("7d2c9e41-3b5a-4c8f-a6e0-1f9b8d7c2a54")
NUMBER = "IPL-2026-000000042"
# 2026-12-06T04:01:02.123456Z: 12:01:02.123456 in China.
T0 = micros_of("2026-12-06T04:01:02.123456+00:00")
SIGNED_AT = micros_of("2026-12-07T01:02:03.456000+00:00")


def journal(size=40, ours=(5, 12, 33), version=1):
    """`size` entries; at the sequences `ours`, our pledge's registration, change and release;
    in between, another pledge's registrations and credit lines. Returns (bytes, event number) of
    each."""
    events = iter([REGISTERED, CHANGED, RELEASED])
    entries = []
    for seq in range(1, size + 1):
        at = T0 + (seq - 1) * 1_000_001
        if seq in ours:
            event = next(events)
            entries.append((entry_bytes(seq, at, "bank-hz", event, PLEDGE.bytes, NUMBER, version), event))
        elif seq % 3 == 0:
            other = entry_bytes(seq, at, "bank-nb", REGISTERED, OTHER.bytes, f"IPL-2026-{seq:09}")
            entries.append((other, REGISTERED))
        else:
            entries.append((entry_bytes(seq, at, "admin", CREDIT_LINE, uuid.UUID(int=seq).bytes), CREDIT_LINE))
    return entries


def certificate(entries, sequences, key, witnesses=(), size=None, pledge=PLEDGE, number=NUMBER):
    """The certificate of the entries at `sequences` in the tree of the first `size` entries,
    signed by `key`, cosigned by each (name, key) of `witnesses`, as proto3 JSON would print it."""
    size = size or len(entries)
    tree = [raw for raw, _ in entries[:size]]
    root = mth(tree)
    head_message = b"ipledger signed tree head v1\x00" + size.to_bytes(8, "big") + root + SIGNED_AT.to_bytes(8, "big")
    cosigned = b"ipledger tree head cosignature v1\x00" + size.to_bytes(8, "big") + root
    digest = b"ipledger pledge certificate v1\x00" + size.to_bytes(8, "big") + root
    listed = []
    for seq in sequences:
        digest += seq.to_bytes(8, "big") + sha256(b"\x00" + tree[seq - 1])
        listed.append({
            "sequence": str(seq),
            "event": NAMES[entries[seq - 1][1]],
            "entry": v.base64.b64encode(tree[seq - 1]).decode(),
            "inclusionProof": [h.hex() for h in path(seq - 1, tree)],
        })
    return {
        "pledgeId": str(pledge),
        "registrationNumber": number,
        "entries": listed,
        "treeHead": {
            "treeSize": str(size),
            "rootHash": root.hex(),
            "time": rfc3339(SIGNED_AT),
            "publicKey": public(key).hex(),
            "signature": key.sign(head_message).hex(),
            "cosignatures": [
                {"witness": name, "publicKey": public(w).hex(), "signature": w.sign(cosigned).hex(),
                 "recordTime": rfc3339(SIGNED_AT + 5)}
                for name, w in witnesses
            ],
        },
        "digest": sha256(digest).hex(),
    }


def public(key):
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# ---- The tests ----

# Certificate Transparency's reference data (certificate-transparency-go, merkle tree tests).
CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
CT_ROOT_8 = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
CT_ROOT_5 = "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"


class MerkleTest(unittest.TestCase):
    def test_reference_roots(self):
        leaves = [bytes.fromhex(x) for x in CT_LEAVES]
        self.assertEqual(mth(leaves).hex(), CT_ROOT_8)
        self.assertEqual(mth(leaves[:5]).hex(), CT_ROOT_5)
        # The verifier's hashes are RFC 9162's: every proof of the reference trees verifies.
        for n, root in ((8, CT_ROOT_8), (5, CT_ROOT_5)):
            for m in range(n):
                leaf = v.leaf_hash(leaves[m])
                self.assertTrue(v.verify_inclusion(leaf, m, n, path(m, leaves[:n]), bytes.fromhex(root)))

    def test_every_proof_of_every_tree_up_to_40(self):
        data = [b"leaf %d" % i for i in range(40)]
        for n in range(1, 41):
            root = mth(data[:n])
            for m in range(n):
                proof, leaf = path(m, data[:n]), v.leaf_hash(data[m])
                self.assertTrue(v.verify_inclusion(leaf, m, n, proof, root), (m, n))
                # Too long, even when the extra hash leads to the root given: the RFC's sn reaches 0
                # before the hashes run out.
                extra = sha256(b"extra")
                self.assertFalse(v.verify_inclusion(leaf, m, n, proof + [extra], v.node_hash(extra, root)),
                                 ("long", m, n))
                if proof:
                    self.assertFalse(v.verify_inclusion(leaf, m, n, proof[:-1], root), ("short", m, n))
                    self.assertFalse(v.verify_inclusion(leaf, (m + 1) % n, n, proof, root), ("index", m, n))
                self.assertFalse(v.verify_inclusion(v.leaf_hash(b"x"), m, n, proof, root), ("leaf", m, n))
            self.assertFalse(v.verify_inclusion(v.leaf_hash(data[0]), n, n, [], root), ("past the end", n))
            if n > 1:
                # Too short for the tree's size, even when the hashes reach the root given (here
                # none, from the root itself): sn must be 0 at the end.
                self.assertFalse(v.verify_inclusion(root, 0, n, [], root), ("root as a leaf", n))


class WireTest(unittest.TestCase):
    def test_reads_what_the_writer_wrote(self):
        e = v.decode_entry(entry_bytes(7, -5, "bank-hz", CHANGED, PLEDGE.bytes))
        self.assertEqual((e.sequence, e.at_micros, e.principal, e.event), (7, -5, "bank-hz", "PLEDGE_CHANGED"))
        self.assertEqual(e.pledge_id, PLEDGE.bytes)
        r = v.decode_entry(entry_bytes(1, T0, "b", REGISTERED, PLEDGE.bytes, NUMBER))
        self.assertEqual((r.event, r.registration_number), ("PLEDGE_REGISTERED", NUMBER))

    def test_garbage_is_refused_never_crashes(self):
        good = entry_bytes(7, T0, "bank-hz", CHANGED, PLEDGE.bytes)
        rng = random.Random(9162)
        samples = [good[:n] for n in range(len(good))] + [bytes([1]) + b"\xff" * 11, bytes([1, 0x0B])]
        for _ in range(2000):
            b = bytearray(good)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(1, len(b))] = rng.randrange(256)
            samples.append(bytes(b))
        for sample in samples:
            try:
                v.decode_entry(sample)
            except v.Invalid:
                pass

    def test_a_field_twice_is_refused(self):
        twice = entry_bytes(7, T0, "bank-hz", CHANGED, PLEDGE.bytes) + field_varint(1, 8)
        with self.assertRaisesRegex(v.Invalid, "appears twice"):
            v.decode_entry(twice)

    def test_version_0_names_the_rust_verifier(self):
        with self.assertRaisesRegex(v.Invalid, "ipledger certificate verify"):
            v.decode_entry(entry_bytes(7, T0, "bank-hz", CHANGED, PLEDGE.bytes, version=0))


class TimeTest(unittest.TestCase):
    def test_every_precision_and_offset_is_the_same_microsecond(self):
        micros = micros_of("2026-12-06T04:01:02.123000+00:00")
        for text in ("2026-12-06T04:01:02.123Z", "2026-12-06T04:01:02.123000Z", "2026-12-06T04:01:02.123000000Z",
                     "2026-12-06T12:01:02.123+08:00", "2026-12-05T23:01:02.123-05:00"):
            self.assertEqual(v.timestamp_micros(text, "t"), micros, text)
        self.assertEqual(v.timestamp_micros("1969-12-31T23:59:59Z", "t"), -1_000_000)
        self.assertEqual(v.timestamp_micros("9999-12-31T23:59:59.999999Z", "t"), 253402300799999999)

    def test_refused(self):
        for text in ("2026-12-06T04:01:02.1234567Z", "2026-12-06 04:01:02Z", "2026-02-30T00:00:00Z",
                     "2026-12-06T04:01:02", "２026-12-06T04:01:02Z", "2026-12-06T24:00:00Z", ""):
            with self.assertRaises(v.Invalid, msg=text):
                v.timestamp_micros(text, "t")


class CertificateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.key, cls.pub = new_key()
        cls.other_key, cls.other_pub = new_key()
        cls.witness_a, cls.pub_a = new_key()
        cls.witness_b, cls.pub_b = new_key()
        cls.entries = journal()
        cls.good = certificate(cls.entries, [5, 12, 33], cls.key, [("witness-a", cls.witness_a)])

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.key_file = Path(self.tmp.name, "signing-key.pub")
        self.key_file.write_text(self.pub.hex() + "\n")

    def run_main(self, cert, *args, key=None):
        """main() on the certificate: (exit status, stdout, stderr)."""
        path = Path(self.tmp.name, "cert.json")
        if isinstance(cert, bytes):
            path.write_bytes(cert)
        else:
            path.write_text(cert if isinstance(cert, str) else json.dumps(cert, ensure_ascii=False))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = v.main([str(path), "--key", key or str(self.key_file), *args])
        return status, out.getvalue(), err.getvalue()

    def assert_fails(self, cert, reason, *args, key=None):
        status, out, err = self.run_main(cert, *args, key=key)
        self.assertEqual(status, 1, out + err)
        self.assertEqual(out, "")
        self.assertEqual(err.count("\n"), 1, err)
        self.assertIn(reason, err)

    def changed(self, change):
        cert = copy.deepcopy(self.good)
        change(cert)
        return cert

    def test_good_certificate(self):
        status, out, err = self.run_main(self.good, "--witness-key", self.pub_a.hex())
        self.assertEqual((status, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(lines[0], f"pledge {PLEDGE} registration {NUMBER}")
        self.assertEqual(lines[1], "  entry 5 PLEDGE_REGISTERED at 2026-12-06 12:01:06.123460 China (UTC+8) by bank-hz")
        self.assertIn("entry 12 PLEDGE_CHANGED", lines[2])
        self.assertIn("entry 33 PLEDGE_RELEASED", lines[3])
        self.assertEqual(lines[4], f"tree size 40 root {mth([raw for raw, _ in self.entries]).hex()}")
        self.assertIn(f"cosigned by witness 'witness-a' key {self.pub_a.hex()}: required, verified", out)
        self.assertEqual(lines[-1], "certificate verified")

    def test_the_key_as_hex_and_numbers_as_numbers(self):
        def as_numbers(cert):
            cert["treeHead"]["treeSize"] = 40
            for e in cert["entries"]:
                e["sequence"] = int(e["sequence"])
        self.assertEqual(self.run_main(self.changed(as_numbers), key=self.pub.hex())[0], 0)

    def test_a_one_entry_tree_without_proof(self):
        cert = certificate(self.entries, [1], self.key, size=1, pledge=uuid.UUID(int=1), number="")
        cert["entries"][0]["event"] = "PLEDGE_REGISTERED"
        # Entry 1 is a credit line, not a pledge event: the bytes decide, whatever the JSON says.
        self.assert_fails(cert, "not a pledge event")
        entries = journal(size=3, ours=(1, 2, 3))
        cert = certificate(entries, [1], self.key, size=1)
        del cert["entries"][0]["inclusionProof"]  # proto3 JSON leaves an empty list out
        del cert["treeHead"]["cosignatures"]
        status, out, _ = self.run_main(cert)
        self.assertEqual(status, 0)
        self.assertIn("no witness cosignatures", out)

    def test_a_tampered_entry_byte(self):
        def tamper(cert):
            raw = bytearray(v.base64_bytes(cert["entries"][1]["entry"], "e"))
            raw[-20] ^= 1
            cert["entries"][1]["entry"] = v.base64.b64encode(bytes(raw)).decode()
        self.assert_fails(self.changed(tamper), "inclusion proof does not verify")

    def test_a_wrong_key(self):
        self.assert_fails(self.good, "not the trusted key", key=self.other_pub.hex())
        forged = certificate(self.entries, [5, 12, 33], self.other_key)
        self.assert_fails(forged, "not the trusted key")
        forged["treeHead"]["publicKey"] = self.pub.hex()
        self.assert_fails(forged, "signature does not verify")

    def test_wrong_short_and_long_proofs(self):
        def flip(cert):
            h = cert["entries"][2]["inclusionProof"]
            h[2] = ("0" if h[2][0] != "0" else "1") + h[2][1:]
        self.assert_fails(self.changed(flip), "entry 3 (sequence 33): the inclusion proof")
        self.assert_fails(self.changed(lambda c: c["entries"][0]["inclusionProof"].pop()), "inclusion proof")
        longer = self.changed(lambda c: c["entries"][0]["inclusionProof"].append("00" * 32))
        self.assert_fails(longer, "inclusion proof")
        self.assert_fails(self.changed(lambda c: c["entries"][0]["inclusionProof"].__setitem__(0, "zz")),
                          "not 32 bytes of hex")

    def test_a_wrong_sequence(self):
        self.assert_fails(self.changed(lambda c: c["entries"][1].__setitem__("sequence", "13")), "inclusion proof")
        # Bytes that say another sequence than their place in the tree (a proof that verifies).
        entries = list(self.entries)
        entries[11] = (entry_bytes(99, T0, "bank-hz", CHANGED, PLEDGE.bytes), CHANGED)
        self.assert_fails(certificate(entries, [5, 12], self.key), "bytes say sequence 99")
        self.assert_fails(certificate(self.entries, [5, 33, 12], self.key), "not strictly increasing")
        self.assert_fails(certificate(self.entries, [5, 12, 12, 33], self.key), "not strictly increasing")

    def test_a_foreign_pledge(self):
        # Sequence 6 is another pledge's registration, proven in the same tree.
        self.assert_fails(certificate(self.entries, [6], self.key), f"not {PLEDGE}")
        self.assert_fails(certificate(self.entries, [5, 6], self.key), "entry 2 (sequence 6)")
        other = certificate(self.entries, [6, 12], self.key, pledge=OTHER, number=f"IPL-2026-{6:09}")
        self.assert_fails(other, "entry 2 (sequence 12)")

    def test_the_content_must_match(self):
        self.assert_fails(self.changed(lambda c: c["entries"][1].__setitem__("event", "PLEDGE_RELEASED")),
                          "bytes say PLEDGE_CHANGED")
        self.assert_fails(certificate(self.entries, [5, 12], self.key, number="IPL-2026-000000043"),
                          "registers 'IPL-2026-000000042'")
        self.assert_fails(certificate(self.entries, [12, 33], self.key), "registration must be the first")

    def test_a_changed_time(self):
        def later(cert):
            cert["treeHead"]["time"] = rfc3339(SIGNED_AT + 1)
        self.assert_fails(self.changed(later), "signature does not verify")
        # The same instant written otherwise is the same signed time.
        self.assertEqual(self.run_main(self.changed(lambda c: c["treeHead"].__setitem__(
            "time", "2026-12-07T09:02:03.456+08:00")))[0], 0)

    def test_a_wrong_digest(self):
        def wrong(cert):
            d = cert["digest"]
            cert["digest"] = d[:-1] + ("0" if d[-1] != "0" else "1")
        self.assert_fails(self.changed(wrong), "digest does not match")

    def test_witnesses(self):
        self.assert_fails(self.good, "no cosignature by the required witness " + self.pub_b.hex(),
                          "--witness-key", self.pub_a.hex(), "--witness-key", self.pub_b.hex())
        def bad_signature(cert):
            cert["treeHead"]["cosignatures"][0]["signature"] = "00" * 64
        self.assert_fails(self.changed(bad_signature), "'witness-a'", "--witness-key", self.pub_a.hex())
        # Not required: shown as it is, never a failure.
        status, out, _ = self.run_main(self.changed(bad_signature))
        self.assertEqual(status, 0)
        self.assertIn("not required, signature DOES NOT VERIFY", out)
        status, out, _ = self.run_main(self.good)
        self.assertIn(f"'witness-a' key {self.pub_a.hex()}: not required, signature verifies", out)

    def test_version_0_entry(self):
        entries = journal(size=8, ours=(2, 5, 8), version=0)
        self.assert_fails(certificate(entries, [2, 5, 8], self.key), "`ipledger certificate verify`")

    def test_usage_errors(self):
        for args in ([], ["cert.json"], ["cert.json", "--key", "abc"], ["cert.json", "--key", self.pub.hex(),
                     "--witness-key", "/nonexistent"]):
            with contextlib.redirect_stderr(io.StringIO()):
                self.assertEqual(v.main(args), 2, args)

    def test_bad_input_is_a_failure_never_a_crash(self):
        self.assert_fails("{not json", "is not JSON")
        self.assert_fails("[]", "expected a JSON object")
        self.assert_fails(b"\xff", "is not JSON")
        with contextlib.redirect_stderr(io.StringIO()) as err:
            self.assertEqual(v.main([str(Path(self.tmp.name, "missing.json")), "--key", self.pub.hex()]), 1)
        self.assertIn("cannot read", err.getvalue())
        # Every value of the certificate replaced by each JSON type in turn.
        for where in paths(self.good):
            for value in (None, 0, -1, 1.5, True, "", "x", "00" * 32, [], {}, ["x"], [{}]):
                cert = copy.deepcopy(self.good)
                parent, key = locate(cert, where)
                parent[key] = value
                status, out, err = self.run_main(cert)
                self.assertIn(status, (0, 1), (where, value, err))

    def test_as_a_script(self):
        """Exit statuses and messages of the real command, and never a traceback."""
        cert = Path(self.tmp.name, "cert.json")
        cert.write_text(json.dumps(self.good))
        def run(*args):
            return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                                  env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        ok = run(str(cert), "--key", str(self.key_file))
        self.assertEqual((ok.returncode, ok.stderr), (0, ""))
        self.assertTrue(ok.stdout.endswith("certificate verified\n"))
        bad = run(str(cert), "--key", self.other_pub.hex())
        self.assertEqual(bad.returncode, 1)
        self.assertRegex(bad.stderr, r"^certificate NOT verified: .*not the trusted key [0-9a-f]{64}\n$")
        self.assertEqual(run(str(cert)).returncode, 2)


def paths(obj, prefix=()):
    """Every place in a JSON value, as a tuple of keys and indexes."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, value in items:
        yield prefix + (key,)
        yield from paths(value, prefix + (key,))


def locate(obj, where):
    for key in where[:-1]:
        obj = obj[key]
    return obj, where[-1]


if __name__ == "__main__":
    unittest.main()
