//! The data directory: the engine factory of the embedded ledger. It holds
//!
//! | path | what |
//! |---|---|
//! | `journal/` | the journal (sled, `ledger::journal::SledJournal`): the ground state |
//! | `derived/` | the checkpoint of derived state: sorted runs packed into sled values (`store::RunStore`) |
//! | `signing-key.p8`, `signing-key.pub` | the key that signs journal heads, and its public half |
//!
//! A directory written by a release before the journal had a format of its own (one sled database
//! at the directory itself, journal and derived records together) is upgraded in place when it is
//! opened: its entries are copied byte for byte into `journal/` (as format version 0, so their
//! hashes still verify), the copy is checked entry by entry and then renamed into place, and the
//! ledger rebuilds derived state from it at start. The release's files are removed only after that
//! start succeeded (`finish_upgrade`); until then the directory can still be opened by the release.

use crate::ledger::journal::{self, Head, Journal, SledJournal, Stored};
use crate::ledger::signing::Signer;
use crate::store::{RunStore, SledStore, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const JOURNAL_DIR: &str = "journal";
pub const DERIVED_DIR: &str = "derived";
const UPGRADING_DIR: &str = "journal.upgrading";
/// The files sled 0.34 keeps in its directory: what a release before the journal format left.
const LEGACY_FILES: &[&str] = &["conf", "db", "blobs", "snap"];
/// The key family of the journal in the release's single key space.
const LEGACY_JOURNAL: &[u8] = b"L";
/// Entries copied per append while upgrading.
const UPGRADE_CHUNK: usize = 4096;

/// An opened data directory.
#[allow(missing_debug_implementations, reason = "trait objects of engines")]
pub struct Opened {
    pub journal: Arc<dyn Journal>,
    pub derived: Arc<dyn Store>,
    pub signer: Signer,
    /// The PostgreSQL journal's lease term, which the writer's lease sets (`None`: embedded).
    pub fence: Option<Arc<std::sync::atomic::AtomicI64>>,
    /// Release files still in the directory: remove them with `finish_upgrade` once the ledger
    /// started on the upgraded journal.
    pub upgraded: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the data directory {dir}: {what} (is another ipledger using it?)")]
    Store { dir: PathBuf, what: String },
    #[error("upgrading {dir}: {what}")]
    Upgrade { dir: PathBuf, what: String },
    #[error("the signing key: {0}")]
    Key(String),
}

fn legacy_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    LEGACY_FILES.iter().any(|legacy| name == *legacy || name.starts_with(&format!("{legacy}.")))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Opens (or creates) the data directory `dir`, upgrading a release's directory first.
pub fn open(
    dir: &Path,
    cache_bytes: u64,
    journal_url: Option<&crate::ledger::journal::PostgresTarget>,
    signing_key: Option<&Path>,
) -> Result<Opened, OpenError> {
    create_private(dir).map_err(|e| OpenError::Store { dir: dir.to_path_buf(), what: e.to_string() })?;
    let journal_dir = dir.join(JOURNAL_DIR);
    let legacy = legacy_files(dir);
    let upgraded = !legacy.is_empty();
    let store_error = |what: String| OpenError::Store { dir: dir.to_path_buf(), what };
    // The embedded journal gets a quarter of the cache (appends and recent reads); derived state
    // the rest, or all of it when the journal lives in PostgreSQL.
    let mut fence = None;
    let signer = Signer::open(dir, signing_key).map_err(OpenError::Key)?;
    let (journal, journal_cache): (Arc<dyn Journal>, u64) = match journal_url {
        Some(_) if upgraded => {
            return Err(OpenError::Upgrade {
                dir: dir.to_path_buf(),
                what: "a release's directory upgrades with the embedded journal; then export it and restore into PostgreSQL".to_owned(),
            });
        }
        Some(url) => {
            let journal = connect_postgres(url).map_err(|e| store_error(format!("the PostgreSQL journal: {e}")))?;
            // Every group this node writes is signed with the cluster's key, for the followers.
            let journal = journal.sign_groups_with(Arc::new(signer.clone()));
            fence = Some(journal.term());
            (Arc::new(journal), 0)
        }
        None => {
            if upgraded && !journal_dir.exists() {
                upgrade_journal(dir, cache_bytes)?;
            }
            let journal = SledJournal::open(&journal_dir, cache_bytes / 4).map_err(|e| store_error(e.to_string()))?;
            (Arc::new(journal), cache_bytes / 4)
        }
    };
    let derived =
        RunStore::open(&dir.join(DERIVED_DIR), cache_bytes - journal_cache).map_err(|e| store_error(e.to_string()))?;
    Ok(Opened { journal, derived: Arc::new(derived), signer, fence, upgraded })
}

/// Creates `dir` (and missing parents) readable by its owner only: it holds every bank's book and
/// the signing key. An existing directory open to others is left as the operator made it, with a
/// warning.
pub fn create_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(PRIVATE_DIR_MODE).create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o777), "the data directory is open to other users: chmod 700 it");
    }
    Ok(())
}

/// The data directory's mode when ipledger creates it.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// How long a node waits at start for PostgreSQL to answer (a failover under way, or the whole
/// cluster starting at once) before it gives up.
const POSTGRES_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

fn connect_postgres(
    target: &crate::ledger::journal::PostgresTarget,
) -> Result<crate::ledger::journal::PostgresJournal, journal::JournalError> {
    let started = std::time::Instant::now();
    loop {
        match crate::ledger::journal::PostgresJournal::connect(target.clone()) {
            Err(journal::JournalError::Unavailable(e)) if started.elapsed() < POSTGRES_WAIT => {
                tracing::warn!(error = %e, "the PostgreSQL journal does not answer yet; trying again");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// Copies the release's journal into `journal/`, checking every entry, then renames it into place.
fn upgrade_journal(dir: &Path, cache_bytes: u64) -> Result<(), OpenError> {
    let fail = |what: String| OpenError::Upgrade { dir: dir.to_path_buf(), what };
    let upgrading = dir.join(UPGRADING_DIR);
    // An upgrade interrupted before its rename starts over.
    if upgrading.exists() {
        std::fs::remove_dir_all(&upgrading).map_err(|e| fail(e.to_string()))?;
    }
    tracing::warn!(dir = %dir.display(), "a data directory of a release before the journal format: upgrading it in place");
    let old = SledStore::open(dir, cache_bytes / 2).map_err(|e| fail(format!("opening it: {e}")))?;
    let copy = SledJournal::open(&upgrading, cache_bytes / 4).map_err(|e| fail(e.to_string()))?;
    let mut head = Head::default();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let chunk = old.scan(LEGACY_JOURNAL, after.as_deref(), UPGRADE_CHUNK).map_err(|e| fail(e.to_string()))?;
        let Some((last, _)) = chunk.last() else { break };
        after = Some(last.clone());
        let mut entries: Vec<Stored> = Vec::with_capacity(chunk.len());
        for (key, value) in &chunk {
            let legacy: journal::legacy::LegacyEntry =
                postcard::from_bytes(value).map_err(|e| fail(format!("journal record {}: {e}", journal::hex(key))))?;
            let stored = legacy.to_stored();
            let entry = stored.decode().map_err(|e| fail(e.to_string()))?;
            let previous = entries.last().map_or(head, Stored::head);
            if entry.sequence != previous.sequence + 1 || entry.prev_hash != previous.hash {
                return Err(fail(format!("entry {} does not follow entry {}", entry.sequence, previous.sequence)));
            }
            entries.push(stored);
        }
        head = copy.append(head, &entries).map_err(|e| fail(e.to_string()))?;
        tracing::info!(copied = head.sequence, "upgrading: journal entries copied");
    }
    drop(copy);
    drop(old);
    std::fs::rename(&upgrading, dir.join(JOURNAL_DIR)).map_err(|e| fail(e.to_string()))?;
    sync_dir(dir);
    tracing::warn!(
        entries = head.sequence,
        "upgrading: the journal is converted; derived state is rebuilt from it next"
    );
    Ok(())
}

/// Removes the release's files once the ledger started on the upgraded journal.
pub fn finish_upgrade(dir: &Path) -> std::io::Result<()> {
    for path in legacy_files(dir) {
        if path.is_dir() { std::fs::remove_dir_all(&path)? } else { std::fs::remove_file(&path)? }
    }
    sync_dir(dir);
    tracing::warn!(dir = %dir.display(), "upgrade complete: the release's files are removed");
    Ok(())
}

/// Makes a rename in `dir` durable (best effort: not every platform can sync a directory).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A run store in a directory of its own inside the data directory, removed when dropped: where
/// `verify` rebuilds derived state, so that its memory stays bounded by sled's cache.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    store: Option<Arc<RunStore>>,
}

/// sled's page cache for a scratch rebuild.
const SCRATCH_CACHE_BYTES: u64 = 64 << 20;

impl Scratch {
    pub fn create(data_dir: &Path) -> Result<Scratch, crate::store::StoreError> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = data_dir.join(format!("verify-scratch-{}-{nanos}", std::process::id()));
        let store = RunStore::open(&dir, SCRATCH_CACHE_BYTES)?;
        Ok(Scratch { dir, store: Some(Arc::new(store)) })
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone().expect("present until dropped")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.store.take();
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove the scratch directory of a verify");
        }
    }
}
