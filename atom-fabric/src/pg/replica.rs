//! One scheduler replica of many sharing a fleet through PostgreSQL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls, Statement, Transaction};
use serde_json::json;

use super::admission::{QuotaRow, admission_check, quota_check, request_total};
use super::{PgConfig, Recovery, from_db, migrate, pg_err, pg_fail, recovery_of, to_db};
use crate::cluster::{Cluster, Demand, Filter, NodeHealth, mask_devices};
use crate::error::{FabricError, Result};
use crate::model::{
    NodeSpec, Phase, Placement, QueueReason, ReplicaPlacement, RequestId, ScheduleRequest,
};
use crate::quota::{Quota, ResourceVector};
use crate::scheduler::Outcome;
use crate::scoring::{ScoreContext, ScoreScratch, ScorerSet};
use crate::workload::WorkloadDistribution;

/// The status of a job as its tenant sees it in the shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgRequest {
    /// The id.
    pub id: RequestId,
    /// The owner tenant.
    pub tenant_id: String,
    /// Its phase.
    pub phase: Phase,
    /// Why it waits, when queued and tried at least once.
    pub queue_reason: Option<QueueReason>,
    /// Where its replicas run: node and GPU devices, one entry per replica.
    pub placement: Vec<(String, Vec<u32>)>,
    /// The replica holding it in flight (accepted, not yet placed or queued), if any.
    pub claimed_by: Option<String>,
}

/// What one [`PgReplica::drain`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Jobs handed back to the queue because the replica holding them lost its lease.
    pub recovered: u64,
    /// Jobs this pass took from the queue.
    pub claimed: usize,
    /// Of those, the ones placed.
    pub placed: usize,
}

const SQL_SET_TENANT: &str = "SELECT set_config('app.tenant_id', $1, true)";
const SQL_SUBMIT: &str = "INSERT INTO nf_jobs (id, num, tenant_id, model_id, version, resources, \
     status, request, replicas, priority, idempotency_key, intake_key, claimed_by) \
     SELECT 'req-' || n, n, $1::text, $2::text, $3::text, $4::json, 'queued', $5::jsonb, $6::int, \
     $7::int, $8::text, $9::text, $10::text FROM nextval('nf_job_seq') AS n \
     ON CONFLICT DO NOTHING RETURNING num";
const SQL_FIND_INTAKE: &str = "SELECT num, status, claimed_by FROM nf_jobs WHERE intake_key = $1";
const SQL_FIND_IDEMPOTENT: &str =
    "SELECT num, status FROM nf_jobs WHERE tenant_id = $1 AND idempotency_key = $2";
const SQL_JOB_LOCK: &str =
    "SELECT status, claimed_by, request FROM nf_jobs WHERE id = $1 FOR UPDATE";
const SQL_QUOTA_LOCK: &str = "SELECT cohort, nominal_gpu_milli, nominal_cpu, nominal_mem, \
     nominal_tpu, borrow_gpu_milli, borrow_cpu, borrow_mem, borrow_tpu, used_gpu_milli, used_cpu, \
     used_mem, used_tpu FROM nf_quotas WHERE tenant_id = $1 FOR UPDATE";
const SQL_NODES: &str = "SELECT id, version, spec_version, status, cpu_used, mem_used, tpu_used, \
     gpu_used, cached_models FROM nf_nodes ORDER BY registered_seq";
const SQL_NODE_SPEC: &str = "SELECT spec, spec_version FROM nf_nodes WHERE id = $1";
const SQL_NODE_CLAIM: &str = "UPDATE nf_nodes SET cpu_used = $2, mem_used = $3, tpu_used = $4, \
     gpu_used = $5, cached_models = $7, version = version + 1 \
     WHERE id = $1 AND version = $6 AND status = 'healthy' RETURNING version";
const SQL_NODE_LOCK: &str =
    "SELECT cpu_used, mem_used, tpu_used, gpu_used FROM nf_nodes WHERE id = $1 FOR UPDATE";
const SQL_NODE_SET: &str = "UPDATE nf_nodes SET cpu_used = $2, mem_used = $3, tpu_used = $4, \
     gpu_used = $5, version = version + 1 WHERE id = $1";
// One placed replica and the share of each GPU device it holds, in one statement.
const SQL_PLACEMENT: &str = "WITH p AS (INSERT INTO nf_placements (job_id, replica_index, \
     tenant_id, node_id, devices, gpu_milli, cpu, mem, tpu, placed_by) \
     VALUES ($1::text, $2::int, $3::text, $4::text, $5::int[], $6::int, $7::bigint, $8::bigint, \
     $9::int, $10::text) RETURNING job_id, replica_index, tenant_id, node_id, devices, gpu_milli) \
     INSERT INTO nf_reservations (job_id, replica_index, tenant_id, node_id, device, milli) \
     SELECT p.job_id, p.replica_index, p.tenant_id, p.node_id, d, p.gpu_milli \
     FROM p, unnest(p.devices) AS d";
const SQL_QUOTA_ADD: &str = "UPDATE nf_quotas SET used_gpu_milli = used_gpu_milli + $2, \
     used_cpu = used_cpu + $3, used_mem = used_mem + $4, used_tpu = used_tpu + $5 \
     WHERE tenant_id = $1";
// The cohort half of the quota check and its claim in one statement: the row is locked from
// here to the commit, so concurrent admissions into one cohort cannot both pass.
const SQL_COHORT_ADD: &str = "UPDATE nf_cohorts SET \
     used_gpu_milli = used_gpu_milli + $2::bigint, used_cpu = used_cpu + $3::bigint, \
     used_mem = used_mem + $4::bigint, used_tpu = used_tpu + $5::bigint \
     WHERE cohort = $1::text AND used_gpu_milli::numeric + $2::bigint <= nominal_gpu_milli \
     AND used_cpu::numeric + $3::bigint <= nominal_cpu \
     AND used_mem::numeric + $4::bigint <= nominal_mem \
     AND used_tpu::numeric + $5::bigint <= nominal_tpu RETURNING 1";
// Charge the tenant's quota, mark the job placed and record the event, in one statement.
const SQL_JOB_PLACED: &str = "WITH q AS (UPDATE nf_quotas SET \
     used_gpu_milli = used_gpu_milli + $6::bigint, used_cpu = used_cpu + $7::bigint, \
     used_mem = used_mem + $8::bigint, used_tpu = used_tpu + $9::bigint \
     WHERE tenant_id = $5::text RETURNING 1), \
     j AS (UPDATE nf_jobs SET status = 'placed', claimed_by = NULL, queue_reason = NULL, \
     borrowed = $2::bool, placed_at = now(), attempts = attempts + 1 WHERE id = $1::text \
     RETURNING id, tenant_id) \
     INSERT INTO nf_events (tenant_id, job_id, kind, detail, replica_id) \
     SELECT j.tenant_id, j.id, 'placed', $4::jsonb, $3::text FROM j, q";
// Hand the job back to the shared queue with its reason, and record the event.
const SQL_JOB_QUEUED: &str = "WITH j AS (UPDATE nf_jobs SET claimed_by = NULL, \
     queue_reason = $2::text, attempts = attempts + 1 \
     WHERE id = $1::text AND status = 'queued' AND claimed_by = $3::text RETURNING id, tenant_id) \
     INSERT INTO nf_events (tenant_id, job_id, kind, detail, replica_id) \
     SELECT j.tenant_id, j.id, 'queued', $4::jsonb, $3::text FROM j";
const SQL_JOB_FINISH: &str = "UPDATE nf_jobs SET status = $2, claimed_by = NULL, \
     finished_at = now() WHERE id = $1";
const SQL_PLACEMENTS_OF: &str = "SELECT replica_index, node_id, devices, gpu_milli, cpu, mem, \
     tpu FROM nf_placements WHERE job_id = $1 ORDER BY replica_index";
const SQL_DROP_PLACEMENTS: &str = "WITH r AS (DELETE FROM nf_reservations WHERE job_id = $1) \
     DELETE FROM nf_placements WHERE job_id = $1";
const SQL_EVENT: &str = "INSERT INTO nf_events (tenant_id, job_id, kind, detail, replica_id) \
     VALUES ($1, $2, $3, $4, $5)";
const SQL_STATUS: &str =
    "SELECT tenant_id, status, queue_reason, claimed_by FROM nf_jobs WHERE id = $1";
const SQL_CLAIM_QUEUED: &str = "SELECT job_id, job_tenant FROM nf_claim_queued($1, $2)";
const SQL_RECOVER: &str = "SELECT nf_recover_expired()";
const SQL_LEASE: &str = "INSERT INTO nf_replicas (replica_id, host, pid, lease_expires) \
     VALUES ($1, $2, $3, now() + $4::bigint * interval '1 millisecond') \
     ON CONFLICT (replica_id) DO UPDATE SET lease_expires = EXCLUDED.lease_expires";

/// Statements prepared once per connection.
struct Stmts {
    set_tenant: Statement,
    submit: Statement,
    find_intake: Statement,
    find_idempotent: Statement,
    job_lock: Statement,
    quota_lock: Statement,
    nodes: Statement,
    node_spec: Statement,
    node_claim: Statement,
    node_lock: Statement,
    node_set: Statement,
    placement: Statement,
    quota_add: Statement,
    cohort_add: Statement,
    job_placed: Statement,
    job_queued: Statement,
    job_finish: Statement,
    placements_of: Statement,
    drop_placements: Statement,
    event: Statement,
    status: Statement,
    claim_queued: Statement,
    recover: Statement,
}

impl Stmts {
    fn prepare(c: &mut Client) -> Result<Self> {
        let mut p = |sql: &str| c.prepare(sql).map_err(|e| pg_err("prepare", e));
        Ok(Self {
            set_tenant: p(SQL_SET_TENANT)?,
            submit: p(SQL_SUBMIT)?,
            find_intake: p(SQL_FIND_INTAKE)?,
            find_idempotent: p(SQL_FIND_IDEMPOTENT)?,
            job_lock: p(SQL_JOB_LOCK)?,
            quota_lock: p(SQL_QUOTA_LOCK)?,
            nodes: p(SQL_NODES)?,
            node_spec: p(SQL_NODE_SPEC)?,
            node_claim: p(SQL_NODE_CLAIM)?,
            node_lock: p(SQL_NODE_LOCK)?,
            node_set: p(SQL_NODE_SET)?,
            placement: p(SQL_PLACEMENT)?,
            quota_add: p(SQL_QUOTA_ADD)?,
            cohort_add: p(SQL_COHORT_ADD)?,
            job_placed: p(SQL_JOB_PLACED)?,
            job_queued: p(SQL_JOB_QUEUED)?,
            job_finish: p(SQL_JOB_FINISH)?,
            placements_of: p(SQL_PLACEMENTS_OF)?,
            drop_placements: p(SQL_DROP_PLACEMENTS)?,
            event: p(SQL_EVENT)?,
            status: p(SQL_STATUS)?,
            claim_queued: p(SQL_CLAIM_QUEUED)?,
            recover: p(SQL_RECOVER)?,
        })
    }
}

struct Conn {
    client: Client,
    st: Stmts,
}

/// Allocations of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Usage {
    cpu: u64,
    mem: u64,
    tpu: u32,
    gpu: Vec<u32>,
}

impl Usage {
    fn from_row(cpu: i64, mem: i64, tpu: i32, gpu: &[i32]) -> Self {
        Self {
            cpu: from_db(cpu),
            mem: from_db(mem),
            tpu: u32::try_from(tpu).unwrap_or(0),
            gpu: gpu.iter().map(|&g| u32::try_from(g).unwrap_or(0)).collect(),
        }
    }
    fn gpu_db(&self) -> Vec<i32> {
        self.gpu
            .iter()
            .map(|&g| i32::try_from(g).unwrap_or(i32::MAX))
            .collect()
    }
}

/// The replica's mirror of one node: what its local [`Cluster`] holds and at which row version.
#[derive(Debug, Clone)]
struct Mirror {
    idx: u32,
    version: i64,
    spec_version: i64,
    used: Usage,
}

/// The replica's local view of the fleet: a [`Cluster`] whose allocations are brought up to date
/// from the node rows (by version) at the start of every placement.
#[derive(Debug, Default)]
struct View {
    cluster: Cluster,
    nodes: HashMap<String, Mirror>,
}

fn zero_demand() -> Demand {
    Demand {
        gpus: 0,
        milli: 0,
        cpu: 0,
        mem: 0,
        tpu: 0,
        qubits: 0,
        models: None,
    }
}

impl View {
    /// Applies `usage` to node `idx` in the local cluster (add or take away).
    fn apply(cluster: &mut Cluster, idx: u32, usage: &Usage, add: bool) {
        let base = Demand {
            cpu: usage.cpu,
            mem: usage.mem,
            tpu: usage.tpu,
            ..zero_demand()
        };
        if add {
            cluster.allocate(idx, &base, 0, 0);
        } else {
            cluster.release(idx, &base, 0);
        }
        for (i, &m) in usage.gpu.iter().enumerate() {
            if m == 0 {
                continue;
            }
            let d = Demand {
                gpus: 1,
                milli: m,
                ..zero_demand()
            };
            if add {
                cluster.allocate(idx, &d, 1u64 << i, 0);
            } else {
                cluster.release(idx, &d, 1u64 << i);
            }
        }
    }

    /// Brings one node up to date.
    fn sync_node(
        &mut self,
        tx: &mut Transaction<'_>,
        st: &Stmts,
        row: &NodeRow,
        now_ms: u64,
    ) -> Result<()> {
        let known = self.nodes.get(&row.id).cloned();
        if let Some(m) = &known
            && m.version == row.version
            && m.spec_version == row.spec_version
        {
            return Ok(());
        }
        let idx = match &known {
            Some(m) if m.spec_version == row.spec_version => {
                Self::apply(&mut self.cluster, m.idx, &m.used, false);
                m.idx
            }
            _ => {
                if let Some(m) = &known {
                    Self::apply(&mut self.cluster, m.idx, &m.used, false);
                }
                let spec_row = tx
                    .query_one(&st.node_spec, &[&row.id])
                    .map_err(|e| pg_err("read a node spec", e))?;
                let spec: NodeSpec =
                    serde_json::from_value(spec_row.get(0)).map_err(|e| FabricError::Corrupt {
                        what: format!("nf_nodes.spec of {}", row.id),
                        detail: e.to_string(),
                    })?;
                if spec.gpus.len() != row.used.gpu.len() {
                    return Err(FabricError::Corrupt {
                        what: format!("nf_nodes row {}", row.id),
                        detail: "gpu_used does not match the spec's devices".into(),
                    });
                }
                // The spec read now may be newer than the row's counters read before: use its
                // version so a second change is noticed next time.
                let (idx, _) = self.cluster.register(spec, now_ms)?;
                idx
            }
        };
        let health = match row.status.as_str() {
            "healthy" => NodeHealth::Healthy,
            "draining" => NodeHealth::Draining,
            _ => NodeHealth::Unhealthy,
        };
        if self.cluster.node_at(idx).health() != health {
            self.cluster.set_health(idx, health);
        }
        // Models cached on the node (the embedded scheduler adds a model when it places it).
        let cached: std::collections::BTreeSet<String> = row.cached.iter().cloned().collect();
        if self.cluster.node_at(idx).spec().cached_models != cached {
            self.cluster.set_cached_models(idx, cached);
        }
        Self::apply(&mut self.cluster, idx, &row.used, true);
        self.nodes.insert(
            row.id.clone(),
            Mirror {
                idx,
                version: row.version,
                spec_version: row.spec_version,
                used: row.used.clone(),
            },
        );
        Ok(())
    }

    fn mark_stale(&mut self, node: &str) {
        if let Some(m) = self.nodes.get_mut(node) {
            m.version = -1;
        }
    }
}

struct NodeRow {
    id: String,
    cached: Vec<String>,
    version: i64,
    spec_version: i64,
    status: String,
    used: Usage,
}

/// The per-replica placement machinery (separate from the connection so both can be borrowed).
struct Planner {
    view: View,
    scorers: ScorerSet,
    workload: WorkloadDistribution,
    scratch: ScoreScratch,
}

impl Planner {
    fn demand_of(&mut self, req: &ScheduleRequest) -> Demand {
        self.view.cluster.demand_of(req)
    }
}

/// Result of one placement attempt.
enum Attempt {
    Done(Outcome),
    /// A node changed under us (or the cohort filled up between read and claim): try again.
    Conflict,
    /// The tenant has no quota row yet: create the default one and try again.
    NeedQuota,
}

struct Heartbeat {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One scheduler replica of several sharing a fleet in PostgreSQL (see the [module](super)).
///
/// ```no_run
/// use atom_fabric::pg::{PgConfig, PgReplica};
/// use atom_fabric::{NodeSpec, Quota, Resources, ScheduleRequest};
/// let mut r = PgReplica::start(PgConfig::from_env("replica-1")?)?;
/// r.register_node(&NodeSpec::new("n1", 32_000, 131_072).with_gpus("A100", 8, 81_920))?;
/// r.set_quota("acme", &Quota::gpus(4))?;
/// let req = ScheduleRequest::new("acme", "llama", "v1", Resources { gpu: 1, ..Default::default() });
/// let outcome = r.schedule(req)?;
/// # Ok::<(), atom_fabric::FabricError>(())
/// ```
pub struct PgReplica {
    config: PgConfig,
    conn: Option<Conn>,
    planner: Planner,
    incarnation: String,
    intake_seq: u64,
    conflicts: u64,
    started: Instant,
    _heartbeat: Heartbeat,
}

impl std::fmt::Debug for PgReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReplica")
            .field("replica_id", &self.config.replica_id)
            .finish_non_exhaustive()
    }
}

fn connect(config: &PgConfig) -> Result<Conn> {
    let mut client = config
        .app_config()?
        .connect(NoTls)
        .map_err(|e| pg_err("connect as the application role", e))?;
    let st = Stmts::prepare(&mut client)?;
    Ok(Conn { client, st })
}

fn renew_lease(client: &mut Client, config: &PgConfig) -> Result<()> {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let pid = i32::try_from(std::process::id()).unwrap_or(0);
    let ms = to_db(config.lease_ms);
    client
        .execute(SQL_LEASE, &[&config.replica_id, &host, &pid, &ms])
        .map_err(|e| pg_err("renew the lease", e))?;
    Ok(())
}

fn spawn_heartbeat(config: PgConfig) -> Heartbeat {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::Builder::new()
        .name(format!("lease-{}", config.replica_id))
        .spawn(move || {
            let mut client: Option<Client> = None;
            let period = Duration::from_millis(config.heartbeat_ms.max(10));
            let mut next = Instant::now() + period;
            while !flag.load(Ordering::SeqCst) {
                if Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(10).min(period));
                    continue;
                }
                if client.is_none() {
                    client = config.app_config().ok().and_then(|c| c.connect(NoTls).ok());
                }
                let ok = match client.as_mut() {
                    Some(c) => renew_lease(c, &config).is_ok(),
                    None => false,
                };
                if ok {
                    next = Instant::now() + period;
                } else {
                    client = None;
                    next = Instant::now() + Duration::from_millis(100);
                    tracing::warn!(replica = %config.replica_id, "lease renewal failed; retrying");
                }
            }
        });
    match handle {
        Ok(h) => Heartbeat {
            stop,
            handle: Some(h),
        },
        Err(e) => {
            tracing::error!("cannot start the lease heartbeat thread: {e}");
            Heartbeat { stop, handle: None }
        }
    }
}

fn quota_row(row: &postgres::Row) -> (String, QuotaRow) {
    let g = |i: usize| from_db(row.get::<_, i64>(i));
    let cohort: String = row.get(0);
    let quota = Quota {
        nominal: ResourceVector {
            gpu_milli: g(1),
            cpu: g(2),
            mem: g(3),
            tpu: g(4),
        },
        borrow_limit: ResourceVector {
            gpu_milli: g(5),
            cpu: g(6),
            mem: g(7),
            tpu: g(8),
        },
        cohort: cohort.clone(),
    };
    let used = ResourceVector {
        gpu_milli: g(9),
        cpu: g(10),
        mem: g(11),
        tpu: g(12),
    };
    (cohort, QuotaRow { quota, used })
}

fn signed(v: &ResourceVector, negate: bool) -> [i64; 4] {
    let s = |x: u64| {
        let x = to_db(x);
        if negate { -x } else { x }
    };
    [s(v.gpu_milli), s(v.cpu), s(v.mem), s(v.tpu)]
}

fn phase_of(s: &str) -> Result<Phase> {
    Ok(match s {
        "queued" => Phase::Queued,
        "placed" => Phase::Placed,
        "running" => Phase::Running,
        "completed" => Phase::Completed,
        "failed" => Phase::Failed,
        "evicted" => Phase::Evicted,
        other => {
            return Err(FabricError::Corrupt {
                what: "nf_jobs.status".into(),
                detail: format!("unknown status {other:?}"),
            });
        }
    })
}

fn reason_of(s: Option<&str>) -> Option<QueueReason> {
    match s? {
        "quota" => Some(QueueReason::Quota),
        "capacity" => Some(QueueReason::Capacity),
        "constraint" => Some(QueueReason::Constraint),
        _ => None,
    }
}

fn job_key(id: RequestId) -> String {
    id.to_string()
}

impl PgReplica {
    /// Starts a replica: applies pending migrations (when configured) as the owner role,
    /// connects as the application role, takes its lease and starts the heartbeat.
    pub fn start(config: PgConfig) -> Result<Self> {
        if config.replica_id.is_empty() {
            return Err(FabricError::InvalidInput("replica id is empty".into()));
        }
        if config.heartbeat_ms >= config.lease_ms {
            return Err(FabricError::InvalidInput(format!(
                "heartbeat period {} ms must be shorter than the lease {} ms",
                config.heartbeat_ms, config.lease_ms
            )));
        }
        if config.migrate_on_start {
            migrate(&config.dsn)?;
        }
        let mut conn = connect(&config)?;
        renew_lease(&mut conn.client, &config)?;
        let scorers = ScorerSet::weighted("default", &config.scheduler.weights);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let heartbeat = spawn_heartbeat(config.clone());
        Ok(Self {
            incarnation: format!("{:x}-{}", now, std::process::id()),
            config,
            conn: Some(conn),
            planner: Planner {
                view: View::default(),
                scorers,
                workload: WorkloadDistribution::new(),
                scratch: ScoreScratch::default(),
            },
            intake_seq: 0,
            conflicts: 0,
            started: Instant::now(),
            _heartbeat: heartbeat,
        })
    }

    /// Uses another scorer set (e.g. [`ScorerSet::by_name`]).
    pub fn with_scorers(mut self, scorers: ScorerSet) -> Self {
        self.planner.scorers = scorers;
        self
    }

    /// Attempts retried so far because another replica changed a node, the cohort or a row
    /// first (optimistic conflicts, serialization failures, deadlocks).
    pub fn conflicts(&self) -> u64 {
        self.conflicts
    }

    /// This replica's id.
    pub fn replica_id(&self) -> &str {
        &self.config.replica_id
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs `f` until it is done, reconnecting after lost connections (with backoff, up to
    /// `reconnect_timeout_ms`) and retrying serialization failures, deadlocks and conflicts.
    fn retrying<T>(
        &mut self,
        op: &str,
        mut f: impl FnMut(&mut Self) -> Result<Option<T>>,
    ) -> Result<T> {
        let deadline = Instant::now() + Duration::from_millis(self.config.reconnect_timeout_ms);
        let mut backoff = Duration::from_millis(20);
        let mut conflicts = 0u32;
        loop {
            if self.conn.is_none() {
                match connect(&self.config) {
                    Ok(c) => self.conn = Some(c),
                    Err(e) => {
                        if Instant::now() >= deadline {
                            return Err(e);
                        }
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                }
            }
            match f(self) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {
                    conflicts += 1;
                    self.conflicts += 1;
                    if conflicts > 10_000 {
                        return Err(pg_fail(op, "gave up after 10000 conflicting attempts"));
                    }
                    // Let the winner commit; a little jitter breaks lockstep between replicas.
                    if conflicts > 2 {
                        let jitter = u64::from(conflicts % 7) * 50
                            + (self.intake_seq.wrapping_mul(2654435761) % 200);
                        std::thread::sleep(Duration::from_micros(jitter));
                    }
                }
                Err(e) => match recovery_of(&e) {
                    Recovery::Reconnect if Instant::now() < deadline => {
                        tracing::warn!(replica = %self.config.replica_id, "{op}: {e}; reconnecting");
                        self.conn = None;
                        // The server may have lost nothing, but our mirror's versions are
                        // unverified now: they are re-checked on the next read anyway.
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                    Recovery::Retry => {
                        conflicts += 1;
                        self.conflicts += 1;
                        if conflicts > 10_000 {
                            return Err(e);
                        }
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    fn conn(&mut self) -> Result<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| pg_fail("use the connection", "not connected"))
    }

    /// Registers a node or updates its spec. A new spec must still hold the node's allocations.
    pub fn register_node(&mut self, spec: &NodeSpec) -> Result<()> {
        spec.validate()?;
        let json =
            serde_json::to_value(spec).map_err(|e| FabricError::InvalidInput(e.to_string()))?;
        let gpus = i32::try_from(spec.gpus.len()).unwrap_or(i32::MAX);
        let (cpu, mem) = (to_db(spec.cpu_milli), to_db(spec.memory_mib));
        let tpus = i32::try_from(spec.tpus).unwrap_or(i32::MAX);
        let id = spec.id.clone();
        let cached: Vec<String> = spec.cached_models.iter().cloned().collect();
        let n = self.retrying("register a node", |s| {
            let c = s.conn()?;
            let r = c.client.execute(
                "INSERT INTO nf_nodes (id, gpus, status, spec, cpu_milli, memory_mib, tpus, gpu_used, \
                 cached_models, last_seen) VALUES ($1, $2::int, 'healthy', $3, $4, $5, $6, \
                 array_fill(0, ARRAY[$2::int]), $7, now()) \
                 ON CONFLICT (id) DO UPDATE SET spec = EXCLUDED.spec, \
                   spec_version = nf_nodes.spec_version + 1, cpu_milli = EXCLUDED.cpu_milli, \
                   memory_mib = EXCLUDED.memory_mib, tpus = EXCLUDED.tpus, gpus = EXCLUDED.gpus, \
                   cached_models = EXCLUDED.cached_models, \
                   gpu_used = CASE WHEN nf_nodes.gpus = EXCLUDED.gpus THEN nf_nodes.gpu_used \
                                   ELSE EXCLUDED.gpu_used END, \
                   status = 'healthy', last_seen = now(), version = nf_nodes.version + 1 \
                 WHERE nf_nodes.gpus = EXCLUDED.gpus OR 0 = ALL (nf_nodes.gpu_used)",
                &[&id, &gpus, &json, &cpu, &mem, &tpus, &cached],
            );
            match r {
                Ok(n) => Ok(Some(n)),
                Err(e) if e.code().map(|c| c.code()) == Some("23514") => {
                    Err(FabricError::NodeSpecConflict {
                        node: id.clone(),
                        detail: "allocated CPU, memory or TPUs exceed the new spec".into(),
                    })
                }
                Err(e) => Err(pg_err("register a node", e)),
            }
        })?;
        if n == 0 {
            return Err(FabricError::NodeSpecConflict {
                node: spec.id.clone(),
                detail: "GPU devices in use and the new spec has a different device count".into(),
            });
        }
        Ok(())
    }

    /// Sets a node's status: `Healthy` opens it, `Draining` or `Unhealthy` stop new placements
    /// (work already placed stays).
    pub fn set_node_health(&mut self, node: &str, health: NodeHealth) -> Result<()> {
        let status = match health {
            NodeHealth::Healthy => "healthy",
            NodeHealth::Draining => "draining",
            NodeHealth::Unhealthy => "unhealthy",
        };
        let node = node.to_string();
        let n = self.retrying("set node health", |s| {
            let c = s.conn()?;
            c.client
                .execute(
                    "UPDATE nf_nodes SET status = $2, version = version + 1 WHERE id = $1",
                    &[&node, &status],
                )
                .map(Some)
                .map_err(|e| pg_err("set node health", e))
        })?;
        if n == 0 {
            return Err(FabricError::NodeNotFound(node));
        }
        Ok(())
    }

    /// Sets a tenant's quota (creating its cohort if needed). Use already placed stays counted;
    /// a cohort whose use would exceed its new nominal sum is refused by the database.
    pub fn set_quota(&mut self, tenant: &str, quota: &Quota) -> Result<()> {
        if tenant.is_empty() {
            return Err(FabricError::InvalidInput("tenant_id is empty".into()));
        }
        if quota.cohort.is_empty() {
            return Err(FabricError::InvalidInput("quota cohort is empty".into()));
        }
        let tenant = tenant.to_string();
        let quota = quota.clone();
        self.retrying("set a quota", |s| {
            let c = s.conn()?;
            set_quota_tx(c, &tenant, &quota).map(Some)
        })
    }

    /// Accepts a request: checks policies (P2, P3, P5 ceiling, P6), stores it as queued and
    /// held by this replica, and returns its id once committed (acknowledged). A request with
    /// a known idempotency key returns the first request's id. Place it with
    /// [`PgReplica::place`]; if this replica dies first, another one places it after the lease
    /// expires.
    pub fn submit(&mut self, req: &ScheduleRequest) -> Result<Outcome> {
        self.intake_seq += 1;
        let intake = format!(
            "{}:{}:{}",
            self.config.replica_id, self.incarnation, self.intake_seq
        );
        let request =
            serde_json::to_value(req).map_err(|e| FabricError::InvalidInput(e.to_string()))?;
        let resources = serde_json::to_value(req.resources)
            .map_err(|e| FabricError::InvalidInput(e.to_string()))?;
        let replicas = i32::try_from(req.replicas).unwrap_or(i32::MAX);
        let me = self.config.replica_id.clone();
        let default_quota = Quota::gpus(self.config.scheduler.max_tenant_gpus);
        let config = self.config.scheduler.clone();
        let out = self.retrying("submit a request", |s| {
            let c = s.conn()?;
            let mut tx = c.client.transaction().map_err(|e| pg_err("begin", e))?;
            tx.execute(&c.st.set_tenant, &[&req.tenant_id])
                .map_err(|e| pg_err("set the tenant", e))?;
            // P5 ceiling against the tenant's quota (the default one if it has none yet).
            let quota = tx
                .query_opt(
                    "SELECT cohort, nominal_gpu_milli, nominal_cpu, nominal_mem, nominal_tpu, \
                     borrow_gpu_milli, borrow_cpu, borrow_mem, borrow_tpu, used_gpu_milli, \
                     used_cpu, used_mem, used_tpu FROM nf_quotas WHERE tenant_id = $1",
                    &[&req.tenant_id],
                )
                .map_err(|e| pg_err("read the quota", e))?
                .map(|r| quota_row(&r).1.quota)
                .unwrap_or_else(|| default_quota.clone());
            admission_check(req, &config, &quota)?;
            let rows = tx
                .query(
                    &c.st.submit,
                    &[
                        &req.tenant_id,
                        &req.model_id,
                        &req.model_version,
                        &resources,
                        &request,
                        &replicas,
                        &req.priority,
                        &req.idempotency_key,
                        &intake,
                        &me,
                    ],
                )
                .map_err(|e| pg_err("insert the request", e))?;
            let out = if let Some(r) = rows.first() {
                (r.get::<_, i64>(0), None)
            } else if let Some(r) = tx
                .query_opt(&c.st.find_intake, &[&intake])
                .map_err(|e| pg_err("find the request", e))?
            {
                // Our own earlier attempt committed but its reply was lost.
                (r.get::<_, i64>(0), None)
            } else if let Some(key) = &req.idempotency_key
                && let Some(r) = tx
                    .query_opt(&c.st.find_idempotent, &[&req.tenant_id, key])
                    .map_err(|e| pg_err("find the request", e))?
            {
                (r.get::<_, i64>(0), Some(phase_of(r.get::<_, &str>(1))?))
            } else {
                return Err(pg_fail(
                    "insert the request",
                    "conflict without a matching request",
                ));
            };
            tx.commit().map_err(|e| pg_err("commit the request", e))?;
            Ok(Some(out))
        })?;
        let id = RequestId(u64::try_from(out.0).unwrap_or(0));
        Ok(match out.1 {
            Some(phase) => Outcome::Existing {
                request_id: id,
                phase,
            },
            None => {
                let d = self.planner.demand_of(req);
                for _ in 0..req.replicas.min(64) {
                    self.planner.workload.observe(&d);
                }
                Outcome::Queued {
                    request_id: id,
                    reason: QueueReason::Capacity,
                    detail: "accepted, not yet placed".into(),
                }
            }
        })
    }

    /// Accepts a request and places it now if quota and capacity allow; otherwise it waits in
    /// the shared queue (placed later by [`PgReplica::drain`] on any replica).
    pub fn schedule(&mut self, req: ScheduleRequest) -> Result<Outcome> {
        match self.submit(&req)? {
            Outcome::Queued { request_id, .. } => self.place(&req.tenant_id, request_id),
            other => Ok(other),
        }
    }

    /// Tries to place a request this replica holds. Returns `Placed`, `Queued` (it went back to
    /// the shared queue with the reason), or `Phase` when it is no longer queued or no longer
    /// held by this replica (placed or cancelled meanwhile).
    pub fn place(&mut self, tenant: &str, id: RequestId) -> Result<Outcome> {
        let job = job_key(id);
        let tenant = tenant.to_string();
        let default_quota = Quota::gpus(self.config.scheduler.max_tenant_gpus);
        self.retrying("place a request", |s| {
            let now_ms = s.now_ms();
            let me = s.config.replica_id.clone();
            let Some(c) = s.conn.as_mut() else {
                return Err(pg_fail("place", "not connected"));
            };
            match try_place(c, &mut s.planner, &s.config, &me, &job, &tenant, id, now_ms)? {
                Attempt::Done(o) => Ok(Some(o)),
                Attempt::Conflict => Ok(None),
                Attempt::NeedQuota => {
                    ensure_quota(c, &tenant, &default_quota)?;
                    Ok(None)
                }
            }
        })
    }

    /// Completes (releases) a request: frees its capacity and quota, or cancels it while queued.
    pub fn release(&mut self, tenant: &str, id: RequestId) -> Result<Outcome> {
        self.finish(tenant, id, Phase::Completed)
    }

    /// Ends a request in a terminal phase (`Completed`, `Failed` or `Evicted`).
    pub fn finish(&mut self, tenant: &str, id: RequestId, phase: Phase) -> Result<Outcome> {
        if !phase.is_terminal() {
            return Err(FabricError::InvalidInput(format!(
                "{phase} is not a terminal phase"
            )));
        }
        let job = job_key(id);
        let tenant = tenant.to_string();
        let me = self.config.replica_id.clone();
        let touched = self.retrying("release a request", |s| {
            let c = s.conn()?;
            finish_tx(c, &me, &job, &tenant, phase).map(Some)
        })?;
        let (result, nodes) = touched;
        for n in nodes {
            self.planner.view.mark_stale(&n);
        }
        Ok(Outcome::Phase {
            request_id: id,
            phase: result,
        })
    }

    /// Reclaims work of replicas whose lease expired, then takes up to `max` jobs from the
    /// shared queue (highest priority, least tried, oldest first) and tries to place each.
    pub fn drain(&mut self, max: usize) -> Result<DrainReport> {
        let recovered = self.recover_expired()?;
        let me = self.config.replica_id.clone();
        let limit = i32::try_from(max).unwrap_or(i32::MAX);
        let claimed: Vec<(String, String)> = self.retrying("claim queued work", |s| {
            let c = s.conn()?;
            let rows = c
                .client
                .query(&c.st.claim_queued, &[&me, &limit])
                .map_err(|e| pg_err("claim queued work", e))?;
            Ok(Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
        })?;
        let mut report = DrainReport {
            recovered,
            claimed: claimed.len(),
            placed: 0,
        };
        for (job, tenant) in claimed {
            let id: RequestId = job.parse()?;
            if matches!(self.place(&tenant, id)?, Outcome::Placed { .. }) {
                report.placed += 1;
            }
        }
        Ok(report)
    }

    /// Drops replicas whose lease expired and hands their in-flight jobs back to the queue.
    /// Returns how many jobs were handed back.
    pub fn recover_expired(&mut self) -> Result<u64> {
        self.retrying("recover expired leases", |s| {
            let c = s.conn()?;
            let n: i64 = c
                .client
                .query_one(&c.st.recover, &[])
                .map_err(|e| pg_err("recover expired leases", e))?
                .get(0);
            Ok(Some(u64::try_from(n).unwrap_or(0)))
        })
    }

    /// The status of a request, as its tenant sees it (other tenants' ids look missing).
    pub fn status(&mut self, tenant: &str, id: RequestId) -> Result<PgRequest> {
        let job = job_key(id);
        let tenant = tenant.to_string();
        self.retrying("read a request", |s| {
            let c = s.conn()?;
            let mut tx = c.client.transaction().map_err(|e| pg_err("begin", e))?;
            tx.execute(&c.st.set_tenant, &[&tenant])
                .map_err(|e| pg_err("set the tenant", e))?;
            let Some(row) = tx
                .query_opt(&c.st.status, &[&job])
                .map_err(|e| pg_err("read the request", e))?
            else {
                return Err(FabricError::RequestNotFound(job.clone()));
            };
            let placement = tx
                .query(&c.st.placements_of, &[&job])
                .map_err(|e| pg_err("read the placement", e))?
                .iter()
                .map(|r| {
                    let devs: Vec<i32> = r.get(2);
                    (
                        r.get::<_, String>(1),
                        devs.iter()
                            .map(|&d| u32::try_from(d).unwrap_or(0))
                            .collect(),
                    )
                })
                .collect();
            let out = PgRequest {
                id,
                tenant_id: row.get(0),
                phase: phase_of(row.get::<_, &str>(1))?,
                queue_reason: reason_of(row.get::<_, Option<&str>>(2)),
                placement,
                claimed_by: row.get(3),
            };
            tx.commit().map_err(|e| pg_err("commit", e))?;
            Ok(Some(out))
        })
    }

    /// Stops cleanly: drops the lease and hands any job still held back to the queue at once.
    pub fn shutdown(mut self) -> Result<()> {
        let me = self.config.replica_id.clone();
        self.retrying("drop the lease", |s| {
            let c = s.conn()?;
            c.client
                .execute("DELETE FROM nf_replicas WHERE replica_id = $1", &[&me])
                .map_err(|e| pg_err("drop the lease", e))?;
            c.client
                .query_one(&c.st.recover, &[])
                .map_err(|e| pg_err("hand back held jobs", e))?;
            Ok(Some(()))
        })
    }
}

fn set_quota_tx(c: &mut Conn, tenant: &str, quota: &Quota) -> Result<()> {
    let mut tx = c.client.transaction().map_err(|e| pg_err("begin", e))?;
    tx.execute(&c.st.set_tenant, &[&tenant])
        .map_err(|e| pg_err("set the tenant", e))?;
    let old = tx
        .query_opt(&c.st.quota_lock, &[&tenant])
        .map_err(|e| pg_err("lock the quota", e))?
        .map(|r| quota_row(&r));
    let (used, old_nominal, old_cohort) = match &old {
        Some((cohort, row)) => (row.used, row.quota.nominal, Some(cohort.clone())),
        None => (ResourceVector::ZERO, ResourceVector::ZERO, None),
    };
    // Cohort rows are locked in name order (the same order everywhere avoids deadlocks).
    let mut cohorts: Vec<String> = vec![quota.cohort.clone()];
    if let Some(o) = &old_cohort
        && o != &quota.cohort
    {
        cohorts.push(o.clone());
    }
    cohorts.sort();
    let mut sums: BTreeMap<String, (ResourceVector, ResourceVector)> = BTreeMap::new();
    for name in &cohorts {
        tx.execute(
            "INSERT INTO nf_cohorts (cohort) VALUES ($1) ON CONFLICT DO NOTHING",
            &[name],
        )
        .map_err(|e| pg_err("create the cohort", e))?;
        let r = tx
            .query_one(
                "SELECT nominal_gpu_milli, nominal_cpu, nominal_mem, nominal_tpu, used_gpu_milli, \
                 used_cpu, used_mem, used_tpu FROM nf_cohorts WHERE cohort = $1 FOR UPDATE",
                &[name],
            )
            .map_err(|e| pg_err("lock the cohort", e))?;
        let g = |i: usize| from_db(r.get::<_, i64>(i));
        sums.insert(
            name.clone(),
            (
                ResourceVector {
                    gpu_milli: g(0),
                    cpu: g(1),
                    mem: g(2),
                    tpu: g(3),
                },
                ResourceVector {
                    gpu_milli: g(4),
                    cpu: g(5),
                    mem: g(6),
                    tpu: g(7),
                },
            ),
        );
    }
    // Nominal sums saturate: once a member is unlimited in a resource, so is its cohort.
    if let Some(o) = &old_cohort
        && let Some(e) = sums.get_mut(o)
    {
        e.0 = sub_nominal(e.0, old_nominal);
        e.1 = e.1.saturating_sub(used);
    }
    if let Some(e) = sums.get_mut(&quota.cohort) {
        e.0 = e.0.saturating_add(quota.nominal);
        e.1 = e.1.saturating_add(used);
    }
    for (name, (nominal, cused)) in &sums {
        let n = signed(nominal, false);
        let u = signed(cused, false);
        tx.execute(
            "UPDATE nf_cohorts SET nominal_gpu_milli = $2, nominal_cpu = $3, nominal_mem = $4, \
             nominal_tpu = $5, used_gpu_milli = $6, used_cpu = $7, used_mem = $8, used_tpu = $9 \
             WHERE cohort = $1",
            &[name, &n[0], &n[1], &n[2], &n[3], &u[0], &u[1], &u[2], &u[3]],
        )
        .map_err(|e| pg_err("update the cohort", e))?;
    }
    let n = signed(&quota.nominal, false);
    let b = signed(&quota.borrow_limit, false);
    tx.execute(
        "INSERT INTO nf_quotas (tenant_id, cohort, nominal_gpu_milli, nominal_cpu, nominal_mem, \
         nominal_tpu, borrow_gpu_milli, borrow_cpu, borrow_mem, borrow_tpu) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (tenant_id) DO UPDATE SET cohort = EXCLUDED.cohort, \
         nominal_gpu_milli = EXCLUDED.nominal_gpu_milli, nominal_cpu = EXCLUDED.nominal_cpu, \
         nominal_mem = EXCLUDED.nominal_mem, nominal_tpu = EXCLUDED.nominal_tpu, \
         borrow_gpu_milli = EXCLUDED.borrow_gpu_milli, borrow_cpu = EXCLUDED.borrow_cpu, \
         borrow_mem = EXCLUDED.borrow_mem, borrow_tpu = EXCLUDED.borrow_tpu",
        &[
            &tenant,
            &quota.cohort,
            &n[0],
            &n[1],
            &n[2],
            &n[3],
            &b[0],
            &b[1],
            &b[2],
            &b[3],
        ],
    )
    .map_err(|e| pg_err("write the quota", e))?;
    tx.commit().map_err(|e| pg_err("commit the quota", e))
}

/// Subtracts a member's nominal quota from a cohort's sum; unlimited amounts stay unlimited.
fn sub_nominal(sum: ResourceVector, member: ResourceVector) -> ResourceVector {
    let f = |s: u64, m: u64| {
        if s == u64::MAX {
            s
        } else {
            s.saturating_sub(m)
        }
    };
    ResourceVector {
        gpu_milli: f(sum.gpu_milli, member.gpu_milli),
        cpu: f(sum.cpu, member.cpu),
        mem: f(sum.mem, member.mem),
        tpu: f(sum.tpu, member.tpu),
    }
}

fn ensure_quota(c: &mut Conn, tenant: &str, default: &Quota) -> Result<()> {
    let exists = {
        let mut tx = c.client.transaction().map_err(|e| pg_err("begin", e))?;
        tx.execute(&c.st.set_tenant, &[&tenant])
            .map_err(|e| pg_err("set the tenant", e))?;
        let e = tx
            .query_opt("SELECT 1 FROM nf_quotas WHERE tenant_id = $1", &[&tenant])
            .map_err(|e| pg_err("read the quota", e))?
            .is_some();
        tx.commit().map_err(|e| pg_err("commit", e))?;
        e
    };
    if exists {
        return Ok(());
    }
    match set_quota_tx(c, tenant, default) {
        // Another replica created it first.
        Err(FabricError::Postgres {
            source: Some(e), ..
        }) if e.code().map(|c| c.code()) == Some("23505") => Ok(()),
        other => other,
    }
}

#[allow(clippy::too_many_arguments)]
fn try_place(
    c: &mut Conn,
    planner: &mut Planner,
    config: &PgConfig,
    me: &str,
    job: &str,
    tenant: &str,
    id: RequestId,
    now_ms: u64,
) -> Result<Attempt> {
    let st = &c.st;
    let mut tx = c.client.transaction().map_err(|e| pg_err("begin", e))?;
    tx.execute(&st.set_tenant, &[&tenant])
        .map_err(|e| pg_err("set the tenant", e))?;
    let Some(row) = tx
        .query_opt(&st.job_lock, &[&job])
        .map_err(|e| pg_err("lock the request", e))?
    else {
        return Err(FabricError::RequestNotFound(job.to_string()));
    };
    let status: &str = row.get(0);
    let claimed_by: Option<&str> = row.get(1);
    if status != "queued" || claimed_by != Some(me) {
        return Ok(Attempt::Done(Outcome::Phase {
            request_id: id,
            phase: phase_of(status)?,
        }));
    }
    let req: ScheduleRequest =
        serde_json::from_value(row.get(2)).map_err(|e| FabricError::Corrupt {
            what: format!("nf_jobs.request of {job}"),
            detail: e.to_string(),
        })?;
    let Some(qrow) = tx
        .query_opt(&st.quota_lock, &[&tenant])
        .map_err(|e| pg_err("lock the quota", e))?
    else {
        return Ok(Attempt::NeedQuota);
    };
    let (cohort, quota) = quota_row(&qrow);
    let total = request_total(&req);
    let queue = |mut tx: Transaction<'_>, reason: QueueReason, detail: String| -> Result<Attempt> {
        let ev = json!({"reason": reason.as_str(), "detail": detail});
        tx.execute(&st.job_queued, &[&job, &reason.as_str(), &me, &ev])
            .map_err(|e| pg_err("queue the request", e))?;
        tx.commit().map_err(|e| pg_err("commit", e))?;
        Ok(Attempt::Done(Outcome::Queued {
            request_id: id,
            reason,
            detail,
        }))
    };
    let borrowed = match quota_check(&quota, &total) {
        Ok(b) => b,
        Err(res) => {
            return queue(
                tx,
                QueueReason::Quota,
                format!("{res} of tenant {tenant} would exceed its quota"),
            );
        }
    };
    // The fleet as it is now.
    let rows = tx
        .query(&st.nodes, &[])
        .map_err(|e| pg_err("read the nodes", e))?;
    for r in &rows {
        let gpu: Vec<i32> = r.get(7);
        let nr = NodeRow {
            id: r.get(0),
            cached: r.get(8),
            version: r.get(1),
            spec_version: r.get(2),
            status: r.get::<_, Option<String>>(3).unwrap_or_default(),
            used: Usage::from_row(r.get(4), r.get(5), r.get(6), &gpu),
        };
        planner.view.sync_node(&mut tx, st, &nr, now_ms)?;
    }
    // Filter then score, replica by replica, allocating locally as the embedded scheduler does.
    let demand = planner.demand_of(&req);
    let filter = Filter {
        constraints: &req.constraints,
        latency: &config.scheduler.latency,
    };
    let mut founds: Vec<(u32, u64, crate::model::ScoreBreakdown)> = Vec::new();
    for _ in 0..req.replicas {
        let p = &mut *planner;
        let found = p.view.cluster.find(
            &demand,
            &filter,
            &p.scorers,
            &p.workload,
            &req.model_id,
            config.scheduler.max_candidates,
            &mut p.scratch,
        );
        let Some(f) = found else {
            for &(node, mask, _) in &founds {
                p.view.cluster.release(node, &demand, mask);
            }
            let reason = if p.view.cluster.any_static_ok(&demand, &filter) {
                QueueReason::Capacity
            } else {
                QueueReason::Constraint
            };
            let detail = format!(
                "no node fits replica {} of {}",
                founds.len() + 1,
                req.replicas
            );
            return queue(tx, reason, detail);
        };
        let ctx = ScoreContext {
            stats: p.view.cluster.stats(),
            workload: &p.workload,
            latency: &config.scheduler.latency,
            constraints: &req.constraints,
            model_id: &req.model_id,
        };
        let mut b = p.scorers.breakdown(
            p.view.cluster.node_at(f.node),
            &demand,
            f.mask,
            &ctx,
            &mut p.scratch,
        );
        b.candidates = f.candidates;
        p.view.cluster.allocate(f.node, &demand, f.mask, id.0);
        founds.push((f.node, f.mask, b));
    }
    for &(node, _, _) in &founds {
        planner.view.cluster.cache_model(node, &req.model_id);
    }
    // Keep the mirror exact: the local cluster now also holds this request's allocations.
    let mut touched: BTreeMap<String, u32> = BTreeMap::new();
    for &(node, _, _) in &founds {
        let nid = planner.view.cluster.node_at(node).id().to_string();
        touched.insert(nid, node);
    }
    for (nid, &idx) in &touched {
        let n = planner.view.cluster.node_at(idx);
        let used = Usage {
            cpu: n.spec().cpu_milli - n.cpu_free(),
            mem: n.spec().memory_mib - n.mem_free(),
            tpu: n.spec().tpus - n.tpu_free(),
            gpu: (0..n.gpu_count()).map(|i| 1000 - n.gpu_free(i)).collect(),
        };
        if let Some(m) = planner.view.nodes.get_mut(nid) {
            m.used = used;
        }
    }
    // Claim: each node row must still be at the version the search saw (name order). Until
    // the commit succeeds the touched mirrors count as stale, so any failure below (conflict,
    // lost connection) makes the next search re-read them.
    let mut seen = Vec::with_capacity(touched.len());
    for nid in touched.keys() {
        if let Some(m) = planner.view.nodes.get_mut(nid) {
            seen.push((nid.clone(), m.version));
            m.version = -1;
        }
    }
    let mut new_versions = Vec::with_capacity(touched.len());
    for (nid, version) in &seen {
        let Some(m) = planner.view.nodes.get(nid) else {
            continue;
        };
        let u = &m.used;
        let (cpu, mem) = (to_db(u.cpu), to_db(u.mem));
        let tpu = i32::try_from(u.tpu).unwrap_or(i32::MAX);
        let gpu = u.gpu_db();
        let cached: Vec<&str> = planner
            .view
            .cluster
            .node_at(m.idx)
            .spec()
            .cached_models
            .iter()
            .map(String::as_str)
            .collect();
        let r = tx
            .query_opt(
                &st.node_claim,
                &[nid, &cpu, &mem, &tpu, &gpu, version, &cached],
            )
            .map_err(|e| pg_err("claim node capacity", e))?;
        match r {
            Some(r) => new_versions.push((nid.clone(), r.get::<_, i64>(0))),
            None => return Ok(Attempt::Conflict),
        }
    }
    let milli = i32::try_from(demand.milli).unwrap_or(i32::MAX);
    let (dcpu, dmem) = (to_db(demand.cpu), to_db(demand.mem));
    let dtpu = i32::try_from(demand.tpu).unwrap_or(i32::MAX);
    let mut replicas = Vec::with_capacity(founds.len());
    for (k, (node, mask, b)) in founds.into_iter().enumerate() {
        let nid = planner.view.cluster.node_at(node).id().to_string();
        let devices = mask_devices(mask);
        let devs: Vec<i32> = devices
            .iter()
            .map(|&d| i32::try_from(d).unwrap_or(i32::MAX))
            .collect();
        let k = i32::try_from(k).unwrap_or(i32::MAX);
        tx.execute(
            &st.placement,
            &[
                &job, &k, &tenant, &nid, &devs, &milli, &dcpu, &dmem, &dtpu, &me,
            ],
        )
        .map_err(|e| pg_err("record the placement", e))?;
        replicas.push(ReplicaPlacement {
            node: nid,
            devices,
            score: Some(b),
        });
    }
    let d = signed(&total, false);
    let nodes: Vec<&str> = replicas.iter().map(|r| r.node.as_str()).collect();
    let ev = json!({"nodes": nodes, "borrowed": borrowed});
    tx.execute(
        &st.job_placed,
        &[
            &job, &borrowed, &me, &ev, &tenant, &d[0], &d[1], &d[2], &d[3],
        ],
    )
    .map_err(|e| pg_err("charge the quota and mark the request placed", e))?;
    // Last before the commit, so the hot cohort row is locked as briefly as possible.
    let ok = tx
        .query_opt(&st.cohort_add, &[&cohort, &d[0], &d[1], &d[2], &d[3]])
        .map_err(|e| pg_err("charge the cohort", e))?
        .is_some();
    if !ok {
        drop(tx);
        // The cohort is full: queue it (a fresh transaction; the claim above was rolled back).
        let mut tx = c.client.transaction().map_err(|e| pg_err("begin", e))?;
        tx.execute(&c.st.set_tenant, &[&tenant])
            .map_err(|e| pg_err("set the tenant", e))?;
        let detail = format!("cohort {cohort} has no idle quota left");
        let ev = json!({"reason": "quota", "detail": detail});
        tx.execute(&c.st.job_queued, &[&job, &"quota", &me, &ev])
            .map_err(|e| pg_err("queue the request", e))?;
        tx.commit().map_err(|e| pg_err("commit", e))?;
        return Ok(Attempt::Done(Outcome::Queued {
            request_id: id,
            reason: QueueReason::Quota,
            detail,
        }));
    }
    match tx.commit() {
        Ok(()) => {
            for (nid, v) in new_versions {
                if let Some(m) = planner.view.nodes.get_mut(&nid) {
                    m.version = v;
                }
            }
            Ok(Attempt::Done(Outcome::Placed {
                request_id: id,
                placement: std::sync::Arc::new(Placement { replicas, borrowed }),
            }))
        }
        Err(e) => Err(pg_err("commit the placement", e)),
    }
}

/// Ends a job; returns its phase afterwards and the nodes whose counters changed.
fn finish_tx(
    c: &mut Conn,
    me: &str,
    job: &str,
    tenant: &str,
    phase: Phase,
) -> Result<(Phase, Vec<String>)> {
    let st = &c.st;
    let mut tx = c.client.transaction().map_err(|e| pg_err("begin", e))?;
    tx.execute(&st.set_tenant, &[&tenant])
        .map_err(|e| pg_err("set the tenant", e))?;
    let Some(row) = tx
        .query_opt(&st.job_lock, &[&job])
        .map_err(|e| pg_err("lock the request", e))?
    else {
        return Err(FabricError::RequestNotFound(job.to_string()));
    };
    let now = phase_of(row.get::<_, &str>(0))?;
    if now.is_terminal() {
        return Ok((now, Vec::new()));
    }
    let mut touched = Vec::new();
    if now.holds_capacity() {
        let qrow = tx
            .query_one(&st.quota_lock, &[&tenant])
            .map_err(|e| pg_err("lock the quota", e))?;
        let (cohort, _) = quota_row(&qrow);
        let places = tx
            .query(&st.placements_of, &[&job])
            .map_err(|e| pg_err("read the placement", e))?;
        // Per node: CPU, memory, TPUs and per-device shares to give back.
        let mut back: BTreeMap<String, (u64, u64, u32, BTreeMap<usize, u32>)> = BTreeMap::new();
        let mut total = ResourceVector::ZERO;
        for p in &places {
            let node: String = p.get(1);
            let devs: Vec<i32> = p.get(2);
            let milli = u32::try_from(p.get::<_, i32>(3)).unwrap_or(0);
            let cpu = from_db(p.get(4));
            let mem = from_db(p.get(5));
            let tpu = u32::try_from(p.get::<_, i32>(6)).unwrap_or(0);
            let e = back.entry(node).or_default();
            e.0 += cpu;
            e.1 += mem;
            e.2 += tpu;
            for d in devs {
                *e.3.entry(usize::try_from(d).unwrap_or(usize::MAX))
                    .or_default() += milli;
            }
            total = total.saturating_add(ResourceVector {
                gpu_milli: u64::from(milli) * p.get::<_, Vec<i32>>(2).len() as u64,
                cpu,
                mem,
                tpu: u64::from(tpu),
            });
        }
        for (node, (cpu, mem, tpu, devs)) in &back {
            let r = tx
                .query_one(&st.node_lock, &[node])
                .map_err(|e| pg_err("lock a node", e))?;
            let gpu: Vec<i32> = r.get(3);
            let mut u = Usage::from_row(r.get(0), r.get(1), r.get(2), &gpu);
            let bad = || FabricError::Corrupt {
                what: format!("nf_nodes row {node}"),
                detail: format!("counters below the placements of {job}"),
            };
            u.cpu = u.cpu.checked_sub(*cpu).ok_or_else(bad)?;
            u.mem = u.mem.checked_sub(*mem).ok_or_else(bad)?;
            u.tpu = u.tpu.checked_sub(*tpu).ok_or_else(bad)?;
            for (&d, &m) in devs {
                let slot = u.gpu.get_mut(d).ok_or_else(bad)?;
                *slot = slot.checked_sub(m).ok_or_else(bad)?;
            }
            let (cpu, mem) = (to_db(u.cpu), to_db(u.mem));
            let tpu = i32::try_from(u.tpu).unwrap_or(i32::MAX);
            tx.execute(&st.node_set, &[node, &cpu, &mem, &tpu, &u.gpu_db()])
                .map_err(|e| pg_err("give back node capacity", e))?;
            touched.push(node.clone());
        }
        tx.execute(&st.drop_placements, &[&job])
            .map_err(|e| pg_err("drop the placement", e))?;
        let d = signed(&total, true);
        tx.execute(&st.quota_add, &[&tenant, &d[0], &d[1], &d[2], &d[3]])
            .map_err(|e| pg_err("refund the quota", e))?;
        tx.query_one(&st.cohort_add, &[&cohort, &d[0], &d[1], &d[2], &d[3]])
            .map_err(|e| pg_err("refund the cohort", e))?;
    }
    tx.execute(&st.job_finish, &[&job, &phase.as_str()])
        .map_err(|e| pg_err("finish the request", e))?;
    tx.execute(
        &st.event,
        &[
            &tenant,
            &job,
            &phase.as_str(),
            &json!({"was": now.as_str()}),
            &me,
        ],
    )
    .map_err(|e| pg_err("record an event", e))?;
    tx.commit().map_err(|e| pg_err("commit", e))?;
    Ok((phase, touched))
}
