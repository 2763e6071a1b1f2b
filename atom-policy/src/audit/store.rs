//! Append-only files of fixed-size items (record end offsets, tree hashes per level) with a
//! write buffer, positional reads and explicit sync. Memory: the unflushed buffer only.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::AuditError;

/// Flush the write buffer to the file (no fsync) beyond this many bytes.
const FLUSH_AT: usize = 1 << 20;

/// One append-only file of `item`-byte items.
#[derive(Debug)]
pub(crate) struct ItemFile {
    path: PathBuf,
    file: File,
    item: usize,
    /// Items written to the file.
    stored: u64,
    /// Items buffered, not yet written.
    buf: Vec<u8>,
}

pub(crate) fn io_err(
    op: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> AuditError + use<> {
    let path = path.to_path_buf();
    move |source| AuditError::Io { op, path, source }
}

impl ItemFile {
    /// Open (creating) `path` and cut it to `keep` items; error if it holds fewer.
    pub(crate) fn open(path: &Path, item: usize, keep: u64) -> Result<Self, AuditError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err("open", path))?;
        let len = file.metadata().map_err(io_err("stat", path))?.len();
        let have = len / item as u64;
        if have < keep {
            return Err(AuditError::DerivedShort {
                file: path.to_path_buf(),
                have,
                need: keep,
            });
        }
        if len != keep * item as u64 {
            file.set_len(keep * item as u64)
                .map_err(io_err("truncate", path))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            item,
            stored: keep,
            buf: Vec::new(),
        })
    }

    /// Append one item.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<(), AuditError> {
        debug_assert_eq!(bytes.len(), self.item);
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Read item `i` into `out`.
    pub(crate) fn get(&self, i: u64, out: &mut [u8]) -> Result<(), AuditError> {
        if i < self.stored {
            self.file
                .read_exact_at(out, i * self.item as u64)
                .map_err(io_err("read", &self.path))
        } else {
            let off = ((i - self.stored) as usize) * self.item;
            match self.buf.get(off..off + self.item) {
                Some(src) => {
                    out.copy_from_slice(src);
                    Ok(())
                }
                None => Err(AuditError::Io {
                    op: "read",
                    path: self.path.clone(),
                    source: io::Error::new(io::ErrorKind::UnexpectedEof, "item beyond end"),
                }),
            }
        }
    }

    /// Read items `start..start + out.len() / item` into `out` (one read for the file part).
    pub(crate) fn read_many(&self, start: u64, out: &mut [u8]) -> Result<(), AuditError> {
        let n = (out.len() / self.item) as u64;
        let in_file = self.stored.saturating_sub(start).min(n);
        let split = in_file as usize * self.item;
        let (a, b) = out.split_at_mut(split);
        if !a.is_empty() {
            self.file
                .read_exact_at(a, start * self.item as u64)
                .map_err(io_err("read", &self.path))?;
        }
        if !b.is_empty() {
            let off = ((start + in_file - self.stored) as usize) * self.item;
            let src = self
                .buf
                .get(off..off + b.len())
                .ok_or_else(|| AuditError::Io {
                    op: "read",
                    path: self.path.clone(),
                    source: io::Error::new(io::ErrorKind::UnexpectedEof, "items beyond end"),
                })?;
            b.copy_from_slice(src);
        }
        Ok(())
    }

    /// Write the buffer to the file (no fsync).
    pub(crate) fn flush(&mut self) -> Result<(), AuditError> {
        if !self.buf.is_empty() {
            self.file
                .write_all_at(&self.buf, self.stored * self.item as u64)
                .map_err(io_err("write", &self.path))?;
            self.stored += (self.buf.len() / self.item) as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Flush and fdatasync.
    pub(crate) fn sync(&mut self) -> Result<(), AuditError> {
        self.flush()?;
        self.file.sync_data().map_err(io_err("fsync", &self.path))
    }
}
