//! The content-addressed cache: `sha256/<digest>` blobs with a size limit and LRU eviction.
//!
//! A blob enters the cache only after its digest has been verified, by an atomic rename of a fully
//! written and synced `tmp/<digest>.part` file, so a crash never leaves a half file that looks
//! whole. Recency is the blob's modification time, refreshed on every hit; pinned blobs (those of
//! the current and previous version of every model) are never evicted.

use super::ModelStoreError;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A content-addressed blob cache in a directory.
#[derive(Debug)]
pub struct ContentCache {
    root: PathBuf,
    limit_bytes: u64,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ModelStoreError + 'a {
    move |source| ModelStoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Fsyncs a directory so a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ModelStoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}

impl ContentCache {
    /// Opens (creating) a cache rooted at `root` holding at most `limit_bytes` of blobs.
    pub fn open(root: &Path, limit_bytes: u64) -> Result<Self, ModelStoreError> {
        for sub in ["sha256", "tmp"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).map_err(io("create", &d))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            limit_bytes,
        })
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the blob with this hex digest.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("sha256").join(digest)
    }

    /// Path of the partial download of this digest.
    pub fn part_path(&self, digest: &str) -> PathBuf {
        self.root.join("tmp").join(format!("{digest}.part"))
    }

    /// True if the blob is cached; a hit refreshes its recency.
    pub fn touch(&self, digest: &str) -> bool {
        let p = self.blob_path(digest);
        match File::options().append(true).open(&p) {
            Ok(f) => {
                let _ = f.set_modified(SystemTime::now());
                true
            }
            Err(_) => false,
        }
    }

    /// Bytes held by blobs.
    pub fn used_bytes(&self) -> Result<u64, ModelStoreError> {
        Ok(self.entries()?.iter().map(|e| e.1).sum())
    }

    /// The configured limit.
    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    fn entries(&self) -> Result<Vec<(String, u64, SystemTime)>, ModelStoreError> {
        let dir = self.root.join("sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io("read directory", &dir))? {
            let e = e.map_err(io("read directory", &dir))?;
            let md = e.metadata().map_err(io("stat", &e.path()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            out.push((
                name,
                md.len(),
                md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            ));
        }
        Ok(out)
    }

    /// Makes room for `incoming` more bytes by evicting least recently used unpinned blobs.
    /// Fails with [`ModelStoreError::CacheFull`] if pinned blobs leave too little room.
    pub fn reserve(&self, incoming: u64, pinned: &BTreeSet<String>) -> Result<(), ModelStoreError> {
        let mut entries = self.entries()?;
        let mut used: u64 = entries.iter().map(|e| e.1).sum();
        if used.saturating_add(incoming) <= self.limit_bytes {
            return Ok(());
        }
        // Oldest first; ties broken by digest so eviction order is deterministic.
        entries.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.cmp(&b.0)));
        let pinned_bytes: u64 = entries
            .iter()
            .filter(|e| pinned.contains(&e.0))
            .map(|e| e.1)
            .sum();
        if pinned_bytes.saturating_add(incoming) > self.limit_bytes {
            return Err(ModelStoreError::CacheFull {
                needed: incoming,
                pinned: pinned_bytes,
                limit: self.limit_bytes,
            });
        }
        for (digest, len, _) in entries {
            if used.saturating_add(incoming) <= self.limit_bytes {
                break;
            }
            if pinned.contains(&digest) {
                continue;
            }
            let p = self.blob_path(&digest);
            fs::remove_file(&p).map_err(io("evict", &p))?;
            used -= len;
        }
        Ok(())
    }

    /// Moves a verified part file into the cache (fsync, rename, fsync the directory).
    pub fn commit(&self, digest: &str) -> Result<PathBuf, ModelStoreError> {
        let part = self.part_path(digest);
        File::open(&part)
            .and_then(|f| f.sync_all())
            .map_err(io("sync", &part))?;
        let dest = self.blob_path(digest);
        fs::rename(&part, &dest).map_err(io("rename", &part))?;
        sync_dir(&self.root.join("sha256"))?;
        Ok(dest)
    }

    /// Re-hashes a cached blob and checks it (P7: verify before deploy and rollback).
    pub fn verify_blob(&self, digest: &str, name: &str) -> Result<(), ModelStoreError> {
        let p = self.blob_path(digest);
        let mut f = File::open(&p).map_err(|_| ModelStoreError::NotCached {
            file: name.to_owned(),
            digest: digest.to_owned(),
        })?;
        let actual = hash_reader(&mut f).map_err(io("read", &p))?;
        if actual != digest {
            return Err(ModelStoreError::DigestMismatch {
                file: name.to_owned(),
                expected: digest.to_owned(),
                actual,
            });
        }
        Ok(())
    }
}

/// Hex SHA-256 of everything `r` yields.
pub(crate) fn hash_reader(r: &mut impl Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync directory).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelStoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io("create", dir))?;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io("rename", &tmp))?;
    sync_dir(dir)
}
