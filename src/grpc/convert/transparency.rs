//! Tree heads, proofs, cosignatures and pledge certificates: out to the API, and back in from a
//! certificate's JSON for the offline verifier (`ipledger certificate verify`).

use super::*;
use crate::ledger::journal::{TreeCosignature, hex};
use crate::ledger::signing::{SignedTreeHead, from_hex};
use crate::ledger::transparency::{Certificate, CertifiedEntry, Cosignature, TreeHead};

pub fn tree_head_to_pb(head: &TreeHead) -> pb::SignedTreeHead {
    let s = &head.signed;
    pb::SignedTreeHead {
        tree_size: s.tree_size,
        root_hash: hex(&s.root_hash),
        time: Some(timestamp(s.time_micros)),
        public_key: hex(&s.public_key),
        signature: hex(&s.signature),
        cosignatures: head.cosignatures.iter().map(cosignature_to_pb).collect(),
    }
}

fn cosignature_to_pb(c: &Cosignature) -> pb::Cosignature {
    pb::Cosignature {
        witness: c.cosignature.witness.to_string(),
        public_key: hex(&c.cosignature.public_key),
        signature: hex(&c.cosignature.signature),
        record_time: Some(timestamp(c.record_time)),
    }
}

pub fn hashes_to_pb(hashes: &[crate::ledger::journal::Hash]) -> Vec<String> {
    hashes.iter().map(|h| hex(h)).collect()
}

pub fn certificate_to_pb(c: &Certificate) -> pb::PledgeCertificate {
    pb::PledgeCertificate {
        pledge_id: c.pledge_id.to_string(),
        registration_number: c.registration_number.clone(),
        entries: c
            .entries
            .iter()
            .map(|e| pb::CertifiedEntry {
                sequence: e.sequence,
                event: e.event.clone(),
                entry: e.bytes.clone(),
                inclusion_proof: hashes_to_pb(&e.proof),
            })
            .collect(),
        tree_head: Some(tree_head_to_pb(&c.head)),
        digest: hex(&c.digest),
    }
}

/// `N` bytes from hex, or what is wrong with the field.
fn hex_field<const N: usize>(f: &mut Fields, field: &str, text: &str) -> Option<[u8; N]> {
    let parsed = hex_array(text.trim(), field).ok();
    if parsed.is_none() {
        f.fail(field, format!("must be {N} bytes in hex ({} digits)", 2 * N));
    }
    parsed
}

/// A cosignature request: (size, root), (witness key, signature).
#[allow(clippy::type_complexity, reason = "the two pairs the ledger takes")]
pub fn cosignature_request(
    r: &pb::AddTreeHeadCosignatureRequest,
) -> Result<((u64, [u8; 32]), ([u8; 32], [u8; 64])), LedgerError> {
    let mut f = Fields::default();
    if r.tree_size == 0 {
        f.fail("treeSize", "must be 1 or more");
    }
    let root = hex_field::<32>(&mut f, "rootHash", &r.root_hash);
    let key = hex_field::<32>(&mut f, "publicKey", &r.public_key);
    let signature = hex_field::<64>(&mut f, "signature", &r.signature);
    f.finish()?;
    match (root, key, signature) {
        (Some(root), Some(key), Some(signature)) => Ok(((r.tree_size, root), (key, signature))),
        _ => Err(unrecorded()),
    }
}

/// `N` bytes given in hex (a hash, a key, a signature), or what `what` is not.
pub fn hex_array<const N: usize>(text: &str, what: &str) -> Result<[u8; N], String> {
    from_hex(text).and_then(|b| b.try_into().ok()).ok_or_else(|| format!("{what}: not {N} bytes in hex"))
}

fn micros(t: &prost_types::Timestamp) -> Micros {
    t.seconds * 1_000_000 + i64::from(t.nanos / 1000)
}

/// A tree head as the API returned it, for clients checking it (witnesses, the offline verifier).
pub fn tree_head_from_pb(head: &pb::SignedTreeHead) -> Result<TreeHead, String> {
    let signed = SignedTreeHead {
        tree_size: head.tree_size,
        root_hash: hex_array(&head.root_hash, "treeHead.rootHash")?,
        time_micros: micros(head.time.as_ref().ok_or("the tree head has no time")?),
        public_key: hex_array(&head.public_key, "treeHead.publicKey")?,
        signature: hex_array(&head.signature, "treeHead.signature")?,
    };
    let mut cosignatures = Vec::with_capacity(head.cosignatures.len());
    for co in &head.cosignatures {
        cosignatures.push(Cosignature {
            cosignature: TreeCosignature {
                tree_size: head.tree_size,
                root_hash: signed.root_hash,
                witness: crate::domain::principal::PrincipalName::parse(&co.witness)
                    .map_err(|e| format!("cosignature witness: {e}"))?,
                public_key: hex_array(&co.public_key, "cosignature publicKey")?,
                signature: hex_array(&co.signature, "cosignature signature")?,
            },
            record_time: co.record_time.as_ref().map_or(0, micros),
        });
    }
    Ok(TreeHead { signed, cosignatures })
}

/// A certificate as the API returned it (its proto3 JSON read back), for the offline check.
pub fn certificate_from_pb(c: &pb::PledgeCertificate) -> Result<Certificate, String> {
    let head = tree_head_from_pb(c.tree_head.as_ref().ok_or("the certificate has no tree head")?)?;
    let mut entries = Vec::with_capacity(c.entries.len());
    for e in &c.entries {
        let proof = e.inclusion_proof.iter().map(|h| hex_array(h, "inclusionProof")).collect::<Result<_, _>>()?;
        entries.push(CertifiedEntry { sequence: e.sequence, event: e.event.clone(), bytes: e.entry.clone(), proof });
    }
    Ok(Certificate {
        pledge_id: uuid::Uuid::parse_str(&c.pledge_id).map_err(|e| format!("pledgeId: {e}"))?,
        registration_number: c.registration_number.clone(),
        entries,
        head,
        digest: hex_array(&c.digest, "digest")?,
    })
}
