//! Schema migrations: numbered SQL files applied once each, recorded in `schema_migrations`.

use postgres::{Client, NoTls};

use super::{pg_err, pg_fail};
use crate::error::Result;

/// One schema migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Its number (the file's prefix).
    pub version: i32,
    /// Its file name.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

/// The migrations, in order (from `infra/sql/`).
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 8,
    name: "008_neural_fabric_schema.sql",
    sql: include_str!("../../../infra/sql/008_neural_fabric_schema.sql"),
}];

/// An arbitrary constant: the advisory lock that serialises concurrent migration runs.
const MIGRATION_LOCK: i64 = 0x61_74_6f_6d_5f_6d_69_67; // "atom_mig"

/// Connects with `dsn` (the owner role) and applies the pending migrations.
/// Returns the versions applied now (empty when the schema was current).
///
/// ```no_run
/// let applied = atom_fabric::pg::migrate("host=127.0.0.1 user=postgres dbname=atom").unwrap();
/// println!("applied {applied:?}");
/// ```
pub fn migrate(dsn: &str) -> Result<Vec<i32>> {
    let mut client = Client::connect(dsn, NoTls).map_err(|e| pg_err("connect to migrate", e))?;
    migrate_client(&mut client)
}

/// Applies the pending migrations on an open connection of the owner role. Each migration runs
/// in its own transaction under an advisory lock, so replicas starting together apply it once.
pub fn migrate_client(client: &mut Client) -> Result<Vec<i32>> {
    // Under the migration lock, so that replicas starting together on an empty database
    // create the table once: concurrent CREATE TABLE IF NOT EXISTS can still collide on the
    // catalog (a unique violation, or "type already exists").
    let mut tx = client
        .transaction()
        .map_err(|e| pg_err("begin create schema_migrations", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(|e| pg_err("take the migration lock", e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INT PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .map_err(|e| pg_err("create schema_migrations", e))?;
    tx.commit()
        .map_err(|e| pg_err("commit create schema_migrations", e))?;
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        let mut tx = client
            .transaction()
            .map_err(|e| pg_err("begin migration", e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(|e| pg_err("take the migration lock", e))?;
        let done = tx
            .query_opt(
                "SELECT name FROM schema_migrations WHERE version = $1",
                &[&m.version],
            )
            .map_err(|e| pg_err("read schema_migrations", e))?;
        if let Some(row) = done {
            let name: String = row.get(0);
            if name != m.name {
                return Err(pg_fail(
                    "check schema_migrations",
                    format!(
                        "version {} is recorded as {name}, expected {}",
                        m.version, m.name
                    ),
                ));
            }
            continue;
        }
        tx.batch_execute(m.sql)
            .map_err(|e| pg_err(format!("apply {}", m.name), e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .map_err(|e| pg_err("record the migration", e))?;
        tx.commit()
            .map_err(|e| pg_err(format!("commit {}", m.name), e))?;
        applied.push(m.version);
    }
    Ok(applied)
}
