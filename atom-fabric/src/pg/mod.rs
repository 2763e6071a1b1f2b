//! The PostgreSQL state store: several scheduler replicas sharing one fleet.
//!
//! Two things live here:
//!
//! * [`PgReplica`], one scheduler replica of many. Nodes, jobs, placements, per-device
//!   reservations, quotas, cohorts, events and replica leases are rows in PostgreSQL (schema:
//!   `infra/sql/008_neural_fabric_schema.sql`, applied by [`migrate`]). Each placement is one
//!   transaction that locks the job and the tenant's quota row, reads the nodes' allocation
//!   counters, runs the same filter-then-score search as the embedded scheduler
//!   ([`crate::cluster::Cluster`] with the configured [`crate::ScorerSet`]) on that fresh view,
//!   and claims the chosen capacity with optimistic `version` checks on the node rows and a
//!   conditional update of the cohort row. Two replicas that chose the same capacity cannot
//!   both commit: the loser re-reads and retries. Tenant-scoped statements run with
//!   `app.tenant_id` set for the transaction as the non-owner role `atom_app`, and row-level
//!   security hides other tenants' rows.
//! * [`PgJournalStore`], the [`crate::Store`] trait on PostgreSQL: the journal and snapshots of a
//!   single-process [`crate::Fabric`], beside the embedded [`crate::DirStore`].
//!
//! Replicas hold leases (`nf_replicas`) renewed by a heartbeat thread; a job a replica accepted
//! (acknowledged) but had not finished placing when it died is handed back to the shared queue
//! once its lease expires, and placed by another replica ([`PgReplica::drain`]).

mod admission;
mod journal;
mod migrate;
mod replica;

pub use admission::{QuotaRow, admission_check, quota_check};
pub use journal::PgJournalStore;
pub use migrate::{MIGRATIONS, Migration, migrate, migrate_client};
pub use replica::{DrainReport, PgReplica, PgRequest};

use crate::error::FabricError;
use crate::scheduler::SchedulerConfig;

/// The environment variable holding the DSN of the owner role (migrations, operations).
pub const DSN_ENV: &str = "POSTGRES_DSN";
/// The environment variable holding the password of the application role, if it needs one.
pub const APP_PASSWORD_ENV: &str = "POSTGRES_APP_PASSWORD";
/// The application role tenant-scoped queries run as (created by the migrations).
pub const APP_ROLE: &str = "atom_app";

/// How a replica connects and behaves.
///
/// ```
/// use atom_fabric::pg::PgConfig;
/// let c = PgConfig::new("host=127.0.0.1 port=5432 user=postgres dbname=atom", "replica-1");
/// assert_eq!(c.app_user, "atom_app");
/// assert!(c.lease_ms > c.heartbeat_ms);
/// ```
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// The owner role's DSN (libpq key=value or URL form): runs migrations.
    pub dsn: String,
    /// The role of tenant-scoped work: must not be a superuser, the owner, or BYPASSRLS.
    pub app_user: String,
    /// Its password (None: the server's authentication needs none, e.g. peer or trust).
    pub app_password: Option<String>,
    /// This replica's unique id.
    pub replica_id: String,
    /// Lease length: after this long without a heartbeat the replica is presumed dead (ms).
    pub lease_ms: u64,
    /// Heartbeat period (ms); well below `lease_ms`.
    pub heartbeat_ms: u64,
    /// How long an operation keeps reconnecting to an unreachable server before failing (ms).
    pub reconnect_timeout_ms: u64,
    /// Apply pending migrations on start.
    pub migrate_on_start: bool,
    /// Scorers, default quota, latency table, simulation mode: as in the embedded scheduler.
    pub scheduler: SchedulerConfig,
}

impl PgConfig {
    /// A configuration with the defaults: role `atom_app`, 5 s leases renewed every second.
    pub fn new(dsn: &str, replica_id: &str) -> Self {
        Self {
            dsn: dsn.to_string(),
            app_user: APP_ROLE.to_string(),
            app_password: None,
            replica_id: replica_id.to_string(),
            lease_ms: 5_000,
            heartbeat_ms: 1_000,
            reconnect_timeout_ms: 60_000,
            migrate_on_start: true,
            scheduler: SchedulerConfig::default(),
        }
    }

    /// Reads `POSTGRES_DSN` (required) and `POSTGRES_APP_PASSWORD` (optional).
    pub fn from_env(replica_id: &str) -> crate::Result<Self> {
        let dsn = std::env::var(DSN_ENV).map_err(|_| {
            FabricError::InvalidInput(format!("{DSN_ENV} is not set (the PostgreSQL DSN)"))
        })?;
        let mut c = Self::new(&dsn, replica_id);
        c.app_password = std::env::var(APP_PASSWORD_ENV).ok();
        Ok(c)
    }

    /// The owner role's connection settings.
    pub(crate) fn owner_config(&self) -> crate::Result<postgres::Config> {
        self.dsn
            .parse::<postgres::Config>()
            .map_err(|e| pg_err("parse the DSN", e))
    }

    /// The application role's connection settings: the DSN with the user and password replaced.
    pub(crate) fn app_config(&self) -> crate::Result<postgres::Config> {
        let mut c = self.owner_config()?;
        c.user(&self.app_user);
        match &self.app_password {
            Some(p) => {
                c.password(p);
            }
            None => {
                c.password(Vec::<u8>::new());
            }
        }
        c.application_name(&format!("atom-fabric/{}", self.replica_id));
        Ok(c)
    }
}

/// Wraps a driver error.
pub(crate) fn pg_err(op: impl Into<String>, e: postgres::Error) -> FabricError {
    let detail = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    FabricError::Postgres {
        op: op.into(),
        detail,
        source: Some(e),
    }
}

/// A store failure without a driver error.
pub(crate) fn pg_fail(op: impl Into<String>, detail: impl Into<String>) -> FabricError {
    FabricError::Postgres {
        op: op.into(),
        detail: detail.into(),
        source: None,
    }
}

/// What to do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// The connection is gone (server restart, network): reconnect and retry.
    Reconnect,
    /// A serialization failure or deadlock: roll back and retry.
    Retry,
    /// Anything else: report it.
    Fail,
}

/// Classifies an error for the retry loops.
pub(crate) fn recovery_of(e: &FabricError) -> Recovery {
    let FabricError::Postgres {
        source: Some(e), ..
    } = e
    else {
        return Recovery::Fail;
    };
    if e.is_closed() {
        return Recovery::Reconnect;
    }
    if let Some(code) = e.code() {
        let c = code.code();
        return if c == "40001" || c == "40P01" {
            Recovery::Retry
        } else if c.starts_with("08") || c.starts_with("57P") {
            Recovery::Reconnect
        } else {
            Recovery::Fail
        };
    }
    if std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some()
        || e.to_string().contains("connection")
    {
        return Recovery::Reconnect;
    }
    Recovery::Fail
}

/// Quotas are `u64` with `u64::MAX` as unlimited; the database holds `BIGINT`.
pub(crate) fn to_db(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The inverse of [`to_db`] (`i64::MAX` is unlimited again; negatives are corrupt and read as 0).
pub(crate) fn from_db(v: i64) -> u64 {
    if v == i64::MAX {
        u64::MAX
    } else {
        u64::try_from(v).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_amounts_round_trip_with_unlimited() {
        assert_eq!(from_db(to_db(u64::MAX)), u64::MAX);
        assert_eq!(from_db(to_db(4000)), 4000);
        assert_eq!(to_db(u64::MAX - 1), i64::MAX);
        assert_eq!(from_db(-5), 0);
    }

    #[test]
    fn only_driver_errors_are_retried() {
        assert_eq!(recovery_of(&pg_fail("x", "y")), Recovery::Fail);
        assert_eq!(
            recovery_of(&FabricError::InvalidInput("z".into())),
            Recovery::Fail
        );
    }

    #[test]
    fn app_config_swaps_the_user() -> crate::Result<()> {
        let c = PgConfig::new("host=/tmp port=5 user=postgres dbname=atom", "r1");
        let app = c.app_config()?;
        assert_eq!(app.get_user(), Some("atom_app"));
        assert_eq!(app.get_dbname(), Some("atom"));
        assert!(PgConfig::new("port=notanumber", "r").app_config().is_err());
        Ok(())
    }
}
