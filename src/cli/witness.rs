//! `ipledger witness`: what an IP office or a regulator runs daily to hold the ledger to one
//! history. It fetches the signed tree head, checks that it extends the last head it kept (a
//! consistency proof, RFC 9162 §2.1.4), keeps the new one, and optionally cosigns it so that banks
//! see it was witnessed. A rewritten history (after a restore, a failover or an edit of the journal)
//! cannot extend the kept head: the witness exits 3 and prints both heads and the proof as evidence.

use super::{ClientError, Connect};
use ipledger::grpc::convert;
use ipledger::ledger::journal::{hex, merkle};
use ipledger::ledger::signing::{PublicKey, SignedTreeHead, Signer, parse_public_key};
use ipledger::proto as pb;
use std::path::{Path, PathBuf};

/// Exit status of a detected fork: distinct from a failure to check (1).
pub const FORK_EXIT: i32 = 3;

#[derive(Debug, clap::Args)]
pub struct WitnessArgs {
    #[command(flatten)]
    pub connect: Connect,
    /// Where the witness keeps the last head it checked (JSON); made on the first run.
    #[arg(long)]
    pub state: PathBuf,
    /// The ledger's public key: 64 hex digits, or its `signing-key.pub`.
    #[arg(long)]
    pub key: String,
    /// The witness's own Ed25519 key (PKCS#8, `ipledger keygen`): cosign each head checked. The
    /// server must know its public key (`serve --witness NAME=KEY`).
    #[arg(long)]
    pub cosign_key: Option<PathBuf>,
}

/// What the witness keeps between runs.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    tree_head: SignedTreeHead,
}

/// Evidence of two heads under one key that are not one history.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fork {
    pub reason: String,
    pub kept: SignedTreeHead,
    pub served: SignedTreeHead,
    pub consistency_proof: Vec<String>,
}

/// What a run found.
#[derive(Debug)]
pub enum Outcome {
    /// The head extends the kept one (or is the first): kept now.
    Consistent {
        from: u64,
        to: u64,
        cosigned: bool,
    },
    Fork(Box<Fork>),
}

pub async fn run(args: &WitnessArgs) -> Result<Outcome, ClientError> {
    let usage = |e: String| ClientError::Usage(e);
    let trusted = parse_public_key(&args.key).map_err(usage)?;
    let kept = load(&args.state).map_err(usage)?;
    let mut journal = args.connect.journal().await?;
    let latest = journal.get_signed_tree_head(pb::GetSignedTreeHeadRequest { tree_size: 0 }).await?.into_inner();
    let served = signed(&latest, &trusted).map_err(usage)?;
    let from = kept.as_ref().map_or(0, |k| k.tree_size);
    if let Some(kept) = &kept {
        let proof = match served.tree_size {
            size if size < kept.tree_size => Err("the served tree is smaller than the one kept".to_owned()),
            size if size == kept.tree_size => Ok(Vec::new()),
            size => {
                let request = pb::GetConsistencyProofRequest { from_size: kept.tree_size, to_size: size };
                let proof = journal.get_consistency_proof(request).await?.into_inner();
                // A malformed answer proves nothing either way: a failure to check, not a fork.
                Ok(hashes(&proof.hashes).map_err(usage)?)
            }
        };
        if let Some(fork) = check(kept, &served, proof) {
            return Ok(Outcome::Fork(Box::new(fork)));
        }
    }
    save(&args.state, &served).map_err(usage)?;
    let cosigned = match &args.cosign_key {
        Some(path) => {
            cosign(&mut journal, path, &served).await?;
            true
        }
        None => false,
    };
    Ok(Outcome::Consistent { from, to: served.tree_size, cosigned })
}

/// `None` when `served` extends `kept` by `proof`; else the evidence.
fn check(kept: &SignedTreeHead, served: &SignedTreeHead, proof: Result<Vec<merkle::Hash>, String>) -> Option<Fork> {
    let fork = |reason: String, proof: &[merkle::Hash]| Fork {
        reason,
        kept: kept.clone(),
        served: served.clone(),
        consistency_proof: proof.iter().map(|h| hex(h)).collect(),
    };
    match proof {
        Err(reason) => Some(fork(reason, &[])),
        Ok(proof)
            if merkle::verify_consistency(
                kept.tree_size,
                served.tree_size,
                &proof,
                &kept.root_hash,
                &served.root_hash,
            ) =>
        {
            None
        }
        Ok(proof) => Some(fork(
            format!(
                "the tree of {} entries does not extend the tree of {} entries kept: the history was rewritten",
                served.tree_size, kept.tree_size
            ),
            &proof,
        )),
    }
}

async fn cosign(
    journal: &mut pb::journal_service_client::JournalServiceClient<super::Authed>,
    key: &Path,
    head: &SignedTreeHead,
) -> Result<(), ClientError> {
    let signer = Signer::load(key).map_err(ClientError::Usage)?;
    let request = pb::AddTreeHeadCosignatureRequest {
        tree_size: head.tree_size,
        root_hash: hex(&head.root_hash),
        public_key: hex(&signer.public_key()),
        signature: hex(&signer.cosign(head.tree_size, &head.root_hash)),
    };
    journal.add_tree_head_cosignature(request).await?;
    Ok(())
}

/// The served head, checked: signed by the trusted key.
fn signed(head: &pb::SignedTreeHead, trusted: &PublicKey) -> Result<SignedTreeHead, String> {
    let head = convert::tree_head_from_pb(head)?.signed;
    head.verify(std::slice::from_ref(trusted))?;
    Ok(head)
}

fn hashes(texts: &[String]) -> Result<Vec<merkle::Hash>, String> {
    texts.iter().map(|t| convert::hex_array(t, "a proof hash")).collect()
}

fn load(path: &Path) -> Result<Option<SignedTreeHead>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let state: State =
                serde_json::from_str(&text).map_err(|e| format!("{}: not a witness state: {e}", path.display()))?;
            Ok(Some(state.tree_head))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Keeps the head: written beside the state and renamed over it, so a crash leaves one or the other.
fn save(path: &Path, head: &SignedTreeHead) -> Result<(), String> {
    use std::io::Write;
    let json = serde_json::to_string_pretty(&State { tree_head: head.clone() }).expect("in-memory encoding");
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(json.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    };
    write().map_err(|e| format!("cannot keep the head in {}: {e}", path.display()))
}
