//! Derived state: what the projector made of the journal, readable as one ordered key space.
//!
//! The writer applies each committed group to an in-memory overlay (the hot state: exposure rows,
//! as-of sums and pledgor intervals are touched by almost every write and stay there until the next
//! checkpoint, written once however often they changed). A checkpoint freezes the overlay and a
//! thread of its own writes it into the base store as one atomic batch together with the journal
//! head it reflects (`META_DERIVED_THROUGH`); a start loads that and replays the journal after it.
//! Nothing derived is flushed at acknowledgement: the journal alone is the ground state.
//!
//! Reads look in the active overlay, then the frozen one being checkpointed, then the base: a
//! group becomes visible only when the writer applies it, after its journal append is durable.
//! Additions (`Op::Add`) are kept as deltas in the overlays and folded over the layers below at
//! read. So that no read counts a delta twice (in the frozen overlay and again in the base that
//! just took it) or misses it, every hand-over between layers bumps `epoch` at the instant it
//! becomes visible, and a read that saw the epoch move reads again.

use super::journal::merkle::{self, Hash};
use super::journal::{Head, Journal};
use super::keys;
use super::tree;
use crate::store::{Batch, Counters, Entry, Found, Op, Pending, Store, StoreError};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

/// Overlay bytes (keys and values) after which the writer checkpoints, by default: bounds the memory
/// of derived state not yet in the base store and the replay at the next start.
pub const CHECKPOINT_BYTES: usize = 16 << 20;

/// The active overlay may grow to this many times the checkpoint size while a checkpoint is being
/// written; then the writer waits for it.
pub const OVERLAY_FACTOR_MAX: usize = 4;

/// Writes applied but not checkpointed, each key's combined in the order applied.
#[derive(Debug, Default)]
struct Overlay {
    map: BTreeMap<Vec<u8>, Op>,
    bytes: usize,
    /// The journal head this overlay (with everything before it) reflects.
    through: Head,
}

impl Overlay {
    fn get(&self, key: &[u8]) -> Option<Op> {
        self.map.get(key).cloned()
    }

    /// Up to `limit` entries (deletions and additions included) under `prefix`, strictly after
    /// `after`.
    fn range(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Op)> {
        let start = match after {
            Some(a) => Bound::Excluded(a.to_vec()),
            None => Bound::Included(prefix.to_vec()),
        };
        self.map
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The checkpoint in progress, and whether the last one failed.
#[derive(Debug, Default)]
struct Checkpointing {
    running: bool,
    failed: Option<String>,
}

pub struct Derived {
    base: Arc<dyn Store>,
    checkpoint_bytes: usize,
    active: RwLock<Overlay>,
    frozen: RwLock<Option<Arc<Overlay>>>,
    state: Mutex<Checkpointing>,
    done: Condvar,
    /// Held while the base store is written or pinned by `verify`: the base then reflects exactly
    /// the head it records.
    base_lock: Arc<Mutex<()>>,
    /// Bumped at every hand-over between layers (active to frozen, frozen to base).
    epoch: AtomicU64,
    /// The journal's Merkle tree not yet stored (`tree`): always of `through`'s sequence leaves.
    /// Written under the active overlay's lock, with the tiles it completes.
    tree: RwLock<tree::Tail>,
}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Derived").finish_non_exhaustive()
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unavailable("derived state lock poisoned".to_owned())
}

impl Derived {
    /// Derived state over `base`, continuing from its checkpoint; `journal` is the one it reflects
    /// (its last entries give the leaves of the Merkle tree's tile being filled).
    pub fn new(
        base: Arc<dyn Store>,
        checkpoint_bytes: usize,
        journal: &dyn Journal,
    ) -> Result<Arc<Derived>, StoreError> {
        let through = checkpointed_through(base.as_ref())?;
        let filling = through.sequence % tree::TILE_LEAVES as u64;
        let read = journal
            .read(through.sequence - filling + 1, filling as usize)
            .map_err(|e| StoreError::Unavailable(format!("the journal's last entries: {e}")))?;
        if read.len() as u64 != filling || read.last().is_some_and(|s| s.head() != through) {
            return Err(StoreError::Corrupt(format!(
                "derived state reflects journal entry {} that the journal does not hold as checkpointed",
                through.sequence
            )));
        }
        let leaves = read.iter().map(|s| merkle::leaf_hash(&s.bytes)).collect();
        let tree = tree::Tail::load(base.as_ref(), through.sequence, leaves)?;
        Ok(Arc::new(Derived {
            base,
            checkpoint_bytes,
            active: RwLock::new(Overlay { through, ..Overlay::default() }),
            frozen: RwLock::new(None),
            state: Mutex::default(),
            done: Condvar::new(),
            base_lock: Arc::default(),
            epoch: AtomicU64::new(0),
            tree: RwLock::new(tree),
        }))
    }

    /// The journal head derived state reflects (applied, checkpointed or not).
    pub fn through(&self) -> Result<Head, StoreError> {
        Ok(self.active.read().map_err(poisoned)?.through)
    }

    /// Applies a committed group's derived writes (the projector's output for entries up to
    /// `through`, whose journal append is durable) and extends the Merkle tree by `leaves`, the
    /// leaf hashes of those entries (`merkle::leaf_hash` of their stored bytes).
    pub fn apply(&self, mut batch: Batch, through: Head, leaves: &[Hash]) -> Result<(), StoreError> {
        let mut active = self.active.write().map_err(poisoned)?;
        assert!(through.sequence >= active.through.sequence, "derived state moves forward only");
        let mut tree = self.tree.write().map_err(poisoned)?;
        assert_eq!(
            active.through.sequence + leaves.len() as u64,
            through.sequence,
            "one leaf per entry applied: the tree's size is the head's sequence"
        );
        for leaf in leaves {
            tree.push(*leaf, &mut batch.ops);
        }
        for (key, op) in batch.ops {
            active.bytes += key.len() + op_bytes(&op);
            // One descent of the tree per key (a lookup, then an insert, was two).
            match active.map.entry(key) {
                std::collections::btree_map::Entry::Occupied(mut held) => {
                    let held = held.get_mut();
                    let older = std::mem::replace(held, Op::Delete);
                    *held = older.then(op)?;
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(op);
                }
            }
        }
        active.through = through;
        Ok(())
    }

    /// Whether the writer should checkpoint now: the overlay reached the checkpoint size and no
    /// checkpoint is being written, or it reached `OVERLAY_FACTOR_MAX` times the size (then the
    /// writer waits for the running one: memory stays bounded). While one is written the writer
    /// goes on filling the overlay instead of stalling, and the next checkpoint coalesces more.
    pub fn checkpoint_due(&self) -> bool {
        let bytes = self.active.read().map(|a| a.bytes).unwrap_or(usize::MAX);
        if bytes < self.checkpoint_bytes {
            return false;
        }
        let running = self.state.lock().map(|s| s.running).unwrap_or(false);
        !running || bytes >= self.checkpoint_bytes.saturating_mul(OVERLAY_FACTOR_MAX)
    }

    /// Freezes the overlay and writes it into the base store on a thread of its own; waits first
    /// for a checkpoint still running (memory stays bounded by two overlays). Fails when an
    /// earlier checkpoint failed: derived state cannot be persisted, so the writer must stop.
    pub fn checkpoint(self: &Arc<Self>) -> Result<(), StoreError> {
        let mut state = self.wait_idle()?;
        let overlay = {
            let mut active = self.active.write().map_err(poisoned)?;
            if active.map.is_empty() && checkpointed_through(self.base.as_ref())? == active.through {
                return Ok(());
            }
            let through = active.through;
            let overlay = Arc::new(std::mem::replace(&mut *active, Overlay { through, ..Overlay::default() }));
            // Within the active lock: no read sees the overlay in neither layer or in both.
            *self.frozen.write().map_err(poisoned)? = Some(overlay.clone());
            self.epoch.fetch_add(1, Ordering::SeqCst);
            overlay
        };
        state.running = true;
        drop(state);
        let derived = self.clone();
        std::thread::Builder::new()
            .name("ipledger-checkpoint".to_owned())
            .spawn(move || derived.write_checkpoint(&overlay))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(())
    }

    /// `checkpoint`, then waits until it is in the base store (at shutdown, and in tests).
    pub fn checkpoint_and_wait(self: &Arc<Self>) -> Result<(), StoreError> {
        self.checkpoint()?;
        drop(self.wait_idle()?);
        Ok(())
    }

    fn wait_idle(&self) -> Result<std::sync::MutexGuard<'_, Checkpointing>, StoreError> {
        let mut state = self.state.lock().map_err(poisoned)?;
        while state.running {
            state = self.done.wait(state).map_err(poisoned)?;
        }
        match &state.failed {
            Some(e) => Err(StoreError::OutcomeUnknown(format!("a checkpoint of derived state failed: {e}"))),
            None => Ok(state),
        }
    }

    fn write_checkpoint(&self, overlay: &Overlay) {
        let started = std::time::Instant::now();
        let mut ops: Vec<_> = overlay.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        ops.push((keys::META_DERIVED_THROUGH.to_vec(), Op::Put(super::codec::encode(&overlay.through))));
        let keys = ops.len();
        if tracing::enabled!(tracing::Level::DEBUG) {
            // Which families a checkpoint writes, and how many bytes: where the store's time goes.
            let mut families = BTreeMap::<u8, (usize, usize)>::new();
            for (key, op) in &ops {
                let family = families.entry(key.first().copied().unwrap_or(b'?')).or_default();
                family.0 += 1;
                family.1 += key.len() + op_bytes(op);
            }
            let families: Vec<String> =
                families.iter().map(|(f, (n, bytes))| format!("{}={n}/{bytes}B", *f as char)).collect();
            tracing::debug!(families = families.join(" "), "checkpoint keys");
        }
        let result = {
            let _base = self.base_lock.lock();
            // The frozen overlay goes at the instant its writes become readable in the base.
            self.base.commit_and(Batch { ops }, &mut || {
                *self.frozen.write().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                self.epoch.fetch_add(1, Ordering::SeqCst);
            })
        };
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(()) => {
                tracing::debug!(
                    keys,
                    through = overlay.through.sequence,
                    ms = started.elapsed().as_millis() as u64,
                    "checkpoint written"
                );
            }
            Err(e) => {
                // The frozen overlay stays readable; the writer learns of it at its next checkpoint.
                tracing::error!(error = %e, "checkpoint of derived state failed");
                state.failed = Some(e.to_string());
            }
        }
        state.running = false;
        self.done.notify_all();
    }

    /// Holds the base store still (no checkpoint lands) and says which head it reflects: `verify`
    /// compares it with a rebuild while writes go on into the overlay.
    pub fn pin(&self) -> Result<(std::sync::MutexGuard<'_, ()>, Head), StoreError> {
        let guard = self.base_lock.lock().map_err(poisoned)?;
        let through = checkpointed_through(self.base.as_ref())?;
        Ok((guard, through))
    }

    /// The journal's Merkle tree as it is now, for proofs read through this derived state and
    /// `journal` (the one it reflects: full tiles' leaves are hashed from its entries).
    pub fn tree<'a>(&'a self, journal: &'a dyn Journal) -> Result<tree::View<'a>, StoreError> {
        Ok(self.tree.read().map_err(poisoned)?.view(self, tree::Source::Journal(journal)))
    }

    /// The base store (checkpointed state only).
    pub fn base(&self) -> &dyn Store {
        self.base.as_ref()
    }
}

/// The head the base store's checkpoint reflects.
pub fn checkpointed_through(base: &dyn Store) -> Result<Head, StoreError> {
    match base.get(keys::META_DERIVED_THROUGH)? {
        Some(bytes) => {
            postcard::from_bytes(&bytes).map_err(|e| StoreError::Corrupt(format!("derived checkpoint mark: {e}")))
        }
        None => Ok(Head::default()),
    }
}

/// Hands an overlay's write to `pending` as one layer's word on its key.
fn over(pending: &mut Pending, op: &Op) -> Result<Option<Option<Vec<u8>>>, StoreError> {
    match op {
        Op::Put(value) => pending.over(Found::Value(value)),
        Op::Delete => pending.over(Found::Deleted),
        Op::Add(adds) => pending.over(Found::Added(&adds.encode())),
    }
}

/// What an overlay entry costs in memory, roughly: its bytes, or ~6 per counter cell encoded.
fn op_bytes(op: &Op) -> usize {
    match op {
        Op::Put(value) => value.len(),
        Op::Delete => 0,
        Op::Add(adds) => 6 * adds.cells().len(),
    }
}

impl Derived {
    /// The key's value as of one epoch: `None` when a hand-over between layers ran meanwhile.
    fn get_once(&self, key: &[u8]) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let mut pending = Pending::default();
        let held = self.active.read().map_err(poisoned)?.get(key);
        if let Some(op) = &held
            && let Some(value) = over(&mut pending, op)?
        {
            return Ok(Some(value));
        }
        let frozen = self.frozen.read().map_err(poisoned)?.clone();
        if let Some(op) = frozen.and_then(|f| f.get(key))
            && let Some(value) = over(&mut pending, &op)?
        {
            return Ok(Some(value));
        }
        if !pending.is_adding() {
            // Nothing to fold: the base's answer stands whatever moved meanwhile, as before.
            return Ok(Some(self.base.get(key)?));
        }
        let value = pending.finish(self.base.get(key)?.as_deref())?;
        Ok((self.epoch.load(Ordering::SeqCst) == epoch).then_some(value))
    }

    /// Up to `want` entries after `cursor` as of one epoch, and the key to continue after (`None`:
    /// the prefix is done); `None` when a hand-over ran meanwhile.
    #[allow(clippy::type_complexity)]
    fn scan_once(
        &self,
        prefix: &[u8],
        cursor: Option<&[u8]>,
        want: usize,
        cells: Option<crate::store::CellsOf<'_>>,
    ) -> Result<Option<(Vec<Entry>, Option<Vec<u8>>)>, StoreError> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let mut active = self.active.read().map_err(poisoned)?.range(prefix, cursor, want);
        let frozen = self.frozen.read().map_err(poisoned)?.clone();
        let mut frozen = frozen.map(|f| f.range(prefix, cursor, want)).unwrap_or_default();
        let base = match cells {
            Some(cells) => self.base.scan_cells(prefix, cursor, want, cells)?,
            None => self.base.scan(prefix, cursor, want)?,
        };
        let base: Vec<_> = base.into_iter().map(|(k, v)| (k, Op::Put(v))).collect();
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return Ok(None);
        }
        if let Some(cells) = cells {
            for (key, op) in active.iter_mut().chain(frozen.iter_mut()) {
                let range = cells(key);
                match op {
                    Op::Add(adds) => *adds = adds.restricted(&range),
                    Op::Put(value) => *value = Counters::decode(value)?.restricted(&range).encode(),
                    Op::Delete => {}
                }
            }
        }
        // A source that filled `want` may hold more keys after its last: merge only up to the
        // smallest such last key, then continue from there.
        let horizon = [&active, &frozen, &base]
            .iter()
            .filter(|s| s.len() == want)
            .filter_map(|s| s.last().map(|(k, _)| k.clone()))
            .min();
        let mut merged: BTreeMap<Vec<u8>, Op> = BTreeMap::new();
        // Oldest first: base, then frozen, then active, each combined over the one before. A key
        // the base does not return (up to the horizon) has no value there.
        for (k, op) in base.into_iter().chain(frozen).chain(active) {
            if horizon.as_ref().is_none_or(|h| k <= *h) {
                match merged.get_mut(&k) {
                    Some(held) => {
                        let older = std::mem::replace(held, Op::Delete);
                        *held = older.then(op)?;
                    }
                    None => {
                        merged.insert(k, Op::Delete.then(op)?);
                    }
                }
            }
        }
        let entries = merged
            .into_iter()
            .filter_map(|(k, op)| match op {
                Op::Put(v) => Some((k, v)),
                _ => None,
            })
            .collect();
        Ok(Some((entries, horizon)))
    }
}

impl Store for Derived {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        loop {
            if let Some(value) = self.get_once(key)? {
                return Ok(value);
            }
        }
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.scan_with(prefix, after, limit, None)
    }

    fn scan_cells(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        cells: crate::store::CellsOf<'_>,
    ) -> Result<Vec<Entry>, StoreError> {
        self.scan_with(prefix, after, limit, Some(cells))
    }

    fn commit(&self, _batch: Batch) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("derived state is written by the projector only".to_owned()))
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.base.size_on_disk()
    }
}

impl Derived {
    fn scan_with(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        cells: Option<crate::store::CellsOf<'_>>,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let mut cursor = after.map(<[u8]>::to_vec);
        while out.len() < limit {
            let want = (limit - out.len()).min(4096);
            let Some((entries, horizon)) = self.scan_once(prefix, cursor.as_deref(), want, cells)? else { continue };
            for entry in entries {
                out.push(entry);
                if out.len() == limit {
                    return Ok(out);
                }
            }
            match horizon {
                Some(h) => cursor = Some(h),
                None => break,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::journal::MemoryJournal;
    use crate::store::MemoryStore;

    fn head(sequence: u64) -> Head {
        Head { sequence, hash: [sequence as u8; 32] }
    }

    fn put(k: &str, v: &str) -> (Vec<u8>, Op) {
        (k.as_bytes().to_vec(), Op::Put(v.as_bytes().to_vec()))
    }

    fn del(k: &str) -> (Vec<u8>, Op) {
        (k.as_bytes().to_vec(), Op::Delete)
    }

    fn keys_of(entries: Vec<Entry>) -> Vec<String> {
        entries
            .into_iter()
            .map(|(k, v)| format!("{}={}", String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    }

    #[test]
    fn reads_merge_overlays_over_the_checkpoint_and_scans_page_through_deletions() {
        let base = Arc::new(MemoryStore::default());
        base.commit(Batch { ops: (0..10).map(|i| put(&format!("a{i}"), "base")).collect() }).unwrap();
        let derived = Derived::new(base.clone(), CHECKPOINT_BYTES, &MemoryJournal::default()).unwrap();
        derived
            .apply(Batch { ops: vec![del("a1"), del("a2"), put("a3", "one"), put("b0", "one")] }, head(1), &[[0; 32]])
            .unwrap();
        derived.checkpoint_and_wait().unwrap();
        assert_eq!(checkpointed_through(base.as_ref()).unwrap(), head(1));
        derived
            .apply(Batch { ops: vec![del("a4"), put("a2", "two"), put("a45", "two")] }, head(2), &[[0; 32]])
            .unwrap();
        assert_eq!(derived.get(b"a1").unwrap(), None);
        assert_eq!(derived.get(b"a2").unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(derived.get(b"a5").unwrap().as_deref(), Some(&b"base"[..]));
        let all = keys_of(derived.scan(b"a", None, 100).unwrap());
        assert_eq!(
            all,
            ["a0=base", "a2=two", "a3=one", "a45=two", "a5=base", "a6=base", "a7=base", "a8=base", "a9=base"]
        );
        // Page by page, with every page limit, the same keys in the same order.
        for limit in 1..5 {
            let mut paged = Vec::new();
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = derived.scan(b"a", after.as_deref(), limit).unwrap();
                after = page.last().map(|(k, _)| k.clone());
                let done = page.len() < limit;
                paged.extend(keys_of(page));
                if done {
                    break;
                }
            }
            assert_eq!(paged, all, "limit {limit}");
        }
        assert_eq!(derived.through().unwrap(), head(2));
        assert!(derived.commit(Batch::default()).is_err(), "only the projector writes");
    }

    #[test]
    fn additions_fold_over_every_layer_and_no_read_counts_one_twice_or_misses_it() {
        use crate::store::Counters;
        use std::sync::atomic::AtomicBool;
        let one = || Op::Add([(0u32, 1i128)].into_iter().collect());
        let count = |bytes: Option<Vec<u8>>| {
            bytes.map_or(0, |b| Counters::decode(&b).unwrap().cells().first().map_or(0, |c| c.1))
        };
        let base = Arc::new(MemoryStore::default());
        base.commit(Batch { ops: vec![(b"n".to_vec(), one()), (b"z".to_vec(), one())] }).unwrap();
        let derived = Derived::new(base, 64, &MemoryJournal::default()).unwrap();
        derived
            .apply(
                Batch { ops: vec![(b"z".to_vec(), Op::Add([(0u32, -1i128)].into_iter().collect()))] },
                head(1),
                &[[0; 32]],
            )
            .unwrap();
        assert_eq!(derived.get(b"z").unwrap(), None, "a sum that comes to zero is no key");
        assert!(derived.scan(b"z", None, 10).unwrap().is_empty());
        let applied = Arc::new(AtomicU64::new(1));
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (derived, applied, done) = (derived.clone(), applied.clone(), done.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                while !done.load(Ordering::SeqCst) {
                    let got = count(derived.get(b"n").unwrap());
                    let scanned = count(derived.scan(b"n", None, 1).unwrap().pop().map(|(_, v)| v));
                    let ceiling = applied.load(Ordering::SeqCst) as i128;
                    assert!(got >= last && scanned >= got, "a read missed an addition: {last}, {got}, {scanned}");
                    assert!(scanned <= ceiling, "a read counted an addition twice: {scanned} > {ceiling}");
                    last = got;
                }
            })
        };
        for i in 2..=3000u64 {
            // Raised before the addition is applied: no read can see more than `applied`.
            applied.store(i, Ordering::SeqCst);
            derived.apply(Batch { ops: vec![(b"n".to_vec(), one())] }, head(i), &[[0; 32]]).unwrap();
            if derived.checkpoint_due() {
                derived.checkpoint().unwrap();
            }
        }
        derived.checkpoint_and_wait().unwrap();
        done.store(true, Ordering::SeqCst);
        reader.join().unwrap();
        assert_eq!(count(derived.get(b"n").unwrap()), 3000);
        assert_eq!(count(derived.base().get(b"n").unwrap()), 3000);
    }

    #[test]
    fn a_failed_checkpoint_keeps_its_writes_readable_and_stops_the_next() {
        use crate::store::{Access, Guarded};
        use std::sync::atomic::{AtomicBool, Ordering};
        let fail = Arc::new(AtomicBool::new(false));
        let failing = fail.clone();
        let base: Arc<dyn Store> = Arc::new(Guarded::new(Arc::new(MemoryStore::default()), move |access| {
            if access == Access::Commit && failing.load(Ordering::SeqCst) {
                return Err(StoreError::OutcomeUnknown("disk full".to_owned()));
            }
            Ok(())
        }));
        let derived = Derived::new(base, CHECKPOINT_BYTES, &MemoryJournal::default()).unwrap();
        derived.apply(Batch { ops: vec![put("k", "v")] }, head(1), &[[0; 32]]).unwrap();
        fail.store(true, Ordering::SeqCst);
        assert!(derived.checkpoint_and_wait().is_err());
        assert_eq!(derived.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert!(derived.checkpoint().is_err());
    }
}
