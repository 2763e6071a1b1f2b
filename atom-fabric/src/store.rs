//! Persistence: the [`Store`] seam, the embedded data-directory store, and [`Fabric`], the
//! scheduler with a write-ahead journal.
//!
//! A data directory holds `snapshot.bin` (the state after command `seq`) and `journal.log`
//! (every command after it; while a background snapshot is written, the commands before the
//! rotation are in `journal.prev`). Both use the same record framing: a 4-byte little-endian payload
//! length, the first 8 bytes of the payload's SHA-256, then the JSON payload. A command is
//! appended and `fsync`ed before it is applied and acknowledged; on open, a torn or corrupt
//! tail of the journal (a crash mid-append) is cut off, and replaying the rest gives the same
//! state because the scheduler is deterministic.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{FabricError, Result};
use crate::scheduler::{Command, Outcome, Scheduler, SchedulerConfig, State};

/// One journaled command with its sequence number and clock time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// 1-based position in the command stream.
    pub seq: u64,
    /// Clock time it was applied at (ms).
    pub at_ms: u64,
    /// The command.
    pub command: Command,
}

/// The scheduler's state after command `seq` (opaque; stores keep its bytes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    seq: u64,
    state: State,
}

/// The snapshot's encoding, borrowing the state (a snapshot never clones the state).
#[derive(Serialize)]
struct SnapshotRef<'a> {
    seq: u64,
    state: &'a State,
}

fn encode_snapshot(seq: u64, state: &State) -> Result<Vec<u8>> {
    serde_json::to_vec(&SnapshotRef { seq, state }).map_err(|e| FabricError::Corrupt {
        what: "snapshot".into(),
        detail: e.to_string(),
    })
}

impl Snapshot {
    /// The last command the snapshot includes.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Encodes the snapshot.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        encode_snapshot(self.seq, &self.state)
    }

    /// Decodes a snapshot.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| FabricError::Corrupt {
            what: "snapshot".into(),
            detail: e.to_string(),
        })
    }
}

/// Where the scheduler's state lives. The embedded [`DirStore`] is the default; a PostgreSQL
/// store can implement the same three operations.
pub trait Store {
    /// The latest snapshot, if any, and the journal entries after it, in order.
    fn load(&mut self) -> Result<(Option<Snapshot>, Vec<JournalEntry>)>;
    /// Appends an entry; returns only once it is on stable storage.
    fn append(&mut self, entry: &JournalEntry) -> Result<()>;
    /// Appends entries in order; returns only once all are on stable storage (group commit:
    /// stores override this to sync once).
    fn append_batch(&mut self, entries: &[JournalEntry]) -> Result<()> {
        for e in entries {
            self.append(e)?;
        }
        Ok(())
    }
    /// Stores a snapshot durably (`bytes` decode with [`Snapshot::from_bytes`] to the state
    /// after command `seq`); entries up to `seq` may then be dropped.
    fn write_snapshot(&mut self, seq: u64, bytes: &[u8]) -> Result<()>;
    /// Starts a snapshot of the state after command `seq` that is finished off the caller's
    /// thread: the store sets aside the journal up to `seq` (appends go on meanwhile) and
    /// returns the writer of the encoded state. `None`: this store snapshots only in line.
    fn snapshot_writer(&mut self, seq: u64) -> Result<Option<SnapshotWriter>> {
        let _ = seq;
        Ok(None)
    }
}

/// What a [`SnapshotWriter`] runs.
type WriteFn = Box<dyn FnOnce(&[u8]) -> Result<()> + Send>;

/// Writes one snapshot's bytes durably, on any thread (see [`Store::snapshot_writer`]).
pub struct SnapshotWriter(WriteFn);

impl SnapshotWriter {
    /// A writer that runs `f` with the encoded snapshot (a [`Store`] outside this crate
    /// builds its own).
    pub fn new(f: impl FnOnce(&[u8]) -> Result<()> + Send + 'static) -> Self {
        Self(Box::new(f))
    }

    /// Writes `bytes` (an encoded snapshot) and drops what it covers.
    pub fn write(self, bytes: &[u8]) -> Result<()> {
        (self.0)(bytes)
    }
}

impl std::fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotWriter")
    }
}

/// An in-memory store (no durability): for tests and throw-away runs.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    snapshot: Option<Vec<u8>>,
    entries: Vec<JournalEntry>,
}

impl Store for MemoryStore {
    fn load(&mut self) -> Result<(Option<Snapshot>, Vec<JournalEntry>)> {
        let snap = self
            .snapshot
            .as_deref()
            .map(Snapshot::from_bytes)
            .transpose()?;
        Ok((snap, self.entries.clone()))
    }
    fn append(&mut self, entry: &JournalEntry) -> Result<()> {
        self.entries.push(entry.clone());
        Ok(())
    }
    fn write_snapshot(&mut self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.snapshot = Some(bytes.to_vec());
        self.entries.retain(|e| e.seq > seq);
        Ok(())
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FabricError + 'a {
    move |source| FabricError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 12);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(payload)[..8]);
    out.extend_from_slice(payload);
    out
}

/// Splits framed records; returns them and the length of the valid prefix.
fn unframe(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while bytes.len() - pos >= 12 {
        let mut len4 = [0u8; 4];
        len4.copy_from_slice(&bytes[pos..pos + 4]);
        let len = u32::from_le_bytes(len4) as usize;
        let end = pos + 12 + len;
        if end > bytes.len() {
            break;
        }
        let payload = &bytes[pos + 12..end];
        if Sha256::digest(payload)[..8] != bytes[pos + 4..pos + 12] {
            break;
        }
        out.push(payload);
        pos = end;
    }
    (out, pos)
}

/// Reads the whole frames of a journal file: its entries and the length they cover (a torn or
/// corrupt tail stops the read). A missing file is empty.
fn read_journal(path: &Path) -> Result<(Vec<JournalEntry>, usize, usize)> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(io("read", path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((vec![], 0, 0)),
        Err(e) => return Err(io("open", path)(e)),
    }
    let (records, _) = unframe(&bytes);
    let mut entries = Vec::with_capacity(records.len());
    let mut valid = 0usize;
    for rec in records {
        match serde_json::from_slice::<JournalEntry>(rec) {
            Ok(e) => {
                valid += 12 + rec.len();
                entries.push(e);
            }
            Err(_) => break,
        }
    }
    Ok((entries, valid, bytes.len()))
}

/// Writes `bytes` as `dir/snapshot.bin` durably (temp file, fsync, rename, fsync directory).
fn write_snapshot_file(dir: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join("snapshot.tmp");
    let path = dir.join("snapshot.bin");
    let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(&frame(bytes)).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("fsync", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("rename snapshot to", &path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", dir))
}

/// The embedded store: a data directory with `snapshot.bin` and `journal.log`.
///
/// ```
/// use atom_fabric::store::{DirStore, Fabric, ManualClock};
/// use atom_fabric::{Command, NodeSpec, SchedulerConfig};
/// let dir = tempfile::tempdir().unwrap();
/// let clock = ManualClock::new(0);
/// {
///     let mut f = Fabric::open(SchedulerConfig::default(), DirStore::open(dir.path()).unwrap(), Box::new(clock.clone())).unwrap();
///     f.execute(Command::RegisterNode { spec: NodeSpec::new("n1", 4000, 8192) }).unwrap();
/// }
/// let f = Fabric::open(SchedulerConfig::default(), DirStore::open(dir.path()).unwrap(), Box::new(clock)).unwrap();
/// assert!(f.scheduler().node("n1").is_some());
/// ```
#[derive(Debug)]
pub struct DirStore {
    dir: PathBuf,
    journal: File,
    /// `journal.log`, the live journal.
    journal_path: PathBuf,
    /// `journal.prev`, the segment a background snapshot set aside.
    prev_path: PathBuf,
}

fn open_journal(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(io("open", path))
}

impl DirStore {
    /// Opens (creating if needed) a data directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        let journal_path = dir.join("journal.log");
        let journal = open_journal(&journal_path)?;
        Ok(Self {
            prev_path: dir.join("journal.prev"),
            dir,
            journal,
            journal_path,
        })
    }

    fn sync_dir(&self) -> Result<()> {
        sync_dir(&self.dir)
    }
}

impl Store for DirStore {
    fn load(&mut self) -> Result<(Option<Snapshot>, Vec<JournalEntry>)> {
        let snap_path = self.dir.join("snapshot.bin");
        let snapshot = match std::fs::read(&snap_path) {
            Ok(bytes) => {
                let (records, used) = unframe(&bytes);
                if records.len() != 1 || used != bytes.len() {
                    return Err(FabricError::Corrupt {
                        what: snap_path.display().to_string(),
                        detail: "checksum or length mismatch".into(),
                    });
                }
                Some(Snapshot::from_bytes(records[0])?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("read", &snap_path)(e)),
        };
        // A rotated segment (a background snapshot had not finished) comes first; it was
        // complete when rotated, so only the live journal can have a torn tail.
        let (mut entries, _, _) = read_journal(&self.prev_path)?;
        let jpath = &self.journal_path;
        let (live, valid, len) = read_journal(jpath)?;
        entries.extend(live);
        if valid < len {
            // A torn tail: the append never completed, so it was never acknowledged.
            self.journal
                .set_len(valid as u64)
                .map_err(io("truncate torn tail of", jpath))?;
            self.journal.sync_all().map_err(io("fsync", jpath))?;
        }
        let after = snapshot.as_ref().map_or(0, |s| s.seq);
        entries.retain(|e| e.seq > after);
        Ok((snapshot, entries))
    }

    fn append(&mut self, entry: &JournalEntry) -> Result<()> {
        let jpath = &self.journal_path;
        let payload = serde_json::to_vec(entry).map_err(|e| FabricError::Corrupt {
            what: "journal entry".into(),
            detail: e.to_string(),
        })?;
        self.journal
            .write_all(&frame(&payload))
            .map_err(io("append to", jpath))?;
        self.journal.sync_data().map_err(io("fsync", jpath))
    }

    fn append_batch(&mut self, entries: &[JournalEntry]) -> Result<()> {
        let jpath = &self.journal_path;
        let mut buf = Vec::new();
        for entry in entries {
            let payload = serde_json::to_vec(entry).map_err(|e| FabricError::Corrupt {
                what: "journal entry".into(),
                detail: e.to_string(),
            })?;
            buf.extend_from_slice(&frame(&payload));
        }
        // One write and one fsync for the batch: a torn tail is cut at the last whole frame
        // on load, and nothing of the batch was acknowledged before the sync.
        self.journal
            .write_all(&buf)
            .map_err(io("append to", jpath))?;
        self.journal.sync_data().map_err(io("fsync", jpath))
    }

    fn write_snapshot(&mut self, _seq: u64, bytes: &[u8]) -> Result<()> {
        write_snapshot_file(&self.dir, bytes)?;
        // Every journal entry is now covered by the snapshot (entries carry seq, so a crash
        // before these removals only leaves entries that load() skips).
        match std::fs::remove_file(&self.prev_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &self.prev_path)(e)),
        }
        let jpath = &self.journal_path;
        self.journal.set_len(0).map_err(io("truncate", jpath))?;
        self.journal.sync_all().map_err(io("fsync", jpath))
    }

    fn snapshot_writer(&mut self, _seq: u64) -> Result<Option<SnapshotWriter>> {
        if self.prev_path.exists() {
            // The last background snapshot did not finish: the next one is written in line.
            return Ok(None);
        }
        let jpath = &self.journal_path;
        std::fs::rename(jpath, &self.prev_path).map_err(io("rotate", jpath))?;
        self.journal = open_journal(jpath)?;
        self.sync_dir()?;
        let (dir, prev) = (self.dir.clone(), self.prev_path.clone());
        Ok(Some(SnapshotWriter::new(move |bytes: &[u8]| {
            write_snapshot_file(&dir, bytes)?;
            std::fs::remove_file(&prev).map_err(io("remove", &prev))?;
            sync_dir(&dir)
        })))
    }
}

/// A source of time in milliseconds (injected so the core stays deterministic).
pub trait Clock: Send {
    /// Now, in ms.
    fn now_ms(&self) -> u64;
}

/// Wall-clock time since the Unix epoch.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;
impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A clock moved by hand (tests, simulations); clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);
impl ManualClock {
    /// A clock at `ms`.
    pub fn new(ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(ms)))
    }
    /// Sets the time.
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    /// Moves the time forward.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}
impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The scheduler with durable state: every command is journaled before it is applied.
pub struct Fabric<S: Store> {
    scheduler: Scheduler,
    store: S,
    clock: Box<dyn Clock>,
    seq: u64,
    last_ms: u64,
    since_snapshot: u64,
    snapshot_every: SnapshotEvery,
    background_snapshots: bool,
    /// The snapshot being written off-thread, if any.
    writing: Option<std::thread::JoinHandle<Result<()>>>,
    /// Why the last background snapshot failed (the next one is written in line).
    snapshot_error: Option<FabricError>,
}

/// When [`Fabric`] takes a snapshot on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnapshotEvery {
    Never,
    /// After this many commands.
    Commands(u64),
    /// After at least this many commands and at least half as many as the state holds
    /// records, so that writing a snapshot (linear in the state) costs O(1) amortised per
    /// command however large the state grows (half: a state that grows by a record per
    /// command still gets snapshots).
    Proportional(u64),
}

impl<S: Store> std::fmt::Debug for Fabric<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fabric")
            .field("seq", &self.seq)
            .field("last_ms", &self.last_ms)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Fabric<S> {
    /// Opens the store, loads the snapshot and replays the journal after it.
    pub fn open(config: SchedulerConfig, mut store: S, clock: Box<dyn Clock>) -> Result<Self> {
        let (snapshot, entries) = store.load()?;
        let (mut scheduler, mut seq) = match snapshot {
            Some(s) => (Scheduler::from_state(config, s.state), s.seq),
            None => (Scheduler::new(config), 0),
        };
        let mut last_ms = 0;
        for e in entries {
            if e.seq != seq + 1 {
                return Err(FabricError::Corrupt {
                    what: "journal".into(),
                    detail: format!("entry {} follows {seq}", e.seq),
                });
            }
            // Errors were errors the first time too: replay reproduces them (no state change).
            let _ = scheduler.apply(e.command, e.at_ms);
            seq = e.seq;
            last_ms = e.at_ms;
        }
        Ok(Self {
            scheduler,
            store,
            clock,
            seq,
            last_ms,
            since_snapshot: 0,
            snapshot_every: SnapshotEvery::Proportional(10_000),
            background_snapshots: false,
            writing: None,
            snapshot_error: None,
        })
    }

    /// Takes a snapshot automatically after exactly this many commands (0 = never). The
    /// default snapshots after max(10,000, half the records in the state) commands.
    pub fn with_snapshot_every(mut self, n: u64) -> Self {
        self.snapshot_every = if n == 0 {
            SnapshotEvery::Never
        } else {
            SnapshotEvery::Commands(n)
        };
        self
    }

    /// Writes automatic snapshots off the caller's thread when the store can (the embedded
    /// store rotates its journal): the caller pauses only to clone the state, not to encode
    /// and write it. A host wants this; tests and simulations keep the default (in line).
    pub fn with_background_snapshots(mut self, on: bool) -> Self {
        self.background_snapshots = on;
        self
    }

    /// Why the last background snapshot failed, if it did (the journal still holds every
    /// command; the next snapshot is written in line).
    pub fn snapshot_error(&self) -> Option<&FabricError> {
        self.snapshot_error.as_ref()
    }

    /// Waits for a background snapshot being written, if any.
    pub fn wait_snapshot(&mut self) {
        if let Some(h) = self.writing.take() {
            self.snapshot_error = match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(FabricError::Corrupt {
                    what: "snapshot".into(),
                    detail: "the snapshot thread panicked".into(),
                }),
            };
        }
    }

    /// The automatic snapshot: off-thread when enabled and possible, else in line.
    fn auto_snapshot(&mut self) -> Result<()> {
        if self.background_snapshots {
            if self.writing.as_ref().is_some_and(|h| !h.is_finished()) {
                return Ok(()); // one at a time; this one is due again after the next command
            }
            self.wait_snapshot();
            if let Some(writer) = self.store.snapshot_writer(self.seq)? {
                let seq = self.seq;
                let state = self.scheduler.state().clone();
                let spawned = std::thread::Builder::new()
                    .name("atom-snapshot".into())
                    .spawn(move || {
                        let bytes = encode_snapshot(seq, &state)?;
                        writer.write(&bytes)
                    });
                if let Ok(h) = spawned {
                    self.writing = Some(h);
                    self.since_snapshot = 0;
                    return Ok(());
                }
                // No thread: the rotated journal is folded in by the in-line snapshot below.
            }
        }
        self.snapshot()
    }

    fn snapshot_due(&self) -> bool {
        match self.snapshot_every {
            SnapshotEvery::Never => false,
            SnapshotEvery::Commands(n) => self.since_snapshot >= n,
            SnapshotEvery::Proportional(n) => {
                self.since_snapshot >= n
                    && self.since_snapshot >= self.scheduler.state_records() as u64 / 2
            }
        }
    }

    /// Journals the command durably, then applies it.
    pub fn execute(&mut self, command: Command) -> Result<Outcome> {
        let at_ms = self.clock.now_ms().max(self.last_ms);
        let entry = JournalEntry {
            seq: self.seq + 1,
            at_ms,
            command,
        };
        self.store.append(&entry)?;
        self.seq = entry.seq;
        self.last_ms = at_ms;
        let out = self.scheduler.apply(entry.command, at_ms);
        self.since_snapshot += 1;
        if self.snapshot_due() {
            self.auto_snapshot()?;
        }
        out
    }

    /// Journals several commands with one sync (group commit), then applies them in order.
    /// Each command gets its own outcome; a store failure fails them all (none was applied).
    pub fn execute_batch(&mut self, commands: Vec<Command>) -> Result<Vec<Result<Outcome>>> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let at_ms = self.clock.now_ms().max(self.last_ms);
        let entries: Vec<JournalEntry> = commands
            .into_iter()
            .enumerate()
            .map(|(i, command)| JournalEntry {
                seq: self.seq + 1 + i as u64,
                at_ms,
                command,
            })
            .collect();
        self.store.append_batch(&entries)?;
        let mut outs = Vec::with_capacity(entries.len());
        for entry in entries {
            self.seq = entry.seq;
            self.last_ms = at_ms;
            outs.push(self.scheduler.apply(entry.command, at_ms));
            self.since_snapshot += 1;
        }
        if self.snapshot_due() {
            self.auto_snapshot()?;
        }
        Ok(outs)
    }

    /// Checks heartbeats; journals a command only when some node timed out.
    pub fn tick(&mut self) -> Result<Option<Outcome>> {
        let now = self.clock.now_ms().max(self.last_ms);
        if self.scheduler.heartbeats_expired(now) {
            self.execute(Command::CheckHeartbeats).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Writes a snapshot of the current state.
    pub fn snapshot(&mut self) -> Result<()> {
        // A background snapshot finishes first: the two must not race on the files.
        self.wait_snapshot();
        let bytes = encode_snapshot(self.seq, self.scheduler.state())?;
        self.store.write_snapshot(self.seq, &bytes)?;
        self.since_snapshot = 0;
        Ok(())
    }

    /// The scheduler (read-only: changes go through [`Fabric::execute`]).
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Takes the pending decision events.
    pub fn take_events(&mut self) -> Vec<crate::event::Event> {
        self.scheduler.take_events()
    }

    /// Commands applied so far.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Closes the fabric and hands back its store (e.g. to reopen it, as after a restart).
    pub fn into_store(mut self) -> S {
        self.wait_snapshot();
        self.store
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_torn_tails_are_cut() {
        let mut bytes = frame(b"hello");
        bytes.extend(frame(b"world"));
        let full = bytes.len();
        bytes.extend(&frame(b"torn!")[..9]);
        let (recs, used) = unframe(&bytes);
        assert_eq!(recs, vec![&b"hello"[..], &b"world"[..]]);
        assert_eq!(used, full);
        // A flipped byte in the second payload stops the read after the first record.
        bytes[12 + 5 + 12] ^= 1;
        let (recs, _) = unframe(&bytes);
        assert_eq!(recs, vec![&b"hello"[..]]);
    }

    /// A store that counts snapshots (and keeps them, like [`MemoryStore`]).
    #[derive(Default)]
    struct Counting {
        inner: MemoryStore,
        snapshots: Vec<u64>,
    }

    impl Store for Counting {
        fn load(&mut self) -> Result<(Option<Snapshot>, Vec<JournalEntry>)> {
            self.inner.load()
        }
        fn append(&mut self, entry: &JournalEntry) -> Result<()> {
            self.inner.append(entry)
        }
        fn write_snapshot(&mut self, seq: u64, bytes: &[u8]) -> Result<()> {
            self.snapshots.push(seq);
            self.inner.write_snapshot(seq, bytes)
        }
    }

    #[test]
    fn snapshots_space_out_as_the_state_grows_and_restore_it() {
        use crate::model::{NodeSpec, Resources, ScheduleRequest};
        let clock = ManualClock::new(0);
        let mut f = Fabric::open(
            SchedulerConfig {
                terminal_retention: 0,
                ..SchedulerConfig::default()
            },
            Counting::default(),
            Box::new(clock.clone()),
        )
        .unwrap();
        f.execute(Command::RegisterNode {
            spec: NodeSpec::new("n1", 8_000, 32_768),
        })
        .unwrap();
        // Requests of nothing are all placed and held: the state grows by one record each.
        let req = ScheduleRequest::new("t", "m", "v", Resources::default());
        for chunk in 0..35 {
            let cmds = (0..1_000)
                .map(|_| Command::Schedule {
                    request: req.clone(),
                })
                .collect();
            f.execute_batch(cmds).unwrap();
            clock.advance(1 + chunk);
        }
        // Checked after each batch of 1,000: at 10,001 (10,002 records); at 20,001 the 10,000
        // commands since are fewer than half of 20,002 records, so 21,001; the next would need
        // 21,001 more. A fixed interval writes 10,001, 20,001 and 30,001.
        let snaps = f.store.snapshots.clone();
        assert_eq!(snaps, [10_001, 21_001]);
        let digest = f.scheduler().state_digest().unwrap();
        let store = f.into_store();
        assert_eq!(store.inner.entries.len(), 35_001 - 21_001);
        let g = Fabric::open(
            SchedulerConfig {
                terminal_retention: 0,
                ..SchedulerConfig::default()
            },
            store,
            Box::new(clock),
        )
        .unwrap();
        assert_eq!(g.scheduler().state_digest().unwrap(), digest);
    }

    fn zero_requests(n: usize) -> Vec<Command> {
        use crate::model::{Resources, ScheduleRequest};
        let req = ScheduleRequest::new("t", "m", "v", Resources::default());
        (0..n)
            .map(|_| Command::Schedule {
                request: req.clone(),
            })
            .collect()
    }

    fn open_dir(dir: &Path, clock: &ManualClock) -> Fabric<DirStore> {
        Fabric::open(
            SchedulerConfig::default(),
            DirStore::open(dir).unwrap(),
            Box::new(clock.clone()),
        )
        .unwrap()
    }

    #[test]
    fn a_background_snapshot_lets_appends_go_on_and_restores_everything() {
        use crate::model::NodeSpec;
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(0);
        let mut f = open_dir(dir.path(), &clock).with_background_snapshots(true);
        f.execute(Command::RegisterNode {
            spec: NodeSpec::new("n1", 8_000, 32_768),
        })
        .unwrap();
        // 10,000 commands make a snapshot due: the journal is rotated and the state written
        // off-thread while more commands are journaled.
        f.execute_batch(zero_requests(9_999)).unwrap();
        assert!(f.writing.is_some());
        for _ in 0..20 {
            f.execute_batch(zero_requests(50)).unwrap();
            clock.advance(1);
        }
        f.wait_snapshot();
        assert!(f.snapshot_error().is_none());
        assert!(!dir.path().join("journal.prev").exists());
        let digest = f.scheduler().state_digest().unwrap();
        let seq = f.seq();
        drop(f);
        // The snapshot holds the first 10,000; the journal only what came after.
        let mut store = DirStore::open(dir.path()).unwrap();
        let (snap, entries) = store.load().unwrap();
        assert_eq!(snap.unwrap().seq(), 10_000);
        assert_eq!(entries.len() as u64, seq - 10_000);
        let g = open_dir(dir.path(), &clock);
        assert_eq!(
            (g.seq(), g.scheduler().state_digest().unwrap()),
            (seq, digest)
        );
    }

    #[test]
    fn a_crash_before_the_background_snapshot_is_written_loses_nothing() {
        use crate::model::NodeSpec;
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(0);
        let mut f = open_dir(dir.path(), &clock).with_snapshot_every(0);
        f.execute(Command::RegisterNode {
            spec: NodeSpec::new("n1", 8_000, 32_768),
        })
        .unwrap();
        f.execute_batch(zero_requests(300)).unwrap();
        // Rotated, and the writer never runs (the process died before it finished).
        let writer = f.store.snapshot_writer(f.seq()).unwrap().unwrap();
        drop(writer);
        f.execute_batch(zero_requests(200)).unwrap();
        let digest = f.scheduler().state_digest().unwrap();
        drop(f);
        assert!(dir.path().join("journal.prev").exists());
        let mut g = open_dir(dir.path(), &clock).with_background_snapshots(true);
        assert_eq!(g.seq(), 501);
        assert_eq!(g.scheduler().state_digest().unwrap(), digest);
        // With the rotated segment still there, the next snapshot is written in line and
        // folds it in.
        assert!(g.store.snapshot_writer(g.seq()).unwrap().is_none());
        g.snapshot().unwrap();
        assert!(!dir.path().join("journal.prev").exists());
        drop(g);
        let g = open_dir(dir.path(), &clock);
        assert_eq!(g.scheduler().state_digest().unwrap(), digest);
    }

    #[test]
    fn a_batch_is_journaled_once_and_replays_to_the_same_state() {
        use crate::model::{GpuDevice, NodeSpec, Resources, ScheduleRequest};
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000);
        let mut f = Fabric::open(
            SchedulerConfig::default(),
            DirStore::open(dir.path()).unwrap(),
            Box::new(clock.clone()),
        )
        .unwrap();
        let mut node = NodeSpec::new("n1", 8_000, 32_768);
        node.gpus = vec![
            GpuDevice {
                model: "A100".into(),
                memory_mib: 40_960
            };
            2
        ];
        let mut cmds = vec![Command::RegisterNode { spec: node }];
        for t in ["a", "b", "a"] {
            cmds.push(Command::Schedule {
                request: ScheduleRequest::new(
                    t,
                    "m",
                    "v",
                    Resources {
                        gpu: 1,
                        ..Resources::default()
                    },
                ),
            });
        }
        let outs = f.execute_batch(cmds).unwrap();
        assert_eq!(outs.len(), 4);
        assert!(matches!(outs[1], Ok(Outcome::Placed { .. })));
        assert!(matches!(outs[2], Ok(Outcome::Placed { .. })));
        assert!(matches!(outs[3], Ok(Outcome::Queued { .. })));
        assert_eq!(f.seq(), 4);
        let digest = f.scheduler().state_digest().unwrap();
        let store = f.into_store();
        drop(store);
        let again = Fabric::open(
            SchedulerConfig::default(),
            DirStore::open(dir.path()).unwrap(),
            Box::new(clock),
        )
        .unwrap();
        assert_eq!(again.seq(), 4);
        assert_eq!(again.scheduler().state_digest().unwrap(), digest);
    }
}
