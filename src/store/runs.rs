//! Derived state as sorted runs packed into sled values: a small log-structured merge tree whose
//! every write is sequential.
//!
//! Why: a checkpoint used to insert each derived key into one sled tree at its own scattered
//! position, and sled clones and rewrites a leaf for every such insert (13-28 µs each, ~30 keys per
//! registration, bench/RESULTS.md 2026-12-05); its directory grew with every rewrite and its open
//! time with the directory. Here a checkpoint's batch is sorted once and written as one *run*: blocks
//! of about `BLOCK_BYTES` under ascending keys, appended, plus the run's index (the first key of each
//! block and a bloom filter) and the manifest, in one atomic sled batch and one flush.
//!
//! Reads go from the newest run to the oldest: the first run that holds the key (a value or a
//! deletion) answers; additions (`Op::Add`) found on the way are folded over it (an added-to key is
//! read in every run that holds it, until a merge folds them into one). A bloom filter skips the runs that cannot hold it; the fences name the one
//! block that can, and the block is searched in place (its entries are located by an offset table,
//! never decoded whole). Scans merge one cursor per run.
//!
//! A merger thread keeps the number of runs logarithmic: when `FANOUT` runs share a level it merges
//! them into one run of the next level (tiered compaction), dropping overwritten values, folding
//! additions, and dropping deletions too when the oldest run is among its inputs. A merged run replaces its inputs in the
//! manifest in one batch; the inputs' blocks are deleted once no reader holds them.
//!
//! Sled layout (tree `runs`; the default tree stays empty):
//!
//! | key | value |
//! |---|---|
//! | `B` run(8) block(4) | a block, LZ4-compressed (its size prepended, u32): `n` u32, `n` offsets u32, then entries `klen` u16, key, tag u8 (0 deleted, 1 value, 2 added counters), `vlen` u32, value |
//! | `F` run(8) | the run's index (`RunIndex`, postcard) |
//! | `M` | the manifest (`Manifest`, postcard): the live runs, oldest first, and the next run id |
//!
//! Invariants: levels never increase from the oldest run to the newest; a run's keys are unique and
//! ascending; a run listed in the manifest has its index and every block on disk.

use super::sled_store::{err as sled_error, unknown};
use super::{Batch, Entry, Found, Op, Pending, Store, StoreError};
use sled::IVec;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

/// A block is closed once it holds this many bytes (before compression): big enough that fences
/// stay ~1% of the data and LZ4 finds the keys' shared prefixes, small enough that sled's leaf (it
/// splits a leaf above 16 entries) of compressed blocks (about half of this) stays below its blob
/// threshold (a quarter of its 512 KiB segment): a larger leaf becomes a file of its own, written
/// anew at every consolidation and read whole by a point read that misses the cache.
const BLOCK_BYTES: usize = 8 << 10;
/// Runs of one level merged into one of the next.
const FANOUT: usize = 4;
/// The most runs one merge takes (a level that filled while the merger was busy).
const MERGE_INPUTS_MAX: usize = 2 * FANOUT;
const BLOOM_BITS_PER_KEY: usize = 10;
const BLOOM_HASHES: u32 = 7;
/// Blocks a merge writes per sled batch: bounds the merge's memory.
const MERGE_BLOCKS_PER_BATCH: usize = 256;
const KEY_BYTES_MAX: usize = u16::MAX as usize;
const TREE: &str = "runs";
const MANIFEST_KEY: &[u8] = b"M";
/// The version of this layout (blocks, index, bloom hash), kept in the manifest. 2: blocks are
/// LZ4-compressed. A store of another format is cleared when opened: derived state is rebuilt
/// from the journal.
const FORMAT: u32 = 2;
/// The most bytes a block may claim to decompress to: a block is `BLOCK_BYTES` plus one entry,
/// and a larger claim is a corrupt block, not an allocation to make.
const BLOCK_DECOMPRESSED_MAX: usize = 64 << 20;

/// Merges of levels below this run on one thread, the rest on another: a long merge of large runs
/// (minutes at 10M) must not leave the small runs of new checkpoints unmerged meanwhile, or every
/// read would visit them all.
const LARGE_LEVEL_MIN: u8 = 2;
const LANES: usize = 2;
/// The merge threads' nice value (Linux: a thread's own).
const MERGE_NICE: i32 = 10;

const _: () = assert!(FANOUT >= 2 && MERGE_INPUTS_MAX >= FANOUT && LARGE_LEVEL_MIN >= 1);

fn lane_of(level: u8) -> usize {
    usize::from(level >= LARGE_LEVEL_MIN)
}

fn block_key(run: u64, block: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = b'B';
    k[1..9].copy_from_slice(&run.to_be_bytes());
    k[9..].copy_from_slice(&block.to_be_bytes());
    k
}

fn index_key(run: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'F';
    k[1..].copy_from_slice(&run.to_be_bytes());
    k
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("derived runs: {what}"))
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unavailable("derived runs lock poisoned".to_owned())
}

/// FNV-1a with a splitmix64 finish: stable across builds (blooms are stored), and well spread.
fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Bloom {
    bits: Vec<u64>,
}

impl Bloom {
    fn build(hashes: &[u64]) -> Bloom {
        let words = (hashes.len() * BLOOM_BITS_PER_KEY).div_ceil(64).max(1);
        let mut bloom = Bloom { bits: vec![0; words] };
        for h in hashes {
            for bit in Bloom::positions(words, *h) {
                bloom.bits[bit / 64] |= 1 << (bit % 64);
            }
        }
        bloom
    }

    /// Double hashing (Kirsch-Mitzenmacher) from the two halves of one hash, over `words` words.
    fn positions(words: usize, h: u64) -> impl Iterator<Item = usize> {
        let m = (words * 64) as u64;
        let (h1, h2) = (h & 0xffff_ffff, (h >> 32) | 1);
        (0..u64::from(BLOOM_HASHES)).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
    }

    fn may_contain(&self, h: u64) -> bool {
        Bloom::positions(self.bits.len(), h).all(|bit| self.bits[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

/// What a run holds and where: written once with the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct RunIndex {
    level: u8,
    entries: u64,
    bytes: u64,
    /// The first key of each block, concatenated (one allocation per run, not one per block).
    fence_bytes: Vec<u8>,
    /// Where each block's first key ends in `fence_bytes`.
    fence_ends: Vec<u32>,
    last_key: Vec<u8>,
    bloom: Bloom,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Manifest {
    format: u32,
    next_run: u64,
    /// Live runs, oldest first.
    runs: Vec<u64>,
}

/// One run, as readers hold it. When a merge or a clear retires it, its blocks are deleted once the
/// last reader lets go of it (`Drop`).
struct Run {
    id: u64,
    index: RunIndex,
    tree: sled::Tree,
    cache: Arc<BlockCache>,
    retired: AtomicBool,
    trash: Arc<Mutex<Vec<u64>>>,
}

/// Blocks as reads found them, by (run, block). Reads fill it; merges read past it, so a merge
/// streaming gigabytes through sled does not evict what the writer and the queries keep reading
/// (profiled at 1M: 40% of the writer's time was sled reading evicted blocks back from disk).
type BlockCache = quick_cache::sync::Cache<(u64, u32), IVec, BlockWeight>;

#[derive(Debug, Clone, Copy)]
struct BlockWeight;

impl quick_cache::Weighter<(u64, u32), IVec> for BlockWeight {
    fn weight(&self, _: &(u64, u32), block: &IVec) -> u64 {
        // The block and the cache's own bookkeeping per entry.
        block.len() as u64 + 64
    }
}

/// The share of the cache budget that goes to the block cache; sled keeps the rest (its index
/// nodes, and the blocks being written).
const BLOCK_CACHE_SHARE_PERCENT: u64 = 75;

/// Whether a read goes through the block cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    Cache,
    Bypass,
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Acquire) {
            self.trash.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(self.id);
        }
    }
}

/// What one run holds for a key, borrowed from its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Raw<'a> {
    Value(&'a [u8]),
    Deleted,
    /// Encoded `Counters`.
    Added(&'a [u8]),
}

impl<'a> Raw<'a> {
    fn tag(self) -> u8 {
        match self {
            Raw::Deleted => 0,
            Raw::Value(_) => 1,
            Raw::Added(_) => 2,
        }
    }

    fn bytes(self) -> &'a [u8] {
        match self {
            Raw::Deleted => &[],
            Raw::Value(bytes) | Raw::Added(bytes) => bytes,
        }
    }

    fn found(self) -> Result<Found<'a>, StoreError> {
        Ok(match self {
            Raw::Value(bytes) => Found::Value(bytes),
            Raw::Deleted => Found::Deleted,
            Raw::Added(bytes) => Found::Added(bytes),
        })
    }
}

/// One entry of a block, borrowed from it.
type Slice<'a> = (&'a [u8], Raw<'a>);

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, StoreError> {
    let b = bytes.get(at..at + 4).ok_or_else(|| corrupt("a block ends inside a number"))?;
    Ok(u32::from_le_bytes(b.try_into().expect("four bytes")))
}

fn block_len(block: &[u8]) -> Result<usize, StoreError> {
    Ok(read_u32(block, 0)? as usize)
}

fn block_entry(block: &[u8], i: usize) -> Result<Slice<'_>, StoreError> {
    let n = block_len(block)?;
    let at = 4 + 4 * n + read_u32(block, 4 + 4 * i)? as usize;
    let klen = u16::from_le_bytes(block.get(at..at + 2).ok_or_else(|| corrupt("key length"))?.try_into().expect("2"));
    let key_end = at + 2 + usize::from(klen);
    let key = block.get(at + 2..key_end).ok_or_else(|| corrupt("key"))?;
    let tag = *block.get(key_end).ok_or_else(|| corrupt("tag"))?;
    let vlen = read_u32(block, key_end + 1)? as usize;
    let value_at = key_end + 5;
    let value = block.get(value_at..value_at + vlen).ok_or_else(|| corrupt("value"))?;
    match tag {
        0 => Ok((key, Raw::Deleted)),
        1 => Ok((key, Raw::Value(value))),
        2 => Ok((key, Raw::Added(value))),
        t => Err(corrupt(format!("entry tag {t}"))),
    }
}

/// The position of the first entry of `block` whose key is ≥ `key` (`n` when none is).
fn block_seek(block: &[u8], key: &[u8]) -> Result<usize, StoreError> {
    let (mut lo, mut hi) = (0, block_len(block)?);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if block_entry(block, mid)?.0 < key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// A stored block's bytes, decompressed.
fn decompress(stored: &[u8]) -> Result<Vec<u8>, String> {
    let claimed = stored.get(..4).ok_or("shorter than its size")?;
    let claimed = u32::from_le_bytes(claimed.try_into().expect("four bytes")) as usize;
    if claimed > BLOCK_DECOMPRESSED_MAX {
        return Err(format!("claims {claimed} bytes"));
    }
    lz4_flex::block::decompress_size_prepended(stored).map_err(|e| e.to_string())
}

/// Builds a run's blocks and index from ascending unique keys, handing each block to `sink`.
struct RunWriter {
    offsets: Vec<u32>,
    body: Vec<u8>,
    index: RunIndex,
    hashes: Vec<u64>,
    blocks: u32,
}

impl RunWriter {
    fn new(level: u8) -> RunWriter {
        RunWriter {
            offsets: Vec::new(),
            body: Vec::with_capacity(BLOCK_BYTES * 2),
            index: RunIndex { level, ..RunIndex::default() },
            hashes: Vec::new(),
            blocks: 0,
        }
    }

    fn push(
        &mut self,
        key: &[u8],
        raw: Raw<'_>,
        sink: &mut impl FnMut(u32, Vec<u8>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        assert!(key.len() <= KEY_BYTES_MAX, "a derived key is short");
        debug_assert!(self.index.entries == 0 || key > self.index.last_key.as_slice(), "keys ascend");
        if self.offsets.is_empty() {
            self.index.fence_bytes.extend_from_slice(key);
            self.index.fence_ends.push(u32::try_from(self.index.fence_bytes.len()).expect("fences below 4 GiB"));
        }
        self.offsets.push(u32::try_from(self.body.len()).expect("a block is far below 4 GiB"));
        self.body.extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.body.extend_from_slice(key);
        let value_bytes = raw.bytes();
        self.body.push(raw.tag());
        self.body.extend_from_slice(&u32::try_from(value_bytes.len()).expect("a value below 4 GiB").to_le_bytes());
        self.body.extend_from_slice(value_bytes);
        self.hashes.push(key_hash(key));
        self.index.entries += 1;
        self.index.last_key.clear();
        self.index.last_key.extend_from_slice(key);
        if self.body.len() >= BLOCK_BYTES {
            self.close_block(sink)?;
        }
        Ok(())
    }

    fn close_block(&mut self, sink: &mut impl FnMut(u32, Vec<u8>) -> Result<(), StoreError>) -> Result<(), StoreError> {
        if self.offsets.is_empty() {
            return Ok(());
        }
        let mut block = Vec::with_capacity(4 + 4 * self.offsets.len() + self.body.len());
        block.extend_from_slice(&(self.offsets.len() as u32).to_le_bytes());
        for o in &self.offsets {
            block.extend_from_slice(&o.to_le_bytes());
        }
        block.extend_from_slice(&self.body);
        // Keys share long prefixes (a family, a region, a credit code): LZ4 halves the bytes
        // every merge rewrites and the directory holds, at ~1 µs per block to read back.
        let block = lz4_flex::block::compress_prepend_size(&block);
        self.index.bytes += block.len() as u64;
        sink(self.blocks, block)?;
        self.blocks += 1;
        self.offsets.clear();
        self.body.clear();
        Ok(())
    }

    /// The index, or `None` for a run with no entries.
    fn finish(
        mut self,
        sink: &mut impl FnMut(u32, Vec<u8>) -> Result<(), StoreError>,
    ) -> Result<Option<RunIndex>, StoreError> {
        self.close_block(sink)?;
        if self.index.entries == 0 {
            return Ok(None);
        }
        self.index.bloom = Bloom::build(&self.hashes);
        assert_eq!(self.index.fence_ends.len(), self.blocks as usize, "one fence per block");
        Ok(Some(self.index))
    }
}

impl Run {
    fn block(&self, no: usize, fill: Fill) -> Result<IVec, StoreError> {
        let no = u32::try_from(no).expect("blocks of a run fit u32");
        if fill == Fill::Cache
            && let Some(block) = self.cache.get(&(self.id, no))
        {
            return Ok(block);
        }
        let stored = self
            .tree
            .get(block_key(self.id, no))
            .map_err(sled_error)?
            .ok_or_else(|| corrupt(format!("block {no} of run {} is missing", self.id)))?;
        let block =
            IVec::from(decompress(&stored).map_err(|e| corrupt(format!("block {no} of run {}: {e}", self.id)))?);
        if fill == Fill::Cache {
            self.cache.insert((self.id, no), block.clone());
        }
        Ok(block)
    }

    fn blocks(&self) -> usize {
        self.index.fence_ends.len()
    }

    fn fence(&self, block: usize) -> &[u8] {
        let start = block.checked_sub(1).map_or(0, |b| self.index.fence_ends[b] as usize);
        &self.index.fence_bytes[start..self.index.fence_ends[block] as usize]
    }

    /// The block that would hold `key`, if any: the last whose first key is ≤ `key`.
    fn block_for(&self, key: &[u8]) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.blocks());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.fence(mid) <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    /// Hands what the run holds for `key`, if anything, to `pending`; `Some` with the key's value
    /// when that settles it.
    fn get(&self, key: &[u8], hash: u64, pending: &mut Pending) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        if key > self.index.last_key.as_slice() || !self.index.bloom.may_contain(hash) {
            return Ok(None);
        }
        let Some(no) = self.block_for(key) else { return Ok(None) };
        let block = self.block(no, Fill::Cache)?;
        let i = block_seek(&block, key)?;
        if i < block_len(&block)? {
            let (found, raw) = block_entry(&block, i)?;
            if found == key {
                return pending.over(raw.found()?);
            }
        }
        Ok(None)
    }
}

/// A position in one run, at or after a key.
struct Cursor {
    run: Arc<Run>,
    block_no: usize,
    block: IVec,
    i: usize,
    fill: Fill,
}

impl Cursor {
    /// At the first entry ≥ `start`, or `None` past the run's end.
    fn seek(run: &Arc<Run>, start: &[u8], fill: Fill) -> Result<Option<Cursor>, StoreError> {
        if start > run.index.last_key.as_slice() {
            return Ok(None);
        }
        let block_no = run.block_for(start).unwrap_or(0);
        let block = run.block(block_no, fill)?;
        let i = block_seek(&block, start)?;
        let mut cursor = Cursor { run: run.clone(), block_no, block, i, fill };
        if !cursor.settle()? {
            return Ok(None);
        }
        Ok(Some(cursor))
    }

    /// Moves past exhausted blocks; false at the run's end.
    fn settle(&mut self) -> Result<bool, StoreError> {
        while self.i >= block_len(&self.block)? {
            self.block_no += 1;
            if self.block_no >= self.run.blocks() {
                return Ok(false);
            }
            self.block = self.run.block(self.block_no, self.fill)?;
            self.i = 0;
        }
        Ok(true)
    }

    fn entry(&self) -> Result<Slice<'_>, StoreError> {
        block_entry(&self.block, self.i)
    }

    fn advance(&mut self) -> Result<bool, StoreError> {
        self.i += 1;
        self.settle()
    }
}

/// What the merged runs hold for a key.
#[derive(Debug)]
enum Merged {
    Value(Vec<u8>),
    Deleted,
    /// Additions only, to fold over what older runs hold: their sum, encoded (`None`: zero).
    Added(Option<Vec<u8>>),
}

/// Merges cursors ordered oldest first: yields each key once, with the newest run's entry for it
/// and the additions above that entry folded over it.
struct Merge {
    cursors: Vec<Option<Cursor>>,
}

impl Merge {
    fn new(runs: &[Arc<Run>], start: &[u8], fill: Fill) -> Result<Merge, StoreError> {
        let cursors = runs.iter().map(|r| Cursor::seek(r, start, fill)).collect::<Result<_, _>>()?;
        Ok(Merge { cursors })
    }

    /// The next key and what the runs hold for it, or `None` at the end; with `cells`, a sum's
    /// cells in `cells(key)` only (every value taken to be counters).
    fn next(&mut self, cells: Option<super::CellsOf<'_>>) -> Result<Option<(Vec<u8>, Merged)>, StoreError> {
        let mut least: Option<&[u8]> = None;
        for c in self.cursors.iter().flatten() {
            let key = c.entry()?.0;
            if least.is_none_or(|l| key < l) {
                least = Some(key);
            }
        }
        let Some(key) = least else { return Ok(None) };
        let key = key.to_vec();
        let mut pending = match cells {
            Some(cells) => Pending::cells(cells(&key)),
            None => Pending::default(),
        };
        let mut settled: Option<Option<Vec<u8>>> = None;
        let mut absent = false;
        // Newest first: the first value or deletion settles the key, additions above it fold in.
        for slot in self.cursors.iter_mut().rev() {
            let Some(c) = slot else { continue };
            let (at, raw) = c.entry()?;
            if at != key.as_slice() {
                continue;
            }
            if settled.is_none() {
                absent = raw == Raw::Deleted && !pending.is_adding();
                settled = pending.over(raw.found()?)?;
            }
            if !c.advance()? {
                *slot = None;
            }
        }
        let merged = match settled {
            Some(Some(value)) => Merged::Value(value),
            // Nothing in the cells asked for, of a key that holds a sum.
            Some(None) if cells.is_some() && !absent => Merged::Value(super::Counters::default().encode()),
            Some(None) => Merged::Deleted,
            None => match pending.take_adds()? {
                None if cells.is_some() => Merged::Value(super::Counters::default().encode()),
                sum => Merged::Added(sum),
            },
        };
        Ok(Some((key, merged)))
    }
}

/// State shared by the store and its merger thread.
struct Shared {
    db: sled::Db,
    tree: sled::Tree,
    cache: Arc<BlockCache>,
    /// The live runs, oldest first: readers clone the `Arc` and read without a lock.
    runs: RwLock<Arc<Vec<Arc<Run>>>>,
    /// Held while the manifest is changed and written.
    manifest: Mutex<Manifest>,
    trash: Arc<Mutex<Vec<u64>>>,
    /// Set to wake each lane's merger; `stop` ends them.
    wake: Mutex<[bool; LANES]>,
    woken: Condvar,
    stop: AtomicBool,
    merge_failed: Mutex<Option<String>>,
}

/// The derived-state store of sorted runs (see the module header).
pub struct RunStore {
    shared: Arc<Shared>,
    mergers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for RunStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunStore").finish_non_exhaustive()
    }
}

impl RunStore {
    /// Opens (or creates) the store in `dir`. A directory of the earlier layout (every derived key
    /// in sled's default tree) is removed first: derived state is rebuilt from the journal.
    // Longer than ~70 lines: opening checks the format, lists the runs, deletes what a crash left
    // unlisted and starts the merge lanes, in that order.
    pub fn open(dir: &std::path::Path, cache_bytes: u64) -> Result<RunStore, StoreError> {
        let sled_cache_bytes = cache_bytes / 100 * (100 - BLOCK_CACHE_SHARE_PERCENT);
        let mut db = super::sled_store::open_db(dir, sled_cache_bytes)?;
        let has_runs = db.tree_names().iter().any(|n| n.as_ref() == TREE.as_bytes());
        if !has_runs && !db.is_empty() {
            tracing::warn!(dir = %dir.display(), "derived state of the scattered-key layout: removing it, to rebuild from the journal");
            drop(db);
            std::fs::remove_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("removing {}: {e}", dir.display())))?;
            db = super::sled_store::open_db(dir, sled_cache_bytes)?;
        }
        let tree = db.open_tree(TREE).map_err(sled_error)?;
        let manifest: Manifest = match tree.get(MANIFEST_KEY).map_err(sled_error)? {
            Some(bytes) => postcard::from_bytes(&bytes).map_err(|e| corrupt(format!("manifest: {e}")))?,
            None => Manifest { format: FORMAT, ..Manifest::default() },
        };
        let manifest = if manifest.format == FORMAT {
            manifest
        } else {
            // Derived state only: rebuilt from the journal (the ledger sees an empty store).
            tracing::warn!(
                found = manifest.format,
                format = FORMAT,
                "derived runs of another format: clearing them, to rebuild from the journal"
            );
            tree.clear().map_err(sled_error)?;
            tree.flush().map_err(sled_error)?;
            Manifest { format: FORMAT, ..Manifest::default() }
        };
        let trash = Arc::new(Mutex::new(Vec::new()));
        let block_cache_bytes = cache_bytes / 100 * BLOCK_CACHE_SHARE_PERCENT;
        let blocks_estimated = usize::try_from(block_cache_bytes / BLOCK_BYTES as u64).unwrap_or(usize::MAX).max(16);
        let cache = Arc::new(BlockCache::with_weighter(blocks_estimated, block_cache_bytes.max(1), BlockWeight));
        let mut runs = Vec::with_capacity(manifest.runs.len());
        for id in &manifest.runs {
            let bytes = tree
                .get(index_key(*id))
                .map_err(sled_error)?
                .ok_or_else(|| corrupt(format!("run {id} has no index")))?;
            let index: RunIndex =
                postcard::from_bytes(&bytes).map_err(|e| corrupt(format!("index of run {id}: {e}")))?;
            runs.push(Arc::new(Run {
                id: *id,
                index,
                tree: tree.clone(),
                cache: cache.clone(),
                retired: AtomicBool::new(false),
                trash: trash.clone(),
            }));
        }
        let shared = Arc::new(Shared {
            db,
            tree,
            cache,
            runs: RwLock::new(Arc::new(runs)),
            manifest: Mutex::new(manifest),
            trash,
            wake: Mutex::new([true; LANES]),
            woken: Condvar::new(),
            stop: AtomicBool::new(false),
            merge_failed: Mutex::new(None),
        });
        shared.collect_orphans()?;
        tracing::debug!(levels = ?shared.snapshot()?.iter().map(|r| r.index.level).collect::<Vec<_>>(), "derived runs opened");
        let mut mergers = Vec::with_capacity(LANES);
        for lane in 0..LANES {
            let worker = shared.clone();
            let merger = std::thread::Builder::new()
                .name(format!("ipledger-merge{lane}"))
                .spawn(move || worker.merge_loop(lane))
                .map_err(|e| StoreError::Unavailable(format!("cannot start a merge thread: {e}")))?;
            mergers.push(merger);
        }
        Ok(RunStore { shared, mergers: Mutex::new(mergers) })
    }

    /// Waits until no merge is due (tests, and `bench` before it measures the directory).
    pub fn settle(&self) -> Result<(), StoreError> {
        loop {
            if let Some(e) = self.shared.merge_failed.lock().map_err(poisoned)?.clone() {
                return Err(StoreError::Unavailable(format!("a merge of derived runs failed: {e}")));
            }
            let woken = self.shared.wake.lock().map_err(poisoned)?.iter().any(|w| *w);
            let due = (0..LANES).map(|lane| self.shared.next_merge(lane)).collect::<Result<Vec<_>, _>>()?;
            let idle = !woken && due.iter().all(Option::is_none);
            if idle {
                self.shared.empty_trash()?;
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// How many runs are live, per level (tests and logs).
    pub fn levels(&self) -> Vec<u8> {
        self.shared.snapshot().map(|runs| runs.iter().map(|r| r.index.level).collect()).unwrap_or_default()
    }
}

impl RunStore {
    fn scan_with(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        cells: Option<super::CellsOf<'_>>,
    ) -> Result<Vec<Entry>, StoreError> {
        let runs = self.shared.snapshot()?;
        let start = match after {
            // The smallest key strictly greater than `after`.
            Some(after) => [after, &[0]].concat(),
            None => prefix.to_vec(),
        };
        let mut merge = Merge::new(&runs, &start, Fill::Cache)?;
        let mut out = Vec::with_capacity(limit.min(1024));
        while out.len() < limit {
            let Some((key, merged)) = merge.next(cells)? else { break };
            if !key.starts_with(prefix) {
                break;
            }
            match merged {
                Merged::Value(value) => out.push((key, value)),
                Merged::Deleted => {}
                Merged::Added(None) => {}
                Merged::Added(Some(sum)) => out.push((key, sum)),
            }
        }
        Ok(out)
    }
}

impl Drop for RunStore {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake_merger();
        let handles = self.mergers.lock().map(|mut h| std::mem::take(&mut *h)).unwrap_or_default();
        for handle in handles {
            if handle.join().is_err() {
                tracing::error!("a merge thread panicked");
            }
        }
    }
}

impl Shared {
    fn snapshot(&self) -> Result<Arc<Vec<Arc<Run>>>, StoreError> {
        Ok(self.runs.read().map_err(poisoned)?.clone())
    }

    fn wake_merger(&self) {
        *self.wake.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = [true; LANES];
        self.woken.notify_all();
    }

    /// Makes `runs` the live runs (the manifest is already on disk) and retires `gone`; `visible`
    /// runs before any read can see them.
    fn publish(&self, runs: Vec<Arc<Run>>, gone: &[Arc<Run>], visible: &mut dyn FnMut()) -> Result<(), StoreError> {
        let mut live = self.runs.write().map_err(poisoned)?;
        *live = Arc::new(runs);
        visible();
        drop(live);
        for run in gone {
            run.retired.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn new_run(&self, id: u64, index: RunIndex) -> Arc<Run> {
        Arc::new(Run {
            id,
            index,
            tree: self.tree.clone(),
            cache: self.cache.clone(),
            retired: AtomicBool::new(false),
            trash: self.trash.clone(),
        })
    }

    /// Writes a checkpoint's sorted operations as the newest run, atomically and durably.
    fn add_run(&self, ops: Vec<(Vec<u8>, Op)>, visible: &mut dyn FnMut()) -> Result<(), StoreError> {
        let mut manifest = self.manifest.lock().map_err(poisoned)?;
        let current = self.snapshot()?;
        // Into an empty store, a deletion deletes nothing: keep none.
        let keep_deletions = !current.is_empty();
        let id = manifest.next_run;
        let mut batch = sled::Batch::default();
        let mut writer = RunWriter::new(0);
        let mut sink = |no: u32, block: Vec<u8>| {
            batch.insert(&block_key(id, no)[..], block);
            Ok(())
        };
        for (key, op) in &ops {
            let raw = match op {
                Op::Put(value) => Raw::Value(value),
                Op::Delete if keep_deletions => Raw::Deleted,
                Op::Delete => continue,
                Op::Add(adds) if adds.is_zero() => continue,
                Op::Add(adds) => {
                    writer.push(key, Raw::Added(&adds.encode()), &mut sink)?;
                    continue;
                }
            };
            writer.push(key, raw, &mut sink)?;
        }
        let Some(index) = writer.finish(&mut sink)? else {
            visible();
            return Ok(());
        };
        let mut next = Manifest { next_run: id + 1, ..manifest.clone() };
        next.runs.push(id);
        batch.insert(&index_key(id)[..], postcard::to_stdvec(&index).expect("an index encodes"));
        batch.insert(MANIFEST_KEY, postcard::to_stdvec(&next).expect("a manifest encodes"));
        self.tree.apply_batch(batch).map_err(unknown)?;
        self.db.flush().map_err(unknown)?;
        *manifest = next;
        let mut runs = current.as_ref().clone();
        runs.push(self.new_run(id, index));
        self.publish(runs, &[], visible)?;
        drop(manifest);
        self.wake_merger();
        Ok(())
    }

    /// Drops every run.
    fn clear(&self) -> Result<(), StoreError> {
        let mut manifest = self.manifest.lock().map_err(poisoned)?;
        let next = Manifest { runs: Vec::new(), ..manifest.clone() };
        self.tree.insert(MANIFEST_KEY, postcard::to_stdvec(&next).expect("a manifest encodes")).map_err(unknown)?;
        self.db.flush().map_err(unknown)?;
        *manifest = next;
        let gone = self.snapshot()?;
        self.publish(Vec::new(), &gone, &mut || {})?;
        drop(gone);
        drop(manifest);
        self.empty_trash()
    }

    /// The runs the next merge of `lane` takes (a contiguous range of the live runs), if one is
    /// due: the lowest of the lane's levels with `FANOUT` runs.
    fn next_merge(&self, lane: usize) -> Result<Option<std::ops::Range<usize>>, StoreError> {
        let runs = self.snapshot()?;
        let mut start = 0;
        while start < runs.len() {
            let level = runs[start].index.level;
            let end = start + runs[start..].iter().take_while(|r| r.index.level == level).count();
            if end - start >= FANOUT && lane_of(level) == lane {
                return Ok(Some(start..end.min(start + MERGE_INPUTS_MAX)));
            }
            start = end;
        }
        Ok(None)
    }

    fn merge_loop(self: Arc<Self>, lane: usize) {
        // Merges are background work: reads and the writer come first on a busy machine (a merge
        // of large runs takes seconds to minutes and would otherwise show in every read's p99).
        if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), MERGE_NICE) {
            tracing::debug!(error = %e, "cannot lower the merge thread's priority");
        }
        loop {
            {
                let mut wake = self.wake.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                while !wake[lane] && !self.stop.load(Ordering::Acquire) {
                    wake = self.woken.wait(wake).unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                if self.stop.load(Ordering::Acquire) {
                    return;
                }
                wake[lane] = false;
            }
            let result = self.empty_trash().and_then(|()| {
                while let Some(range) = self.next_merge(lane)? {
                    if self.stop.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    self.merge(range)?;
                    self.empty_trash()?;
                }
                Ok(())
            });
            if let Err(e) = result {
                tracing::error!(error = %e, "merging derived runs failed");
                *self.merge_failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
                return;
            }
        }
    }

    /// Merges the runs at `range` into one run of the next level.
    // Longer than ~70 lines: one merge from inputs to an installed output: read cursors, fold, write
    // blocks in bounded batches, install, delete; each step depends on the state of the one before.
    fn merge(&self, range: std::ops::Range<usize>) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let inputs: Vec<Arc<Run>> = self.snapshot()?[range.clone()].to_vec();
        let bottom = range.start == 0;
        let level = inputs[0].index.level.saturating_add(1);
        let id = {
            let mut manifest = self.manifest.lock().map_err(poisoned)?;
            manifest.next_run += 1;
            manifest.next_run - 1
        };
        let mut merge = Merge::new(&inputs, b"", Fill::Bypass)?;
        let mut writer = RunWriter::new(level);
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        let tree = self.tree.clone();
        let mut sink = |no: u32, block: Vec<u8>| {
            batch.insert(&block_key(id, no)[..], block);
            pending += 1;
            if pending == MERGE_BLOCKS_PER_BATCH {
                tree.apply_batch(std::mem::take(&mut batch)).map_err(unknown)?;
                pending = 0;
            }
            Ok(())
        };
        while let Some((key, merged)) = merge.next(None)? {
            if self.stop.load(Ordering::Acquire) {
                // The blocks written so far are no run's: the next open deletes them.
                return Ok(());
            }
            match merged {
                Merged::Value(value) => writer.push(&key, Raw::Value(&value), &mut sink)?,
                Merged::Deleted if bottom => {}
                Merged::Deleted => writer.push(&key, Raw::Deleted, &mut sink)?,
                Merged::Added(None) => {}
                // Over nothing at the bottom: the sum is the value.
                Merged::Added(Some(sum)) if bottom => writer.push(&key, Raw::Value(&sum), &mut sink)?,
                Merged::Added(Some(sum)) => writer.push(&key, Raw::Added(&sum), &mut sink)?,
            }
        }
        let index = writer.finish(&mut sink)?;
        self.tree.apply_batch(batch).map_err(unknown)?;
        let mut manifest = self.manifest.lock().map_err(poisoned)?;
        let current = self.snapshot()?;
        // Checkpoints only append, and the other lane replaces runs of other levels in place: the
        // inputs are still side by side, maybe at another position.
        let Some(start) = current.iter().position(|r| r.id == inputs[0].id) else {
            // A clear dropped the inputs while they were merged: the output is no run's.
            drop(manifest);
            self.trash.lock().map_err(poisoned)?.push(id);
            return Ok(());
        };
        let range = start..start + inputs.len();
        assert!(
            current[range.clone()].iter().zip(&inputs).all(|(a, b)| a.id == b.id),
            "the merged runs stay side by side while merged"
        );
        let mut next = manifest.clone();
        let mut runs: Vec<Arc<Run>> = current[..range.start].to_vec();
        let merged = index.map(|index| self.new_run(id, index));
        let mut batch = sled::Batch::default();
        if let Some(run) = &merged {
            batch.insert(&index_key(id)[..], postcard::to_stdvec(&run.index).expect("an index encodes"));
            runs.push(run.clone());
        }
        runs.extend_from_slice(&current[range.end..]);
        next.runs = runs.iter().map(|r| r.id).collect();
        batch.insert(MANIFEST_KEY, postcard::to_stdvec(&next).expect("a manifest encodes"));
        self.tree.apply_batch(batch).map_err(unknown)?;
        self.db.flush().map_err(unknown)?;
        *manifest = next;
        self.publish(runs, &inputs, &mut || {})?;
        drop(manifest);
        let live = self.snapshot()?;
        tracing::debug!(
            inputs = inputs.len(),
            level,
            runs = live.len(),
            live_bytes = live.iter().map(|r| r.index.bytes).sum::<u64>(),
            live_entries = live.iter().map(|r| r.index.entries).sum::<u64>(),
            entries = merged.as_ref().map_or(0, |r| r.index.entries),
            bytes = merged.as_ref().map_or(0, |r| r.index.bytes),
            ms = started.elapsed().as_millis() as u64,
            "derived runs merged"
        );
        Ok(())
    }

    /// Deletes the blocks and index of runs no reader holds any more.
    fn empty_trash(&self) -> Result<(), StoreError> {
        let ids = std::mem::take(&mut *self.trash.lock().map_err(poisoned)?);
        for id in ids {
            self.delete_run(id)?;
        }
        Ok(())
    }

    /// Blocks first, index last: a run whose index is gone has no blocks left.
    fn delete_run(&self, id: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in self.tree.range(block_key(id, 0)..block_key(id + 1, 0)).keys() {
            batch.remove(item.map_err(sled_error)?);
            n += 1;
            if n % MERGE_BLOCKS_PER_BATCH == 0 {
                self.tree.apply_batch(std::mem::take(&mut batch)).map_err(unknown)?;
            }
        }
        batch.remove(&index_key(id)[..]);
        self.tree.apply_batch(batch).map_err(unknown)
    }

    /// Deletes what a crash left behind: runs (blocks or index) the manifest does not list.
    fn collect_orphans(&self) -> Result<(), StoreError> {
        let live: std::collections::HashSet<u64> =
            self.manifest.lock().map_err(poisoned)?.runs.iter().copied().collect();
        let mut orphans = std::collections::BTreeSet::new();
        for family in [b'B', b'F'] {
            let mut from = vec![family];
            while let Some(item) = self.tree.range(from.clone()..vec![family + 1]).next() {
                let (key, _) = item.map_err(sled_error)?;
                let id =
                    u64::from_be_bytes(key.get(1..9).ok_or_else(|| corrupt("a short key"))?.try_into().expect("8"));
                if !live.contains(&id) {
                    orphans.insert(id);
                }
                let Some(after) = id.checked_add(1) else { break };
                from = [&[family][..], &after.to_be_bytes()].concat();
            }
        }
        for id in orphans {
            tracing::info!(run = id, "deleting a derived run no manifest lists (left by a crash)");
            self.delete_run(id)?;
        }
        Ok(())
    }
}

/// Sorts a batch by key, the operations on one key combined in the order written.
fn sorted_unique(mut ops: Vec<(Vec<u8>, Op)>) -> Result<Vec<(Vec<u8>, Op)>, StoreError> {
    // Stable: equal keys keep their order, so the last one written is last.
    ops.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(Vec<u8>, Op)> = Vec::with_capacity(ops.len());
    for (key, op) in ops {
        match out.last_mut() {
            Some(last) if last.0 == key => {
                let older = std::mem::replace(&mut last.1, Op::Delete);
                last.1 = older.then(op)?;
            }
            _ => out.push((key, op)),
        }
    }
    Ok(out)
}

impl Store for RunStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let runs = self.shared.snapshot()?;
        let hash = key_hash(key);
        let mut pending = Pending::default();
        for run in runs.iter().rev() {
            if let Some(value) = run.get(key, hash, &mut pending)? {
                return Ok(value);
            }
        }
        pending.finish(None)
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.scan_with(prefix, after, limit, None)
    }

    fn scan_cells(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        cells: super::CellsOf<'_>,
    ) -> Result<Vec<Entry>, StoreError> {
        self.scan_with(prefix, after, limit, Some(cells))
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.commit_and(batch, &mut || {})
    }

    fn commit_and(&self, batch: Batch, visible: &mut dyn FnMut()) -> Result<(), StoreError> {
        if let Some(e) = self.shared.merge_failed.lock().map_err(poisoned)?.clone() {
            return Err(StoreError::Unavailable(format!("a merge of derived runs failed: {e}")));
        }
        self.shared.add_run(sorted_unique(batch.ops)?, visible)
    }

    fn clear(&self) -> Result<(), StoreError> {
        self.shared.clear()
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.shared.db.size_on_disk().map_err(sled_error)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Counters;
    use super::*;

    fn put(k: &[u8], v: &[u8]) -> (Vec<u8>, Op) {
        (k.to_vec(), Op::Put(v.to_vec()))
    }

    #[test]
    fn the_store_contract_holds() {
        let dir = tempfile::tempdir().unwrap();
        super::super::contract::check(|| Box::new(RunStore::open(dir.path(), 1 << 20).unwrap()));
    }

    #[test]
    fn merges_keep_the_newest_value_and_drop_deletions_at_the_bottom() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path(), 1 << 20).unwrap();
        // Enough checkpoints for two levels of merges, each rewriting every key and deleting some.
        let rounds = (FANOUT * FANOUT + 1) as u32;
        for round in 0..rounds {
            let mut ops = Vec::new();
            for k in 0..500u32 {
                let key = format!("k{k:05}").into_bytes();
                if k % 7 == round % 7 {
                    ops.push((key, Op::Delete));
                } else {
                    ops.push(put(&key, format!("{round}-{k}").as_bytes()));
                }
            }
            store.commit(Batch { ops }).unwrap();
        }
        store.settle().unwrap();
        assert!(store.levels().len() < FANOUT * 2, "merged: {:?}", store.levels());
        let last = rounds - 1;
        for k in 0..500u32 {
            let expected = (k % 7 != last % 7).then(|| format!("{last}-{k}").into_bytes());
            assert_eq!(store.get(format!("k{k:05}").as_bytes()).unwrap(), expected, "k{k}");
        }
        let all = store.scan(b"k", None, 10_000).unwrap();
        assert_eq!(all.len(), (0..500u32).filter(|k| k % 7 != last % 7).count());
        drop(store);
        // Reopened: the same answers, and no run left behind that the manifest does not list.
        let store = RunStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.scan(b"k", None, 10_000).unwrap(), all);
        let listed = store.levels().len();
        let indexes = store.shared.tree.scan_prefix(b"F").count();
        assert_eq!(indexes, listed, "one index per live run");
    }

    #[test]
    fn additions_fold_across_runs_before_and_after_merges() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path(), 1 << 20).unwrap();
        let mut model: std::collections::BTreeMap<Vec<u8>, Counters> = Default::default();
        let rounds = (FANOUT * FANOUT + 3) as u32;
        let check = |store: &RunStore, model: &std::collections::BTreeMap<Vec<u8>, Counters>| {
            let expected: Vec<Entry> =
                model.iter().filter(|(_, c)| !c.is_zero()).map(|(k, c)| (k.clone(), c.encode())).collect();
            assert_eq!(store.scan(b"s", None, 10_000).unwrap(), expected);
            for (key, sum) in model {
                assert_eq!(store.get(key).unwrap(), (!sum.is_zero()).then(|| sum.encode()));
            }
        };
        for round in 0..rounds {
            let mut ops = Vec::new();
            for k in 0..300u32 {
                // Every key in some rounds only; deltas that cancel out over the rounds on some.
                if (k + round) % 3 == 0 {
                    continue;
                }
                let sign = if k % 11 == 0 && round % 2 == 1 { -1 } else { 1 };
                let prior = if k % 11 == 0 && round % 2 == 1 { i128::from(round - 1) } else { i128::from(round) };
                let delta: Counters = [(k % 4, sign * prior), (100 + round % 3, i128::from(k))].into_iter().collect();
                let key = format!("s{k:05}").into_bytes();
                model.entry(key.clone()).or_default().add(&delta).unwrap();
                ops.push((key, Op::Add(delta)));
            }
            store.commit(Batch { ops }).unwrap();
            if round % 5 == 4 {
                check(&store, &model);
            }
        }
        store.settle().unwrap();
        check(&store, &model);
        drop(store);
        let store = RunStore::open(dir.path(), 1 << 20).unwrap();
        check(&store, &model);
    }

    #[test]
    fn a_directory_of_the_scattered_layout_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = super::super::sled_store::open_db(dir.path(), 1 << 20).unwrap();
            db.insert(b"Aold", b"row").unwrap();
            db.flush().unwrap();
        }
        let store = RunStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.get(b"Aold").unwrap(), None);
        assert!(store.shared.db.is_empty());
    }

    #[test]
    fn runs_of_another_format_are_cleared_at_open_and_the_store_works_after() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RunStore::open(dir.path(), 1 << 20).unwrap();
            store.commit(Batch { ops: vec![put(b"a", b"1"), put(b"b", b"2")] }).unwrap();
            let old = Manifest { format: FORMAT - 1, ..store.shared.manifest.lock().unwrap().clone() };
            store.shared.tree.insert(MANIFEST_KEY, postcard::to_stdvec(&old).unwrap()).unwrap();
            store.shared.db.flush().unwrap();
        }
        let store = RunStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.get(b"a").unwrap(), None, "the old runs are gone");
        store.commit(Batch { ops: vec![put(b"c", b"3")] }).unwrap();
        drop(store);
        let store = RunStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.get(b"c").unwrap(), Some(b"3".to_vec()));
        assert_eq!(store.shared.manifest.lock().unwrap().format, FORMAT);
    }

    #[test]
    fn a_block_claiming_more_than_the_limit_is_corrupt_not_an_allocation() {
        let mut stored = lz4_flex::block::compress_prepend_size(b"entries");
        assert_eq!(decompress(&stored).unwrap(), b"entries");
        stored[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decompress(&stored).unwrap_err().contains("claims"));
        assert!(decompress(&[1, 0]).is_err());
    }

    #[test]
    fn blooms_have_no_false_negatives_and_few_false_positives() {
        let hashes: Vec<u64> = (0..10_000u32).map(|i| key_hash(&i.to_be_bytes())).collect();
        let bloom = Bloom::build(&hashes);
        assert!(hashes.iter().all(|h| bloom.may_contain(*h)));
        let false_positives = (10_000..110_000u32).filter(|i| bloom.may_contain(key_hash(&i.to_be_bytes()))).count();
        assert!(false_positives < 3_000, "{false_positives} of 100,000");
    }
}
