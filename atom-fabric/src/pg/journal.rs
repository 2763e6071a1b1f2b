//! The [`Store`] trait on PostgreSQL: the journal and snapshots of one [`crate::Fabric`].

use postgres::{Client, NoTls};

use super::{migrate_client, pg_err};
use crate::error::{FabricError, Result};
use crate::store::{JournalEntry, Snapshot, Store};

/// A single-process fabric's journal and snapshots in PostgreSQL (tables `nf_journal` and
/// `nf_snapshots`, keyed by a store name so several fabrics can share a database).
///
/// Appends are plain inserts keyed by `(store, seq)`: a second writer appending the same `seq`
/// fails on the primary key instead of forking the journal. For several replicas placing on one
/// fleet use [`super::PgReplica`] instead.
///
/// ```no_run
/// use atom_fabric::pg::PgJournalStore;
/// use atom_fabric::store::{Fabric, SystemClock};
/// use atom_fabric::SchedulerConfig;
/// let store = PgJournalStore::connect("host=127.0.0.1 user=postgres dbname=atom", "main").unwrap();
/// let fabric = Fabric::open(SchedulerConfig::default(), store, Box::new(SystemClock)).unwrap();
/// ```
pub struct PgJournalStore {
    client: Client,
    name: String,
}

impl std::fmt::Debug for PgJournalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgJournalStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PgJournalStore {
    /// Connects, applies pending migrations, and opens the store called `name`.
    pub fn connect(dsn: &str, name: &str) -> Result<Self> {
        if name.is_empty() {
            return Err(FabricError::InvalidInput("store name is empty".into()));
        }
        let mut client =
            Client::connect(dsn, NoTls).map_err(|e| pg_err("connect the journal store", e))?;
        migrate_client(&mut client)?;
        Ok(Self {
            client,
            name: name.to_string(),
        })
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> FabricError {
    FabricError::Corrupt {
        what: what.to_string(),
        detail: e.to_string(),
    }
}

impl Store for PgJournalStore {
    fn load(&mut self) -> Result<(Option<Snapshot>, Vec<JournalEntry>)> {
        let snap = self
            .client
            .query_opt(
                "SELECT state FROM nf_snapshots WHERE store = $1",
                &[&self.name],
            )
            .map_err(|e| pg_err("read the snapshot", e))?
            .map(|row| Snapshot::from_bytes(row.get::<_, &[u8]>(0)))
            .transpose()?;
        let after = i64::try_from(snap.as_ref().map_or(0, Snapshot::seq))
            .map_err(|e| corrupt("snapshot seq", e))?;
        let rows = self
            .client
            .query(
                "SELECT seq, at_ms, command FROM nf_journal WHERE store = $1 AND seq > $2 \
                 ORDER BY seq",
                &[&self.name, &after],
            )
            .map_err(|e| pg_err("read the journal", e))?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.get(0);
            let at_ms: i64 = row.get(1);
            let command: serde_json::Value = row.get(2);
            entries.push(JournalEntry {
                seq: u64::try_from(seq).map_err(|e| corrupt("journal seq", e))?,
                at_ms: u64::try_from(at_ms).map_err(|e| corrupt("journal at_ms", e))?,
                command: serde_json::from_value(command)
                    .map_err(|e| corrupt(&format!("journal entry {seq}"), e))?,
            });
        }
        Ok((snap, entries))
    }

    fn append(&mut self, entry: &JournalEntry) -> Result<()> {
        let command = serde_json::to_value(&entry.command).map_err(|e| corrupt("command", e))?;
        let seq = i64::try_from(entry.seq).map_err(|e| corrupt("journal seq", e))?;
        let at = i64::try_from(entry.at_ms).map_err(|e| corrupt("journal at_ms", e))?;
        self.client
            .execute(
                "INSERT INTO nf_journal (store, seq, at_ms, command) VALUES ($1, $2, $3, $4)",
                &[&self.name, &seq, &at, &command],
            )
            .map_err(|e| pg_err(format!("append journal entry {seq}"), e))?;
        Ok(())
    }

    fn write_snapshot(&mut self, seq: u64, bytes: &[u8]) -> Result<()> {
        let seq = i64::try_from(seq).map_err(|e| corrupt("snapshot seq", e))?;
        let mut tx = self
            .client
            .transaction()
            .map_err(|e| pg_err("begin snapshot", e))?;
        tx.execute(
            "INSERT INTO nf_snapshots (store, seq, state) VALUES ($1, $2, $3) \
             ON CONFLICT (store) DO UPDATE SET seq = EXCLUDED.seq, state = EXCLUDED.state",
            &[&self.name, &seq, &bytes],
        )
        .map_err(|e| pg_err("write the snapshot", e))?;
        tx.execute(
            "DELETE FROM nf_journal WHERE store = $1 AND seq <= $2",
            &[&self.name, &seq],
        )
        .map_err(|e| pg_err("trim the journal", e))?;
        tx.commit().map_err(|e| pg_err("commit the snapshot", e))
    }
}
