//! What makes the journal checkable from outside, as Certificate Transparency makes its logs: signed
//! heads of the journal's Merkle tree (`tree`), inclusion and consistency proofs read from derived
//! state in O(log n), pledge certificates a bank verifies offline, and witnesses' cosignatures.
//!
//! Why a certificate holds entries and not records: the entry's stored bytes are what the tree's
//! leaf hashes, so a verifier needs nothing of ours but the format (docs/journal-format.md) to
//! check that the registration it holds is the one the ledger's signed history contains.
//!
//! Invariants: a tree head is only signed for a size the node's derived state reached (its entries
//! are durable); the tree only grows, so a root once computed for a size never changes, which is
//! what lets proofs and cosignature checks run outside the writer.

use super::journal::merkle::{self, Hash};
use super::journal::{self, Event, Stored, TreeCosignature};
use super::signing::{self, PublicKey, SignedTreeHead};
use super::{Ledger, keys, query};
use crate::domain::{LedgerError, Reason};
use crate::store::Store;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const CERTIFICATE_CONTEXT: &[u8] = b"ipledger pledge certificate v1\0";

pub use super::records::CosignatureRecord as Cosignature;

/// A signed tree head with the cosignatures witnesses gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    pub signed: SignedTreeHead,
    pub cosignatures: Vec<Cosignature>,
}

/// One entry of a certificate: its bytes and its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedEntry {
    pub sequence: u64,
    pub event: String,
    pub bytes: Vec<u8>,
    pub proof: Vec<Hash>,
}

/// A pledge's registration, changes and release, proven in one signed tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub pledge_id: Uuid,
    pub registration_number: String,
    pub entries: Vec<CertifiedEntry>,
    pub head: TreeHead,
    pub digest: Hash,
}

/// What the QR code of a printed certificate carries: the tree head and each entry's leaf.
pub fn certificate_digest(tree_size: u64, root: &Hash, leaves: &[(u64, Hash)]) -> Hash {
    let mut h = Sha256::new();
    h.update(CERTIFICATE_CONTEXT);
    h.update(tree_size.to_be_bytes());
    h.update(root);
    for (sequence, leaf) in leaves {
        h.update(sequence.to_be_bytes());
        h.update(leaf);
    }
    h.finalize().into()
}

fn not_reached(asked: u64, size: u64) -> LedgerError {
    LedgerError::refused(
        Reason::TREE_SIZE_NOT_REACHED,
        format!("this node's tree holds {size} entries, not {asked}: retry later, or ask the writer"),
    )
    .with("treeSize", size)
}

fn unavailable(e: crate::store::StoreError) -> LedgerError {
    LedgerError::Unavailable(e.to_string())
}

/// The cosignatures recorded for the tree of `size` entries.
pub fn cosignatures(store: &dyn Store, size: u64) -> Result<Vec<Cosignature>, LedgerError> {
    let prefix = keys::cosignatures_of(size);
    let found = store.scan(&prefix, None, WITNESSES_MAX).map_err(unavailable)?;
    found.iter().map(|(key, value)| super::codec::decode(key, value)).collect()
}

/// Witnesses a server knows at most (`--witness`), and so cosignatures per head.
pub const WITNESSES_MAX: usize = 32;

/// A witness the server accepts cosignatures from: its name and Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    pub name: crate::domain::principal::PrincipalName,
    pub key: PublicKey,
}

impl Witness {
    /// `NAME=KEY`, KEY as 64 hex digits or a file holding them (a witness's `.pub`).
    pub fn parse(text: &str) -> Result<Witness, String> {
        let (name, key) =
            text.split_once('=').ok_or("a witness is NAME=KEY (64 hex digits, or a file holding them)")?;
        let name = crate::domain::principal::PrincipalName::parse(name).map_err(|e| format!("witness name: {e}"))?;
        Ok(Witness { name, key: signing::parse_public_key(key)? })
    }
}

impl Ledger {
    /// Runs `f` over the Merkle tree as it is now (and derived state) on the blocking pool.
    async fn with_tree<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut super::tree::View<'_>, &dyn Store) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (derived, journal) = (self.derived.clone(), self.journal.clone());
        self.read(move |store| {
            let mut view = derived.tree(journal.as_ref()).map_err(unavailable)?;
            f(&mut view, store)
        })
        .await
    }

    /// The tree head of `size` entries (0: every entry this node applied), signed now.
    pub async fn tree_head(&self, size: u64) -> Result<TreeHead, LedgerError> {
        let signer = self.signer.clone();
        self.with_tree(move |view, store| head_of(view, store, &signer, size)).await
    }

    /// The leaf of entry `sequence` and its inclusion proof in the tree of `size` entries (0:
    /// the current tree), with that tree's signed head.
    pub async fn inclusion_proof(&self, sequence: u64, size: u64) -> Result<(Hash, Vec<Hash>, TreeHead), LedgerError> {
        if sequence == 0 {
            return Err(LedgerError::invalid_field("sequence", "entries are numbered from 1"));
        }
        let signer = self.signer.clone();
        self.with_tree(move |view, store| {
            let head = head_of(view, store, &signer, size)?;
            let size = head.signed.tree_size;
            if sequence > size {
                return Err(LedgerError::invalid_field("sequence", format!("the tree holds entries 1 to {size}")));
            }
            let proof = view.inclusion(sequence - 1, size).map_err(unavailable)?.expect("a leaf of the tree");
            Ok((view.leaf(sequence - 1).map_err(unavailable)?, proof, head))
        })
        .await
    }

    /// The root of the tree of `from` entries and the proof that the tree of `to` entries (0: the
    /// current tree) extends it, with the latter's signed head.
    pub async fn consistency_proof(&self, from: u64, to: u64) -> Result<(Hash, Vec<Hash>, TreeHead), LedgerError> {
        if from == 0 {
            return Err(LedgerError::invalid_field("fromSize", "must be 1 or more (every tree extends the empty one)"));
        }
        let signer = self.signer.clone();
        self.with_tree(move |view, store| {
            let head = head_of(view, store, &signer, to)?;
            let to = head.signed.tree_size;
            if from > to {
                return Err(not_reached(from, to));
            }
            let proof = view.consistency(from, to).map_err(unavailable)?.expect("0 < from <= to");
            Ok((view.root_at(from).map_err(unavailable)?, proof, head))
        })
        .await
    }

    /// Records `witness`'s cosignature of the tree head (`size`, `root`) once checked: the witness
    /// is one of `known`, the head is this ledger's (the tree only grows, so this holds for good
    /// once it holds), and the signature verifies (the decider checks that too, on every replay).
    /// Returns the head with every cosignature it has.
    pub async fn add_cosignature(
        &self,
        actor: &crate::domain::principal::Principal,
        known: &[Witness],
        (size, root): (u64, Hash),
        (key, signature): (PublicKey, [u8; 64]),
        ticket: super::Ticket,
    ) -> Result<TreeHead, LedgerError> {
        let witness = known.iter().find(|w| w.key == key).ok_or_else(|| {
            LedgerError::refused(
                Reason::WITNESS_UNKNOWN,
                format!("{} is not the key of a witness this server knows", journal::hex(&key)),
            )
        })?;
        if size == 0 {
            return Err(LedgerError::invalid_field("treeSize", "must be 1 or more"));
        }
        let ours = self.with_tree(move |view, _| {
            if size > view.size() {
                return Err(not_reached(size, view.size()));
            }
            view.root_at(size).map_err(unavailable)
        });
        if ours.await? != root {
            return Err(LedgerError::refused(
                Reason::COSIGNATURE_INVALID,
                format!("the tree of {size} entries has another root here: the witness saw another history"),
            )
            .with("treeSize", size));
        }
        let cosignature = TreeCosignature {
            tree_size: size,
            root_hash: root,
            witness: witness.name.clone(),
            public_key: key,
            signature,
        };
        self.write_as::<Cosignature>(actor, super::Command::Cosign { cosignature }, ticket).await?;
        self.tree_head(size).await
    }

    /// The certificate of pledge `id`: every version entry of it, proven in the current tree.
    /// The caller's permission to read the pledge is checked by the caller of this.
    pub async fn pledge_certificate(&self, id: Uuid, size: u64) -> Result<Certificate, LedgerError> {
        let (signer, journal) = (self.signer.clone(), self.journal.clone());
        self.with_tree(move |view, store| certificate(view, store, journal.as_ref(), &signer, (id, size))).await
    }
}

/// The signed head of the tree of `size` entries (0: the view's).
fn head_of(
    view: &mut super::tree::View<'_>,
    store: &dyn Store,
    signer: &signing::Signer,
    size: u64,
) -> Result<TreeHead, LedgerError> {
    let size = if size == 0 { view.size() } else { size };
    if size > view.size() {
        return Err(not_reached(size, view.size()));
    }
    let root = view.root_at(size).map_err(unavailable)?;
    let signed = signer.sign_tree(size, root, (super::system_clock())());
    // Only cosignatures of this root: a ledger restored from a rewritten dump keeps the entries
    // of cosignatures of roots its tree no longer has, which vouch for nothing here.
    let mut cosignatures = cosignatures(store, size)?;
    cosignatures.retain(|c| c.cosignature.root_hash == root);
    Ok(TreeHead { signed, cosignatures })
}

fn certificate(
    view: &mut super::tree::View<'_>,
    store: &dyn Store,
    journal: &dyn journal::Journal,
    signer: &signing::Signer,
    (id, size): (Uuid, u64),
) -> Result<Certificate, LedgerError> {
    let pledge = query::pledge(store, id)?;
    let head = head_of(view, store, signer, size)?;
    let size = head.signed.tree_size;
    let found = store.scan(&keys::history_prefix(id), None, query::HISTORY_MAX).map_err(unavailable)?;
    let mut entries = Vec::with_capacity(found.len());
    let mut leaves = Vec::with_capacity(found.len());
    // Entries applied after the view was taken are left for the next certificate.
    for sequence in found.iter().filter_map(|(key, _)| keys::history_sequence(key)).filter(|s| *s <= size) {
        let stored = journal::read_one(journal, sequence)?
            .ok_or_else(|| LedgerError::Internal(format!("history names missing journal entry {sequence}")))?;
        let event = stored.decode()?.event;
        if !event.versions_pledge() {
            continue;
        }
        let leaf = view.leaf(sequence - 1).map_err(unavailable)?;
        if leaf != merkle::leaf_hash(&stored.bytes) {
            return Err(LedgerError::Internal(format!(
                "entry {sequence} is not the tree's leaf: rebuild derived state"
            )));
        }
        let proof = view.inclusion(sequence - 1, size).map_err(unavailable)?.expect("a leaf of the tree");
        leaves.push((sequence, leaf));
        entries.push(CertifiedEntry { sequence, event: event.name().to_owned(), bytes: stored.bytes, proof });
    }
    if entries.is_empty() {
        return Err(LedgerError::refused(
            Reason::TREE_SIZE_NOT_REACHED,
            format!("the pledge was registered after the tree of {size} entries"),
        )
        .with("treeSize", size));
    }
    let digest = certificate_digest(size, &head.signed.root_hash, &leaves);
    Ok(Certificate {
        pledge_id: id,
        registration_number: pledge.registration_number.as_str().to_owned(),
        entries,
        head,
        digest,
    })
}

/// What an offline check of a certificate found: the entries, decoded, and the witnesses whose
/// cosignatures verified.
#[derive(Debug)]
pub struct Verified {
    pub entries: Vec<journal::Entry>,
    pub witnesses: Vec<String>,
}

/// Checks a certificate without a server: the tree head's signature by one of `trusted`, each
/// entry's inclusion, that each entry is a version of the certificate's pledge (the first its
/// registration), the digest, and a valid cosignature by each of `witnesses`.
pub fn verify_certificate(
    certificate: &Certificate,
    trusted: &[PublicKey],
    witnesses: &[PublicKey],
) -> Result<Verified, String> {
    let signed = &certificate.head.signed;
    signed.verify(trusted)?;
    let mut decoded = Vec::with_capacity(certificate.entries.len());
    let mut leaves = Vec::with_capacity(certificate.entries.len());
    for certified in &certificate.entries {
        let entry = check_entry(certificate, certified, decoded.last())?;
        leaves.push((certified.sequence, merkle::leaf_hash(&certified.bytes)));
        decoded.push(entry);
    }
    if decoded.is_empty() {
        return Err("the certificate holds no entry".to_owned());
    }
    if certificate_digest(signed.tree_size, &signed.root_hash, &leaves) != certificate.digest {
        return Err("the certificate's digest is not the digest of its head and entries".to_owned());
    }
    let message = signing::cosignature_message(signed.tree_size, &signed.root_hash);
    let mut cosigned = Vec::new();
    for c in certificate.head.cosignatures.iter().map(|c| &c.cosignature) {
        let this_head = c.tree_size == signed.tree_size && c.root_hash == signed.root_hash;
        if this_head && signing::verify_signature(&c.public_key, &message, &c.signature) {
            cosigned.push(c.public_key);
        }
    }
    if let Some(missing) = witnesses.iter().find(|w| !cosigned.contains(w)) {
        return Err(format!("no valid cosignature by witness key {}", journal::hex(missing)));
    }
    let names =
        certificate.head.cosignatures.iter().map(|c| &c.cosignature).filter(|c| cosigned.contains(&c.public_key));
    Ok(Verified { entries: decoded, witnesses: names.map(|c| c.witness.to_string()).collect() })
}

fn check_entry(
    certificate: &Certificate,
    certified: &CertifiedEntry,
    previous: Option<&journal::Entry>,
) -> Result<journal::Entry, String> {
    let sequence = certified.sequence;
    let signed = &certificate.head.signed;
    let leaf = merkle::leaf_hash(&certified.bytes);
    if sequence == 0
        || !merkle::verify_inclusion(sequence - 1, signed.tree_size, &leaf, &certified.proof, &signed.root_hash)
    {
        return Err(format!("entry {sequence}: its inclusion proof does not lead to the signed root"));
    }
    let hash: Hash = Sha256::digest(&certified.bytes).into();
    let entry = Stored { sequence, hash, bytes: certified.bytes.clone() }
        .decode()
        .map_err(|e| format!("entry {sequence} does not decode: {e}"))?;
    let about = entry.event.pledge_id();
    if about != Some(certificate.pledge_id) || !entry.event.versions_pledge() || entry.event.name() != certified.event {
        return Err(format!("entry {sequence} is not a {} of pledge {}", certified.event, certificate.pledge_id));
    }
    match (previous, &entry.event) {
        (None, Event::PledgeRegistered { pledge }) => {
            if pledge.registration_number.as_str() != certificate.registration_number {
                return Err(format!("entry {sequence} registers {}", pledge.registration_number.as_str()));
            }
        }
        (None, _) => return Err("the certificate's first entry is not the pledge's registration".to_owned()),
        (Some(p), Event::PledgeRegistered { .. }) => {
            return Err(format!("entry {sequence} registers the pledge again after entry {}", p.sequence));
        }
        (Some(p), _) if p.sequence >= sequence => return Err(format!("entry {sequence} follows entry {}", p.sequence)),
        (Some(_), _) => {}
    }
    Ok(entry)
}
