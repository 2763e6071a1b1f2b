//! The on-disk audit log: append, group commit, recovery, checkpoints, proofs, verification.

use std::fs::{self, File, OpenOptions as FsOpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::record::{self, FILE_MAGIC, Fault, HEADER_LEN, MAX_PAYLOAD};
use super::store::{ItemFile, io_err};
use super::{AuditEntry, AuditError};
use crate::merkle::{self, Frontier, HASH_LEN, Hash, SubtreeSource};
use crate::note::{Checkpoint, CheckpointMode, NoteSigner, NoteVerifier};

const CONFIG: &str = "config.json";
const ENTRIES: &str = "entries.dat";
const OFFSETS: &str = "offsets.dat";
const TREE_DIR: &str = "tree";
const STATE: &str = "state";
const CHECKPOINT: &str = "checkpoint";
/// Format name written in `config.json`.
pub const FORMAT: &str = "atom-audit-log/1";

/// Derived files (offsets, tree levels) are fsynced and the watermark advanced at least this
/// often, which bounds the work of recovery after a crash.
const DERIVED_SYNC_EVERY: u64 = 1 << 16;
/// Data buffer is written (not synced) beyond this many bytes.
const DATA_FLUSH_AT: usize = 1 << 20;

/// When appends become durable (and may be acknowledged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fdatasync after every append.
    EveryAppend,
    /// Group commit: fdatasync once `max_entries` appends are pending or the oldest pending
    /// append is `max_delay_ms` old (checked on append and on [`AuditLog::tick`]).
    GroupCommit {
        /// Pending appends that force a sync.
        max_entries: u64,
        /// Age in milliseconds of the oldest pending append that forces a sync.
        max_delay_ms: u64,
    },
    /// Only explicit [`AuditLog::sync`] makes appends durable.
    Manual,
}

/// Contents of `config.json`: the log's identity and the keys that verify its checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Always `"atom-audit-log/1"`.
    pub format: String,
    /// Checkpoint origin line (and signer key name).
    pub origin: String,
    /// `hybrid` (Ed25519 + ML-DSA-44, both required) or `classical` (Ed25519).
    pub mode: String,
    /// Verifier keys (vkey strings) of the log's checkpoint signers.
    #[serde(default)]
    pub vkeys: Vec<String>,
}

impl LogConfig {
    /// A configuration for `origin` in `mode` with the given verifiers.
    pub fn new(origin: &str, mode: CheckpointMode, verifiers: &[NoteVerifier]) -> Self {
        Self {
            format: FORMAT.into(),
            origin: origin.into(),
            mode: mode.as_str().into(),
            vkeys: verifiers.iter().map(NoteVerifier::to_vkey).collect(),
        }
    }

    /// Parsed mode.
    pub fn checkpoint_mode(&self) -> Result<CheckpointMode, AuditError> {
        Ok(CheckpointMode::parse(&self.mode)?)
    }

    /// Parsed verifier keys.
    pub fn verifiers(&self) -> Result<Vec<NoteVerifier>, AuditError> {
        self.vkeys
            .iter()
            .map(|v| NoteVerifier::from_vkey(v).map_err(AuditError::from))
            .collect()
    }
}

/// How to open a log.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Sync policy for appends.
    pub sync: SyncPolicy,
    /// Trusted checkpoint verifiers; `None` = the vkeys in `config.json`.
    pub verifiers: Option<Vec<NoteVerifier>>,
    /// Checkpoint mode; `None` = the mode in `config.json`.
    pub mode: Option<CheckpointMode>,
    /// Tree levels with at most this many hashes are kept in memory (memory about
    /// 64 x this many bytes) so proofs read only the lower levels from disk.
    pub proof_cache: u64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            sync: SyncPolicy::EveryAppend,
            verifiers: None,
            mode: None,
            proof_cache: DEFAULT_PROOF_CACHE,
        }
    }
}

/// What [`AuditLog::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of an incomplete final record dropped (a torn, never acknowledged append).
    pub dropped_tail_bytes: u64,
    /// Records re-read from `entries.dat` to rebuild the derived files.
    pub reindexed: u64,
    /// The derived files were unusable and rebuilt from record 0.
    pub rebuilt_from_scratch: bool,
    /// Size of the last signed checkpoint, checked against the rebuilt tree.
    pub checkpoint_size: Option<u64>,
}

/// Result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Index of the new record.
    pub index: u64,
    /// Records durable now: the append may be acknowledged iff `index < durable_size`.
    pub durable_size: u64,
}

/// Result of a full verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Complete records.
    pub records: u64,
    /// Root over all of them.
    pub root: Hash,
    /// The verified checkpoint, if the log has one.
    pub checkpoint: Option<Checkpoint>,
    /// Offset of an incomplete final record beyond everything the log committed to (a torn,
    /// unacknowledged append that the next open drops).
    pub torn_tail_offset: Option<u64>,
}

/// The audit log.
///
/// ```
/// use atom_policy::audit::{AuditLog, LogConfig, OpenOptions, SyncPolicy};
/// use atom_policy::note::{CheckpointMode, NoteSigner};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("log");
/// let key = NoteSigner::ed25519_from_seed("example.com/audit", [9u8; 32]).unwrap();
/// AuditLog::create(&path, &LogConfig::new("example.com/audit", CheckpointMode::Classical, &[key.verifier()])).unwrap();
/// let (mut log, _) = AuditLog::open(&path, OpenOptions::default()).unwrap();
/// let a = log.append(b"{\"x\":1}", 0).unwrap();
/// assert_eq!(a.durable_size, 1);
/// log.checkpoint(&[&key], 1_700_000_000).unwrap();
/// let proof = log.inclusion_proof(0, 1).unwrap();
/// assert!(proof.is_empty());
/// ```
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    config: LogConfig,
    verifiers: Vec<NoteVerifier>,
    mode: CheckpointMode,
    entries: File,
    entries_path: PathBuf,
    data_stored: u64,
    data_buf: Vec<u8>,
    offsets: ItemFile,
    levels: Vec<ItemFile>,
    cache: TopCache,
    frontier: Frontier,
    durable: u64,
    derived_synced: u64,
    policy: SyncPolicy,
    pending_since: Option<u64>,
    checkpoint: Option<Checkpoint>,
    completed: Vec<(u32, Hash)>,
}

fn level_path(dir: &Path, k: usize) -> PathBuf {
    dir.join(TREE_DIR).join(format!("level-{k:02}.dat"))
}

fn read_config(dir: &Path) -> Result<LogConfig, AuditError> {
    let p = dir.join(CONFIG);
    let text = fs::read_to_string(&p).map_err(|e| AuditError::NotALog {
        path: dir.to_path_buf(),
        reason: format!("cannot read {CONFIG}: {e}"),
    })?;
    let c: LogConfig = serde_json::from_str(&text).map_err(|e| AuditError::NotALog {
        path: dir.to_path_buf(),
        reason: format!("{CONFIG}: {e}"),
    })?;
    if c.format != FORMAT {
        return Err(AuditError::NotALog {
            path: dir.to_path_buf(),
            reason: format!("format {:?} is not {FORMAT}", c.format),
        });
    }
    Ok(c)
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Write `bytes` to `dir/name` atomically: temp file, fsync, rename, fsync directory.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), AuditError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(bytes).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("fsync", &tmp))?;
    fs::rename(&tmp, &dst).map_err(io_err("rename", &dst))?;
    sync_dir(dir)
}

/// The derived-files watermark: `u64 LE size || crc32c(size)`. `None` if missing or damaged.
fn read_state(dir: &Path) -> Option<u64> {
    let b = fs::read(dir.join(STATE)).ok()?;
    let b: [u8; 12] = b.try_into().ok()?;
    let (n, c) = b.split_at(8);
    (record::crc32c(n).to_le_bytes() == c).then(|| {
        let mut a = [0u8; 8];
        a.copy_from_slice(n);
        u64::from_le_bytes(a)
    })
}

fn write_state(dir: &Path, size: u64) -> Result<(), AuditError> {
    let mut b = size.to_le_bytes().to_vec();
    b.extend_from_slice(&record::crc32c(&size.to_le_bytes()).to_le_bytes());
    write_atomic(dir, STATE, &b)
}

/// Read and verify the stored checkpoint, if any.
fn load_checkpoint(
    dir: &Path,
    config: &LogConfig,
    verifiers: &[NoteVerifier],
    mode: CheckpointMode,
) -> Result<Option<Checkpoint>, AuditError> {
    let p = dir.join(CHECKPOINT);
    let text = match fs::read(&p) {
        Ok(b) => String::from_utf8(b).map_err(|_| AuditError::NotALog {
            path: dir.to_path_buf(),
            reason: "checkpoint is not UTF-8".into(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &p)(e)),
    };
    let cp = Checkpoint::verify(&text, verifiers, mode)?;
    if cp.origin != config.origin {
        return Err(AuditError::OriginMismatch {
            expected: config.origin.clone(),
            got: cp.origin,
        });
    }
    Ok(Some(cp))
}

/// Default [`OpenOptions::proof_cache`]: the cache stays under ~4 MiB whatever the log size.
pub const DEFAULT_PROOF_CACHE: u64 = 1 << 16;

/// The upper tree levels kept in memory, so a proof reads only the lower levels from disk.
#[derive(Debug, Default)]
struct TopCache {
    limit: u64,
    min_level: usize,
    levels: Vec<Vec<Hash>>,
}

impl TopCache {
    fn build(levels: &[ItemFile], size: u64, limit: u64) -> Result<Self, AuditError> {
        let limit = limit.max(1);
        let mut min_level = 0usize;
        while (size >> min_level) > limit {
            min_level += 1;
        }
        let mut cache = Self {
            limit,
            min_level,
            levels: Vec::new(),
        };
        for (k, lvl) in levels.iter().enumerate().skip(min_level) {
            let count = (size >> k) as usize;
            let mut raw = vec![0u8; count * HASH_LEN];
            lvl.read_many(0, &mut raw)?;
            cache.levels.push(
                raw.chunks_exact(HASH_LEN)
                    .map(|c| {
                        let mut h = [0u8; HASH_LEN];
                        h.copy_from_slice(c);
                        h
                    })
                    .collect(),
            );
        }
        Ok(cache)
    }

    fn get(&self, k: usize, index: u64) -> Option<Hash> {
        let j = k.checked_sub(self.min_level)?;
        self.levels
            .get(j)?
            .get(usize::try_from(index).ok()?)
            .copied()
    }

    fn push(&mut self, k: usize, h: &Hash) {
        let Some(j) = k.checked_sub(self.min_level) else {
            return;
        };
        while self.levels.len() <= j {
            self.levels.push(Vec::new());
        }
        self.levels[j].push(*h);
        if self.levels[0].len() as u64 > 2 * self.limit {
            self.levels.remove(0);
            self.min_level += 1;
        }
    }
}

/// Subtree roots from memory (frontier, cached upper levels) or the per-level hash files.
struct TreeView<'a> {
    levels: &'a [ItemFile],
    cache: &'a TopCache,
    frontier: &'a Frontier,
    size: u64,
}

impl TreeView<'_> {
    /// Perfect subtree `index` of level `k`.
    fn node(&self, k: usize, index: u64) -> Result<Hash, AuditError> {
        let n = self.frontier.size();
        if (n >> k) & 1 == 1 && index == (n >> k) - 1 {
            // One of the frontier's pieces (largest first: count the set bits above k).
            let above = (n >> k >> 1).count_ones() as usize;
            if let Some(h) = self.frontier.pieces().get(above) {
                return Ok(*h);
            }
        }
        if let Some(h) = self.cache.get(k, index) {
            return Ok(h);
        }
        let lvl = self.levels.get(k).ok_or(merkle::ProofError::BadRange {
            start: index << k,
            end: (index + 1) << k,
            size: self.size,
        })?;
        let mut h = [0u8; HASH_LEN];
        lvl.get(index, &mut h)?;
        Ok(h)
    }
}

impl SubtreeSource for TreeView<'_> {
    type Error = AuditError;
    fn subtree_root(&mut self, start: u64, end: u64) -> Result<Hash, AuditError> {
        if start >= end || end > self.size {
            return Err(merkle::ProofError::BadRange {
                start,
                end,
                size: self.size,
            }
            .into());
        }
        let w = end - start;
        if w.is_power_of_two() && start.is_multiple_of(w) {
            let k = w.trailing_zeros() as usize;
            return self.node(k, start >> k);
        }
        let k = merkle::split_point(w);
        let l = self.subtree_root(start, start + k)?;
        let r = self.subtree_root(start + k, end)?;
        Ok(merkle::node_hash(&l, &r))
    }
}

/// One parsed record while scanning `entries.dat`.
enum Scan {
    /// A complete, checked record.
    Record(Vec<u8>),
    /// Clean end of file.
    End,
    /// An incomplete final record (or zero fill) starting here.
    Torn,
}

/// Read the record at the reader's position (`pos`), `file_len` bytes in the file.
fn scan_record<R: Read>(
    r: &mut R,
    pos: u64,
    file_len: u64,
    index: u64,
) -> Result<Scan, AuditError> {
    let rest = file_len - pos;
    if rest == 0 {
        return Ok(Scan::End);
    }
    if rest < HEADER_LEN as u64 {
        return Ok(Scan::Torn);
    }
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h).map_err(|e| AuditError::Io {
        op: "read",
        path: PathBuf::from(ENTRIES),
        source: e,
    })?;
    let hdr = match record::parse_header(&h) {
        Ok(hdr) => hdr,
        Err(_) if h == [0u8; HEADER_LEN] => {
            // Zero fill after a power loss is a torn tail only if nothing but zeros follows.
            let mut rest_buf = Vec::new();
            r.read_to_end(&mut rest_buf).map_err(|e| AuditError::Io {
                op: "read",
                path: PathBuf::from(ENTRIES),
                source: e,
            })?;
            if rest_buf.iter().all(|b| *b == 0) {
                return Ok(Scan::Torn);
            }
            return Err(AuditError::CorruptRecord {
                index,
                offset: pos,
                fault: Fault::BadLength(0),
            });
        }
        Err(fault) => {
            return Err(AuditError::CorruptRecord {
                index,
                offset: pos,
                fault,
            });
        }
    };
    if HEADER_LEN as u64 + u64::from(hdr.len) > rest {
        return Ok(Scan::Torn);
    }
    let mut payload = vec![0u8; hdr.len as usize];
    r.read_exact(&mut payload).map_err(|e| AuditError::Io {
        op: "read",
        path: PathBuf::from(ENTRIES),
        source: e,
    })?;
    if record::crc32c(&payload) != hdr.payload_crc {
        return Err(AuditError::CorruptRecord {
            index,
            offset: pos,
            fault: Fault::PayloadChecksum,
        });
    }
    Ok(Scan::Record(payload))
}

impl AuditLog {
    /// Create an empty log in `dir` (created if missing; must not already hold a log).
    pub fn create(dir: &Path, config: &LogConfig) -> Result<(), AuditError> {
        config.checkpoint_mode()?;
        config.verifiers()?;
        if config.origin.is_empty() || config.origin.contains('\n') {
            return Err(AuditError::Config(
                "origin must be one non-empty line".into(),
            ));
        }
        fs::create_dir_all(dir.join(TREE_DIR)).map_err(io_err("create directory", dir))?;
        if dir.join(CONFIG).exists() || dir.join(ENTRIES).exists() {
            return Err(AuditError::AlreadyExists {
                path: dir.to_path_buf(),
            });
        }
        let ep = dir.join(ENTRIES);
        let mut f = File::create(&ep).map_err(io_err("create", &ep))?;
        f.write_all(FILE_MAGIC).map_err(io_err("write", &ep))?;
        f.sync_all().map_err(io_err("fsync", &ep))?;
        write_state(dir, 0)?;
        let json =
            serde_json::to_vec_pretty(config).map_err(|e| AuditError::Config(e.to_string()))?;
        write_atomic(dir, CONFIG, &json)?;
        sync_dir(&dir.join(TREE_DIR))
    }

    /// Open a log: drop a torn final record, rebuild the derived files past the last synced
    /// watermark (or from scratch if they are unusable), and check the tree against the last
    /// signed checkpoint. A damaged record is reported, never dropped.
    pub fn open(dir: &Path, opts: OpenOptions) -> Result<(Self, Recovery), AuditError> {
        let config = read_config(dir)?;
        let verifiers = match opts.verifiers {
            Some(v) => v,
            None => config.verifiers()?,
        };
        let mode = match opts.mode {
            Some(m) => m,
            None => config.checkpoint_mode()?,
        };
        let entries_path = dir.join(ENTRIES);
        let entries = FsOpenOptions::new()
            .read(true)
            .write(true)
            .open(&entries_path)
            .map_err(io_err("open", &entries_path))?;
        let mut magic = [0u8; 16];
        entries
            .read_exact_at(&mut magic, 0)
            .map_err(|_| AuditError::NotALog {
                path: dir.to_path_buf(),
                reason: "entries.dat has no header".into(),
            })?;
        if &magic != FILE_MAGIC {
            return Err(AuditError::NotALog {
                path: dir.to_path_buf(),
                reason: "entries.dat header is not ATOM-AUDIT-LOG v1".into(),
            });
        }
        let mut recovery = Recovery::default();
        let watermark = read_state(dir);
        let mut log = match watermark
            .map(|w| Self::open_derived(dir, &config, &entries, w, opts.proof_cache))
        {
            Some(Ok(parts)) => parts,
            Some(Err(e @ AuditError::Truncated { .. })) => return Err(e),
            _ => {
                recovery.rebuilt_from_scratch = true;
                Self::open_derived(dir, &config, &entries, 0, opts.proof_cache)?
            }
        };
        log.verifiers = verifiers;
        log.mode = mode;
        log.policy = opts.sync;
        log.entries = entries;
        log.entries_path = entries_path;
        log.recover_tail(&mut recovery)?;
        // Everything now in entries.dat is made durable before anything is acknowledged.
        log.entries
            .sync_data()
            .map_err(io_err("fsync", &log.entries_path))?;
        log.durable = log.size();
        if recovery.reindexed > 0 || recovery.rebuilt_from_scratch {
            log.sync_derived()?;
        }
        let cp = if log.verifiers.is_empty() && !dir.join(CHECKPOINT).exists() {
            None
        } else {
            load_checkpoint(dir, &log.config, &log.verifiers, log.mode)?
        };
        if let Some(cp) = &cp {
            log.check_against(cp)?;
            recovery.checkpoint_size = Some(cp.size);
        }
        log.checkpoint = cp;
        Ok((log, recovery))
    }

    /// Open offsets and tree levels trusted up to `w` records.
    fn open_derived(
        dir: &Path,
        config: &LogConfig,
        entries: &File,
        w: u64,
        proof_cache: u64,
    ) -> Result<Self, AuditError> {
        let offsets = ItemFile::open(&dir.join(OFFSETS), 8, w)?;
        let nlevels = (64 - w.leading_zeros()) as usize;
        let mut levels = Vec::with_capacity(nlevels);
        for k in 0..nlevels {
            levels.push(ItemFile::open(&level_path(dir, k), HASH_LEN, w >> k)?);
        }
        let mut pieces = Vec::new();
        for k in (0..nlevels).rev() {
            if (w >> k) & 1 == 1 {
                let mut h = [0u8; HASH_LEN];
                levels[k].get((w >> k) - 1, &mut h)?;
                pieces.push(h);
            }
        }
        let cache = TopCache::build(&levels, w, proof_cache)?;
        let frontier = Frontier::from_pieces(w, pieces)
            .ok_or_else(|| AuditError::Config("frontier pieces do not match size".into()))?;
        let entries_path = dir.join(ENTRIES);
        let file_len = entries
            .metadata()
            .map_err(io_err("stat", &entries_path))?
            .len();
        let data_stored = if w == 0 {
            FILE_MAGIC.len() as u64
        } else {
            let mut b = [0u8; 8];
            offsets.get(w - 1, &mut b)?;
            u64::from_le_bytes(b)
        };
        if data_stored > file_len {
            // Records the synced index vouches for are gone: find the first one missing.
            let (mut lo, mut hi) = (0u64, w - 1);
            while lo < hi {
                let mid = (lo + hi) / 2;
                let mut b = [0u8; 8];
                offsets.get(mid, &mut b)?;
                if u64::from_le_bytes(b) > file_len {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            return Err(AuditError::Truncated {
                index: lo,
                expected: w,
                found: lo,
            });
        }
        let entries = entries.try_clone().map_err(io_err("open", &entries_path))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config: config.clone(),
            verifiers: Vec::new(),
            mode: CheckpointMode::Classical,
            entries,
            entries_path,
            data_stored,
            data_buf: Vec::new(),
            offsets,
            levels,
            cache,
            frontier,
            durable: w,
            derived_synced: w,
            policy: SyncPolicy::EveryAppend,
            pending_since: None,
            checkpoint: None,
            completed: Vec::with_capacity(64),
        })
    }

    /// Re-read records past the derived watermark; drop an incomplete final record.
    fn recover_tail(&mut self, recovery: &mut Recovery) -> Result<(), AuditError> {
        let file_len = self
            .entries
            .metadata()
            .map_err(io_err("stat", &self.entries_path))?
            .len();
        let mut f = self
            .entries
            .try_clone()
            .map_err(io_err("open", &self.entries_path))?;
        f.seek(SeekFrom::Start(self.data_stored))
            .map_err(io_err("seek", &self.entries_path))?;
        let mut r = BufReader::with_capacity(1 << 16, f);
        let mut pos = self.data_stored;
        loop {
            let index = self.size();
            match scan_record(&mut r, pos, file_len, index)? {
                Scan::End => break,
                Scan::Torn => {
                    recovery.dropped_tail_bytes = file_len - pos;
                    self.entries
                        .set_len(pos)
                        .map_err(io_err("truncate", &self.entries_path))?;
                    break;
                }
                Scan::Record(payload) => {
                    pos += (HEADER_LEN + payload.len()) as u64;
                    self.index_record(&payload, pos)?;
                    recovery.reindexed += 1;
                }
            }
        }
        self.data_stored = pos;
        Ok(())
    }

    fn ensure_level(&mut self, k: usize) -> Result<(), AuditError> {
        while self.levels.len() <= k {
            let n = self.levels.len();
            self.levels
                .push(ItemFile::open(&level_path(&self.dir, n), HASH_LEN, 0)?);
        }
        Ok(())
    }

    /// Add the derived data of a record ending at `end`: offset, leaf and completed nodes.
    fn index_record(&mut self, payload: &[u8], end: u64) -> Result<(), AuditError> {
        self.offsets.push(&end.to_le_bytes())?;
        let leaf = merkle::leaf_hash(payload);
        self.ensure_level(0)?;
        self.levels[0].push(&leaf)?;
        self.cache.push(0, &leaf);
        let mut done = std::mem::take(&mut self.completed);
        done.clear();
        self.frontier
            .push(leaf, |level, _, h| done.push((level, *h)));
        for (level, h) in &done {
            self.ensure_level(*level as usize)?;
            self.levels[*level as usize].push(h)?;
            self.cache.push(*level as usize, h);
        }
        self.completed = done;
        Ok(())
    }

    /// Log origin.
    pub fn origin(&self) -> &str {
        &self.config.origin
    }

    /// The log configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Number of records (durable or not).
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Number of durable records (those that may be acknowledged).
    pub fn durable_size(&self) -> u64 {
        self.durable
    }

    /// Root hash over all records.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The last signed checkpoint (verified at open or written by [`AuditLog::checkpoint`]).
    pub fn last_checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    /// Append a validated entry as canonical JSON.
    pub fn append_entry(
        &mut self,
        entry: &AuditEntry,
        now_ms: u64,
    ) -> Result<Appended, AuditError> {
        let json = entry.to_canonical_json()?;
        self.append(json.as_bytes(), now_ms)
    }

    /// Append raw record bytes (callers store canonical [`AuditEntry`] JSON; see
    /// [`AuditLog::append_entry`]). `now_ms` is the injected clock for group commit.
    pub fn append(&mut self, payload: &[u8], now_ms: u64) -> Result<Appended, AuditError> {
        if payload.is_empty() || payload.len() > MAX_PAYLOAD as usize {
            return Err(AuditError::EntrySize { len: payload.len() });
        }
        let index = self.size();
        record::encode(payload, &mut self.data_buf);
        let end = self.data_stored + self.data_buf.len() as u64;
        self.index_record(payload, end)?;
        if self.data_buf.len() >= DATA_FLUSH_AT {
            self.flush_data()?;
        }
        match self.policy {
            SyncPolicy::EveryAppend => {
                self.sync()?;
            }
            SyncPolicy::GroupCommit {
                max_entries,
                max_delay_ms,
            } => {
                let since = *self.pending_since.get_or_insert(now_ms);
                if self.size() - self.durable >= max_entries
                    || now_ms.saturating_sub(since) >= max_delay_ms
                {
                    self.sync()?;
                }
            }
            SyncPolicy::Manual => {}
        }
        Ok(Appended {
            index,
            durable_size: self.durable,
        })
    }

    /// Group commit timer: sync if the oldest pending append is older than the policy's delay.
    /// Returns the durable size.
    pub fn tick(&mut self, now_ms: u64) -> Result<u64, AuditError> {
        if let (SyncPolicy::GroupCommit { max_delay_ms, .. }, Some(since)) =
            (self.policy, self.pending_since)
            && now_ms.saturating_sub(since) >= max_delay_ms
        {
            self.sync()?;
        }
        Ok(self.durable)
    }

    fn flush_data(&mut self) -> Result<(), AuditError> {
        if !self.data_buf.is_empty() {
            self.entries
                .write_all_at(&self.data_buf, self.data_stored)
                .map_err(io_err("write", &self.entries_path))?;
            self.data_stored += self.data_buf.len() as u64;
            self.data_buf.clear();
        }
        Ok(())
    }

    /// Make every appended record durable (write + fdatasync of `entries.dat`); returns the
    /// durable size. Derived files are written (not synced) and synced every 65536 records.
    pub fn sync(&mut self) -> Result<u64, AuditError> {
        self.flush_data()?;
        if self.durable < self.size() {
            self.entries
                .sync_data()
                .map_err(io_err("fsync", &self.entries_path))?;
        }
        self.durable = self.size();
        self.pending_since = None;
        self.offsets.flush()?;
        for l in &mut self.levels {
            l.flush()?;
        }
        if self.size() - self.derived_synced >= DERIVED_SYNC_EVERY {
            self.sync_derived()?;
        }
        Ok(self.durable)
    }

    /// Fsync the derived files and advance the watermark to the current size.
    fn sync_derived(&mut self) -> Result<(), AuditError> {
        self.offsets.sync()?;
        for l in &mut self.levels {
            l.sync()?;
        }
        write_state(&self.dir, self.size())?;
        self.derived_synced = self.size();
        Ok(())
    }

    /// Sync everything (records and derived files).
    pub fn sync_all(&mut self) -> Result<(), AuditError> {
        self.sync()?;
        if self.derived_synced != self.size() {
            self.sync_derived()?;
        }
        Ok(())
    }

    /// Sync everything, sign a checkpoint of the current tree with every signer (Ed25519, and
    /// ML-DSA-44 in hybrid mode), store it atomically and return its text. `timestamp` is the
    /// POSIX time in seconds for the ML-DSA-44 cosignature.
    pub fn checkpoint(
        &mut self,
        signers: &[&NoteSigner],
        timestamp: u64,
    ) -> Result<String, AuditError> {
        self.sync_all()?;
        if let Some(s) = signers.iter().find(|s| s.name() != self.config.origin) {
            return Err(AuditError::Config(format!(
                "signer key name {:?} is not the log origin {:?}",
                s.name(),
                self.config.origin
            )));
        }
        let cp = Checkpoint::new(&self.config.origin, self.size(), self.root());
        let text = cp.sign(signers, timestamp)?;
        // Check what we are about to publish with the log's own verifiers and mode.
        let vs: Vec<NoteVerifier> = if self.verifiers.is_empty() {
            signers.iter().map(|s| s.verifier()).collect()
        } else {
            self.verifiers.clone()
        };
        Checkpoint::verify(&text, &vs, self.mode)?;
        write_atomic(&self.dir, CHECKPOINT, text.as_bytes())?;
        self.checkpoint = Some(cp);
        Ok(text)
    }

    fn check_against(&self, cp: &Checkpoint) -> Result<(), AuditError> {
        if cp.size > self.size() {
            return Err(AuditError::CheckpointAhead {
                checkpoint_size: cp.size,
                log_size: self.size(),
            });
        }
        let r = self.root_at(cp.size)?;
        if r != cp.root {
            return Err(AuditError::CheckpointMismatch {
                size: cp.size,
                computed: hex::encode(r),
            });
        }
        Ok(())
    }

    fn view(&self, size: u64) -> Result<TreeView<'_>, AuditError> {
        if size > self.size() {
            return Err(merkle::ProofError::IndexOutOfRange {
                index: size,
                size: self.size() + 1,
            }
            .into());
        }
        Ok(TreeView {
            levels: &self.levels,
            cache: &self.cache,
            frontier: &self.frontier,
            size,
        })
    }

    /// Root of the tree of the first `size` records (O(log n) reads).
    pub fn root_at(&self, size: u64) -> Result<Hash, AuditError> {
        if size == 0 {
            return Ok(merkle::empty_root());
        }
        if size == self.size() {
            return Ok(self.root());
        }
        self.view(size)?.subtree_root(0, size)
    }

    /// Leaf hash of record `index`.
    pub fn leaf_hash(&self, index: u64) -> Result<Hash, AuditError> {
        if index >= self.size() {
            return Err(merkle::ProofError::IndexOutOfRange {
                index,
                size: self.size(),
            }
            .into());
        }
        self.view(self.size())?.node(0, index)
    }

    /// Inclusion proof of record `index` in the tree of the first `size` records.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, AuditError> {
        merkle::inclusion_proof_from(&mut self.view(size)?, index, size)
    }

    /// Consistency proof from tree size `old` to `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, AuditError> {
        merkle::consistency_proof_from(&mut self.view(new)?, old, new)
    }

    /// The stored bytes of record `index`.
    pub fn read_record(&self, index: u64) -> Result<Vec<u8>, AuditError> {
        if index >= self.size() {
            return Err(merkle::ProofError::IndexOutOfRange {
                index,
                size: self.size(),
            }
            .into());
        }
        let end = {
            let mut b = [0u8; 8];
            self.offsets.get(index, &mut b)?;
            u64::from_le_bytes(b)
        };
        let start = if index == 0 {
            FILE_MAGIC.len() as u64
        } else {
            let mut b = [0u8; 8];
            self.offsets.get(index - 1, &mut b)?;
            u64::from_le_bytes(b)
        };
        let len = (end - start) as usize;
        let mut rec = vec![0u8; len];
        if end <= self.data_stored {
            self.entries
                .read_exact_at(&mut rec, start)
                .map_err(io_err("read", &self.entries_path))?;
        } else {
            let off = (start - self.data_stored) as usize;
            let src = self
                .data_buf
                .get(off..off + len)
                .ok_or_else(|| AuditError::Io {
                    op: "read",
                    path: self.entries_path.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "record beyond the write buffer",
                    ),
                })?;
            rec.copy_from_slice(src);
        }
        Ok(rec.split_off(HEADER_LEN.min(rec.len())))
    }

    /// Sync everything and close.
    pub fn close(mut self) -> Result<(), AuditError> {
        self.sync_all()
    }
}

/// Read `n` hashes or offsets sequentially from a derived file for verification.
struct SeqReader {
    r: Option<BufReader<File>>,
    count: u64,
    next: u64,
}

impl SeqReader {
    fn open(path: &Path, item: u64) -> Result<Self, AuditError> {
        match File::open(path) {
            Ok(f) => {
                let len = f.metadata().map_err(io_err("stat", path))?.len();
                Ok(Self {
                    r: Some(BufReader::with_capacity(1 << 14, f)),
                    count: len / item,
                    next: 0,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                r: None,
                count: 0,
                next: 0,
            }),
            Err(e) => Err(io_err("open", path)(e)),
        }
    }

    /// The next item if the file holds it.
    fn next<const N: usize>(&mut self, path: &Path) -> Result<Option<[u8; N]>, AuditError> {
        if self.next >= self.count {
            return Ok(None);
        }
        let Some(r) = self.r.as_mut() else {
            return Ok(None);
        };
        let mut b = [0u8; N];
        r.read_exact(&mut b).map_err(io_err("read", path))?;
        self.next += 1;
        Ok(Some(b))
    }
}

/// Full verification of the log in `dir`, read-only and in constant memory: every record's
/// framing and checksums, its leaf hash and end offset against the stored ones, every stored
/// interior hash, the signed checkpoint (signatures with `verifiers`, or the config's vkeys,
/// in `mode` or the config's mode) and its root against the records. Errors name the first
/// bad record.
pub fn verify_log(
    dir: &Path,
    verifiers: Option<&[NoteVerifier]>,
    mode: Option<CheckpointMode>,
) -> Result<VerifyReport, AuditError> {
    let config = read_config(dir)?;
    let vs = match verifiers {
        Some(v) => v.to_vec(),
        None => config.verifiers()?,
    };
    let mode = match mode {
        Some(m) => m,
        None => config.checkpoint_mode()?,
    };
    let cp = if vs.is_empty() && !dir.join(CHECKPOINT).exists() {
        None
    } else {
        load_checkpoint(dir, &config, &vs, mode)?
    };
    let watermark = read_state(dir).unwrap_or(0);

    let ep = dir.join(ENTRIES);
    let f = File::open(&ep).map_err(io_err("open", &ep))?;
    let file_len = f.metadata().map_err(io_err("stat", &ep))?.len();
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut magic = [0u8; 16];
    if r.read_exact(&mut magic).is_err() || &magic != FILE_MAGIC {
        return Err(AuditError::NotALog {
            path: dir.to_path_buf(),
            reason: "entries.dat header is not ATOM-AUDIT-LOG v1".into(),
        });
    }
    let op = dir.join(OFFSETS);
    let mut offsets = SeqReader::open(&op, 8)?;
    let mut level_paths: Vec<PathBuf> = Vec::new();
    let mut levels: Vec<SeqReader> = Vec::new();
    let indexed = {
        let l0 = SeqReader::open(&level_path(dir, 0), HASH_LEN as u64)?;
        l0.count.min(offsets.count)
    };
    // Records the log has committed to: indexed ones and those under the checkpoint.
    let committed = indexed
        .max(watermark)
        .max(cp.as_ref().map_or(0, |c| c.size));

    let mut frontier = Frontier::new();
    let mut pos = FILE_MAGIC.len() as u64;
    let mut cp_root: Option<Hash> = None;
    let mut torn = None;
    let mut completed: Vec<(u32, u64, Hash)> = Vec::with_capacity(64);
    loop {
        let index = frontier.size();
        if cp.as_ref().is_some_and(|c| c.size == index) {
            cp_root = Some(frontier.root());
        }
        let payload = match scan_record(&mut r, pos, file_len, index)? {
            Scan::End => break,
            Scan::Torn => {
                torn = Some(pos);
                break;
            }
            Scan::Record(p) => p,
        };
        pos += (HEADER_LEN + payload.len()) as u64;
        let leaf = merkle::leaf_hash(&payload);
        while levels.is_empty() {
            level_paths.push(level_path(dir, 0));
            levels.push(SeqReader::open(&level_paths[0], HASH_LEN as u64)?);
        }
        if let Some(stored) = levels[0].next::<HASH_LEN>(&level_paths[0])?
            && stored != leaf
        {
            return Err(AuditError::LeafMismatch { index });
        }
        if let Some(stored) = offsets.next::<8>(&op)? {
            let stored = u64::from_le_bytes(stored);
            if stored != pos {
                return Err(AuditError::OffsetMismatch {
                    index,
                    actual: pos,
                    stored,
                });
            }
        }
        completed.clear();
        frontier.push(leaf, |level, idx, h| completed.push((level, idx, *h)));
        for (level, idx, h) in &completed {
            let k = *level as usize;
            while levels.len() <= k {
                let n = levels.len();
                level_paths.push(level_path(dir, n));
                levels.push(SeqReader::open(&level_paths[n], HASH_LEN as u64)?);
            }
            if let Some(stored) = levels[k].next::<HASH_LEN>(&level_paths[k])?
                && stored != *h
            {
                return Err(AuditError::NodeMismatch {
                    level: *level,
                    index: *idx,
                    first: idx << level,
                    end: (idx + 1) << level,
                });
            }
        }
    }
    let records = frontier.size();
    if records < committed {
        return Err(AuditError::Truncated {
            index: records,
            expected: committed,
            found: records,
        });
    }
    if let Some(c) = &cp {
        let computed = cp_root.unwrap_or_else(|| frontier.root());
        if computed != c.root {
            return Err(AuditError::CheckpointMismatch {
                size: c.size,
                computed: hex::encode(computed),
            });
        }
    }
    Ok(VerifyReport {
        records,
        root: frontier.root(),
        checkpoint: cp,
        torn_tail_offset: torn,
    })
}
