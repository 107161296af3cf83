//! The dump format of `ipledger export` and `ExportJournal`: JSON lines, one per entry with its
//! sequence, hash and stored bytes (base64, exactly as the journal holds and hashed them), then one
//! line with the signed head of the dump. `restore` reads it, and also reads the dumps of releases
//! before the journal format (one JSON object per entry, `journal::legacy::LegacyEntry`).
//!
//! Also here: checking a proof that an entry is in the signed history (the entry's bytes and those
//! of every entry after it up to a signed head).

use super::journal::{self, Entry, Hash, Stored, hex};
use super::signing::{PublicKey, SignedHead, SignedTreeHead};
use base64::Engine;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct EntryLine {
    sequence: u64,
    hash: String,
    entry: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeadLine {
    signed_head: SignedHead,
    /// The head of the journal's Merkle tree of the same entries (dumps since the tree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signed_tree_head: Option<SignedTreeHead>,
}

/// The dump line of a stored entry.
pub fn line(stored: &Stored) -> String {
    let line = EntryLine {
        sequence: stored.sequence,
        hash: hex(&stored.hash),
        entry: base64::engine::general_purpose::STANDARD.encode(&stored.bytes),
    };
    serde_json::to_string(&line).expect("in-memory encoding")
}

/// The dump's last line: the signed head of its entries, and their tree's signed head.
pub fn head_line(head: &SignedHead, tree: Option<&SignedTreeHead>) -> String {
    let line = HeadLine { signed_head: head.clone(), signed_tree_head: tree.cloned() };
    serde_json::to_string(&line).expect("in-memory encoding")
}

/// The signed tree head of a dump's head line, if it has one.
pub fn tree_head(text: &str) -> Option<SignedTreeHead> {
    serde_json::from_str::<HeadLine>(text).ok()?.signed_tree_head
}

/// One parsed line of a dump.
#[derive(Debug)]
pub enum Line {
    Entry(Stored),
    Head(SignedHead),
}

/// Parses a line of a dump of this format or of a release before it.
pub fn parse(text: &str) -> Result<Line, String> {
    if let Ok(line) = serde_json::from_str::<EntryLine>(text) {
        let bytes = base64::engine::general_purpose::STANDARD.decode(&line.entry).map_err(|e| format!("entry: {e}"))?;
        let hash: Hash = super::signing::from_hex(&line.hash)
            .and_then(|h| h.try_into().ok())
            .ok_or("hash: expected 32 bytes in hex")?;
        return Ok(Line::Entry(Stored { sequence: line.sequence, hash, bytes }));
    }
    if let Ok(line) = serde_json::from_str::<HeadLine>(text) {
        return Ok(Line::Head(line.signed_head));
    }
    serde_json::from_str::<journal::legacy::LegacyEntry>(text)
        .map(|legacy| Line::Entry(legacy.to_stored()))
        .map_err(|e| format!("neither an entry, a signed head nor an entry of an earlier release: {e}"))
}

/// The hash of an entry's bytes, computed as its version defines it (never taken on trust).
pub fn hash_of(sequence: u64, bytes: &[u8]) -> Result<Hash, String> {
    match bytes.first() {
        Some(&journal::format::VERSION) => {
            Ok(sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), bytes)).into())
        }
        Some(&journal::legacy::VERSION) => {
            let legacy: journal::legacy::LegacyEntry =
                postcard::from_bytes(&bytes[1..]).map_err(|e| format!("entry {sequence}: {e}"))?;
            Ok(legacy.compute_hash())
        }
        _ => Err(format!("entry {sequence}: unknown format version")),
    }
}

/// Checks that `entries` (an entry's bytes, then those of every entry after it) chain up to
/// `head`, signed by a trusted key: then the first entry is in the signed history. Returns it.
pub fn verify_proof(entries: &[Vec<u8>], head: &SignedHead, trusted: &[PublicKey]) -> Result<Entry, String> {
    head.verify(trusted)?;
    let first = entries.first().ok_or("an empty proof")?;
    let start = head.sequence + 1 - entries.len() as u64;
    let decode = |i: usize, bytes: &Vec<u8>| -> Result<Entry, String> {
        let sequence = start + i as u64;
        let stored = Stored { sequence, hash: hash_of(sequence, bytes)?, bytes: bytes.clone() };
        stored.decode().map_err(|e| e.to_string())
    };
    let proven = decode(0, first)?;
    let mut previous = proven.hash;
    for (i, bytes) in entries.iter().enumerate().skip(1) {
        let entry = decode(i, bytes)?;
        if entry.prev_hash != previous {
            return Err(format!("entry {} does not follow entry {}", entry.sequence, entry.sequence - 1));
        }
        previous = entry.hash;
    }
    if previous != head.hash {
        return Err("the last entry of the proof is not the signed head".to_owned());
    }
    Ok(proven)
}
