//! The scheduler: a synchronous, deterministic state machine driven by [`Command`]s.
//!
//! Every command carries the time from an injected clock, so applying the same commands to the
//! same state always gives the same state, outcomes and events (this is what the journal relies
//! on). A command that returns an error changes nothing except, for policy refusals, the outbox.

use atom_policy::policy::{Decision, PolicyId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use crate::cluster::{Cluster, Demand, Filter, Node, NodeHealth, mask_devices};
use crate::error::{FabricError, Result};
use crate::event::{Event, EventKind, EvictReason};
use crate::model::{
    Constraints, NodeSpec, Phase, Placement, QueueReason, ReplicaPlacement, RequestId,
    RequestStatus, Resources, ScheduleRequest,
};
use crate::quota::{Quota, RESOURCES, ResourceVector};
use crate::scoring::{LatencyTable, ScoreContext, ScoreScratch, ScoreWeights, ScorerSet};
use crate::workload::WorkloadDistribution;

/// HashMap with a fast non-cryptographic hasher (lookups only; iteration order never matters).
type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<crate::scoring::FastHasher>>;

/// Scheduler configuration. Must be the same when a journal is replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerConfig {
    /// Default GPU quota of a tenant without an explicit one (`MAX_TENANT_GPUs`).
    pub max_tenant_gpus: u64,
    /// A node that sent no heartbeat for this long is marked unhealthy (ms).
    pub heartbeat_timeout_ms: u64,
    /// Scorer weights.
    pub weights: ScoreWeights,
    /// Stop scoring after this many feasible nodes (None: score every feasible node).
    pub max_candidates: Option<usize>,
    /// Region round trips.
    pub latency: LatencyTable,
    /// `SIMULATION_MODE`: P2/P3 refusals become allow-in-simulation.
    pub simulation_mode: bool,
    /// Terminal requests kept for status queries (oldest are forgotten first).
    pub terminal_retention: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_tenant_gpus: 2,
            heartbeat_timeout_ms: 30_000,
            weights: ScoreWeights::default(),
            max_candidates: None,
            latency: LatencyTable::new(1),
            simulation_mode: false,
            terminal_retention: 100_000,
        }
    }
}

/// A state change. Serialisable: the journal stores commands, not states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Register a node (or update a registered node's spec).
    RegisterNode {
        /// What it offers.
        spec: NodeSpec,
    },
    /// A node is alive; optionally reports its cached models.
    Heartbeat {
        /// Node id.
        node: String,
        /// Models now cached on it.
        #[serde(default)]
        cached_models: Option<BTreeSet<String>>,
    },
    /// Mark nodes whose heartbeat timed out unhealthy and re-queue their work.
    CheckHeartbeats,
    /// Stop placing on a node and move its work elsewhere.
    DrainNode {
        /// Node id.
        node: String,
    },
    /// Open a drained node again.
    UncordonNode {
        /// Node id.
        node: String,
    },
    /// Place a request (or queue it).
    Schedule {
        /// The request.
        request: ScheduleRequest,
    },
    /// The node agent reports the request running.
    MarkRunning {
        /// Owner tenant.
        tenant_id: String,
        /// Request id.
        request: RequestId,
    },
    /// The request finished successfully.
    Complete {
        /// Owner tenant.
        tenant_id: String,
        /// Request id.
        request: RequestId,
    },
    /// The request failed.
    Fail {
        /// Owner tenant.
        tenant_id: String,
        /// Request id.
        request: RequestId,
        /// Why.
        reason: String,
    },
    /// The tenant releases the request (frees its capacity, or cancels it while queued).
    Release {
        /// Owner tenant.
        tenant_id: String,
        /// Request id.
        request: RequestId,
    },
    /// An operator evicts a request for good.
    Evict {
        /// Request id.
        request: RequestId,
        /// Why.
        reason: String,
    },
    /// Set a tenant's quota.
    SetQuota {
        /// Tenant.
        tenant_id: String,
        /// The quota.
        quota: Quota,
    },
}

/// The answer to a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// The request was placed.
    Placed {
        /// Its id.
        request_id: RequestId,
        /// Where, with score breakdowns (shared with the `Placed` event).
        placement: Arc<Placement>,
    },
    /// The request waits in its tenant's queue.
    Queued {
        /// Its id.
        request_id: RequestId,
        /// Why it waits.
        reason: QueueReason,
        /// Detail.
        detail: String,
    },
    /// A retry with a known idempotency key: the first request's id and phase.
    Existing {
        /// The first request's id.
        request_id: RequestId,
        /// Its phase now.
        phase: Phase,
    },
    /// A request changed phase.
    Phase {
        /// Its id.
        request_id: RequestId,
        /// Its new phase.
        phase: Phase,
    },
    /// A node's state after the command.
    Node {
        /// Node id.
        node: String,
        /// Its health.
        health: NodeHealth,
    },
    /// Nodes marked unhealthy by a heartbeat check.
    Expired {
        /// Their ids.
        nodes: Vec<String>,
    },
    /// The quota was set.
    QuotaSet {
        /// Tenant.
        tenant_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RequestRecord {
    id: u64,
    tenant: Arc<str>,
    model_id: Arc<str>,
    model_version: Arc<str>,
    demand: Demand,
    replicas: u32,
    constraints: Option<Box<Constraints>>,
    priority: i32,
    idempotency_key: Option<Box<str>>,
    phase: Phase,
    reason: Option<QueueReason>,
    slots: Vec<(u32, u64)>,
    borrowed: bool,
    submitted_ms: u64,
    placed_ms: Option<u64>,
    running_ms: Option<u64>,
    finished_ms: Option<u64>,
    evictions: u32,
    seq: u64,
    tried_gen: u64,
}

impl RequestRecord {
    fn total(&self) -> ResourceVector {
        demand_vector(&self.demand).times(u64::from(self.replicas))
    }
    fn queue_key(&self) -> (i64, u64) {
        (-i64::from(self.priority), self.seq)
    }
}

fn demand_vector(d: &Demand) -> ResourceVector {
    ResourceVector {
        gpu_milli: d.gpu_total(),
        cpu: d.cpu,
        mem: d.mem,
        tpu: u64::from(d.tpu),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TenantState {
    quota: Quota,
    usage: ResourceVector,
    #[serde(with = "pairs")]
    queue: BTreeMap<(i64, u64), u64>,
    placed: BTreeSet<u64>,
    borrowed: BTreeSet<u64>,
    all_tried_gen: u64,
}

/// Maps with composite keys are stored as lists of pairs (JSON keys must be strings).
mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer, K: Serialize, V: Serialize>(
        m: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// The durable part of the scheduler's state (what a snapshot holds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct State {
    cluster: Cluster,
    /// Boxed: ids arrive in order, and a B-tree filled in order keeps its leaves about half
    /// full; with the records themselves in the leaves that doubled the memory per request.
    requests: BTreeMap<u64, Box<RequestRecord>>,
    tenants: BTreeMap<Arc<str>, TenantState>,
    #[serde(with = "pairs")]
    idempotency: BTreeMap<(Arc<str>, Box<str>), u64>,
    terminal: VecDeque<u64>,
    workload: WorkloadDistribution,
    next_request: u64,
    next_seq: u64,
    next_event: u64,
    generation: u64,
    outbox: Vec<Event>,
}

/// The scheduler state machine.
///
/// ```
/// use atom_fabric::{Command, NodeSpec, Outcome, Resources, ScheduleRequest, Scheduler, SchedulerConfig};
/// let mut s = Scheduler::new(SchedulerConfig::default());
/// s.apply(Command::RegisterNode { spec: NodeSpec::new("n1", 16_000, 65_536).with_gpus("T4", 2, 16_384) }, 0).unwrap();
/// let req = ScheduleRequest::new("acme", "bert", "v1", Resources { gpu: 1, gpu_milli: 500, cpu: 1000, mem: 2048, ..Default::default() });
/// match s.apply(Command::Schedule { request: req }, 10).unwrap() {
///     Outcome::Placed { request_id, placement } => {
///         assert_eq!(placement.replicas[0].node, "n1");
///         assert_eq!(s.status("acme", request_id).unwrap().phase, atom_fabric::Phase::Placed);
///         assert!(s.status("other-tenant", request_id).is_err());
///     }
///     other => panic!("not placed: {other:?}"),
/// }
/// s.check_invariants().unwrap();
/// ```
#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    state: State,
    scorers: ScorerSet,
    scratch: ScoreScratch,
    names: FastMap<Box<str>, Arc<str>>,
    /// Per cohort: (sum of use, sum of nominal quota); derived from the tenants.
    cohorts: FastMap<String, (ResourceVector, ResourceVector)>,
}

/// P2 and P3 for a production deploy: a verified manifest and an approver. Without them the
/// request is refused, or allowed-in-simulation when `simulation_mode` (shared with `pg`).
pub(crate) fn deploy_decisions(
    req: &ScheduleRequest,
    simulation_mode: bool,
) -> std::result::Result<Vec<Decision>, (PolicyId, String)> {
    let mut out = Vec::new();
    if !req.deploy.production {
        return Ok(out);
    }
    let checks = [
        (
            PolicyId::P2,
            req.deploy.manifest_verified,
            "production deploy without a verified signed manifest",
        ),
        (
            PolicyId::P3,
            req.deploy
                .approved_by
                .as_deref()
                .is_some_and(|a| !a.is_empty()),
            "production deploy without approved_by",
        ),
    ];
    for (policy, ok, why) in checks {
        if ok {
            out.push(Decision::Allow { policy });
        } else if simulation_mode {
            out.push(Decision::AllowInSimulation {
                policy,
                reason: why.to_string(),
            });
        } else {
            return Err((policy, why.to_string()));
        }
    }
    Ok(out)
}

/// P6 up front: a quantum request's memory must hold its statevector (shared with `pg`).
pub(crate) fn budget_check(req: &ScheduleRequest) -> std::result::Result<(), (PolicyId, String)> {
    let r = &req.resources;
    if r.qubits > 0 {
        // A statevector of n qubits needs 2^n complex f64 amplitudes of 16 bytes.
        let need_mib = if r.qubits >= 60 {
            u64::MAX
        } else {
            (1u64 << r.qubits).saturating_mul(16) >> 20
        };
        if need_mib > r.mem {
            return Err((
                PolicyId::P6,
                format!(
                    "a {}-qubit statevector needs {need_mib} MiB, the request has mem = {} MiB",
                    r.qubits, r.mem
                ),
            ));
        }
    }
    Ok(())
}

enum PlaceError {
    Quota(&'static str),
    Capacity,
    Constraint,
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(config: SchedulerConfig) -> Self {
        let state = State {
            cluster: Cluster::new(),
            requests: BTreeMap::new(),
            tenants: BTreeMap::new(),
            idempotency: BTreeMap::new(),
            terminal: VecDeque::new(),
            workload: WorkloadDistribution::new(),
            next_request: 1,
            next_seq: 0,
            next_event: 1,
            generation: 1,
            outbox: Vec::new(),
        };
        Self::from_state(config, state)
    }

    pub(crate) fn from_state(config: SchedulerConfig, mut state: State) -> Self {
        state.cluster.rebuild();
        state.workload.restored();
        let scorers = ScorerSet::weighted("default", &config.weights);
        let mut s = Self {
            config,
            state,
            scorers,
            scratch: ScoreScratch::default(),
            names: FastMap::default(),
            cohorts: FastMap::default(),
        };
        s.rebuild_cohorts();
        let mut names = FastMap::default();
        for r in s.state.requests.values_mut() {
            for a in [&mut r.tenant, &mut r.model_id, &mut r.model_version] {
                let shared = names
                    .entry(Box::<str>::from(&**a))
                    .or_insert_with(|| a.clone())
                    .clone();
                *a = shared;
            }
        }
        s.names = names;
        s
    }

    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    /// About how many records a snapshot of the state holds (requests, nodes, tenants).
    pub(crate) fn state_records(&self) -> usize {
        self.state.requests.len() + self.state.cluster.nodes().len() + self.state.tenants.len()
    }

    /// The configuration.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// The nodes and their allocations.
    pub fn cluster(&self) -> &Cluster {
        &self.state.cluster
    }

    /// A node by id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.state.cluster.node(id)
    }

    /// Takes the events emitted since the last call (the audit log's outbox).
    pub fn take_events(&mut self) -> Vec<Event> {
        // Keep the capacity: the outbox refills at the same rate.
        let cap = self.state.outbox.capacity();
        std::mem::replace(&mut self.state.outbox, Vec::with_capacity(cap))
    }

    /// Events waiting in the outbox.
    pub fn pending_events(&self) -> &[Event] {
        &self.state.outbox
    }

    /// A SHA-256 digest of the durable state (equal states give equal digests).
    pub fn state_digest(&self) -> Result<String> {
        use sha2::Digest;
        let bytes = serde_json::to_vec(&self.state).map_err(|e| FabricError::Corrupt {
            what: "state".into(),
            detail: e.to_string(),
        })?;
        Ok(hex::encode(sha2::Sha256::digest(&bytes)))
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.names.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.names.insert(Box::from(s), a.clone());
        a
    }

    fn emit(
        &mut self,
        at_ms: u64,
        tenant: Option<&str>,
        request: Option<u64>,
        kind: EventKind,
        decisions: Vec<Decision>,
    ) {
        let seq = self.state.next_event;
        self.state.next_event += 1;
        let model_id = request
            .and_then(|r| self.state.requests.get(&r))
            .map(|r| String::from(&*r.model_id));
        self.state.outbox.push(Event {
            seq,
            at_ms,
            tenant_id: tenant.map(String::from),
            request_id: request.map(RequestId),
            model_id,
            kind,
            decisions,
        });
    }

    fn tenant_mut(&mut self, tenant: &Arc<str>) -> &mut TenantState {
        // One lookup, and the default quota (it owns its cohort name) built for a new tenant only.
        match self.state.tenants.entry(tenant.clone()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let default = Quota::gpus(self.config.max_tenant_gpus);
                let e = self
                    .cohorts
                    .entry(default.cohort.clone())
                    .or_insert((ResourceVector::ZERO, ResourceVector::ZERO));
                e.1 = e.1.saturating_add(default.nominal);
                v.insert(TenantState {
                    quota: default,
                    usage: ResourceVector::ZERO,
                    queue: BTreeMap::new(),
                    placed: BTreeSet::new(),
                    borrowed: BTreeSet::new(),
                    all_tried_gen: 0,
                })
            }
        }
    }

    /// Applies one command at time `now_ms`.
    pub fn apply(&mut self, cmd: Command, now_ms: u64) -> Result<Outcome> {
        let out = match cmd {
            Command::RegisterNode { spec } => self.register(spec, now_ms),
            Command::Heartbeat {
                node,
                cached_models,
            } => self.heartbeat(&node, cached_models, now_ms),
            Command::CheckHeartbeats => Ok(self.check_heartbeats(now_ms)),
            Command::DrainNode { node } => self.drain_node(&node, now_ms),
            Command::UncordonNode { node } => self.uncordon(&node, now_ms),
            Command::Schedule { request } => self.schedule(request, now_ms),
            Command::MarkRunning { tenant_id, request } => {
                self.mark_running(&tenant_id, request, now_ms)
            }
            Command::Complete { tenant_id, request } => {
                self.finish(&tenant_id, request, Phase::Completed, false, now_ms)
            }
            Command::Fail {
                tenant_id, request, ..
            } => self.finish(&tenant_id, request, Phase::Failed, false, now_ms),
            Command::Release { tenant_id, request } => {
                self.finish(&tenant_id, request, Phase::Completed, true, now_ms)
            }
            Command::Evict { request, reason } => self.operator_evict(request, reason, now_ms),
            Command::SetQuota { tenant_id, quota } => self.set_quota(&tenant_id, quota, now_ms),
        }?;
        self.drain_queues(now_ms);
        self.prune_terminal();
        Ok(out)
    }

    /// Whether [`Command::CheckHeartbeats`] at `now_ms` would change anything (to skip journaling no-ops).
    pub fn heartbeats_expired(&self, now_ms: u64) -> bool {
        self.state
            .cluster
            .nodes()
            .iter()
            .any(|n| self.expired(n, now_ms))
    }

    fn expired(&self, n: &Node, now_ms: u64) -> bool {
        n.health() != NodeHealth::Unhealthy
            && now_ms.saturating_sub(n.last_heartbeat_ms()) > self.config.heartbeat_timeout_ms
    }

    fn register(&mut self, spec: NodeSpec, now_ms: u64) -> Result<Outcome> {
        let id = spec.id.clone();
        self.state.cluster.register(spec, now_ms)?;
        self.state.generation += 1;
        self.emit(
            now_ms,
            None,
            None,
            EventKind::NodeRegistered { node: id.clone() },
            Vec::new(),
        );
        Ok(Outcome::Node {
            node: id,
            health: NodeHealth::Healthy,
        })
    }

    fn node_index(&self, id: &str) -> Result<u32> {
        self.state
            .cluster
            .index_of(id)
            .ok_or_else(|| FabricError::NodeNotFound(id.to_string()))
    }

    fn heartbeat(
        &mut self,
        node: &str,
        cached: Option<BTreeSet<String>>,
        now_ms: u64,
    ) -> Result<Outcome> {
        let idx = self.node_index(node)?;
        self.state.cluster.touch(idx, now_ms);
        if let Some(models) = cached {
            self.state.cluster.set_cached_models(idx, models);
        }
        if self.state.cluster.node_at(idx).health() == NodeHealth::Unhealthy {
            self.state.cluster.set_health(idx, NodeHealth::Healthy);
            self.state.generation += 1;
            self.emit(
                now_ms,
                None,
                None,
                EventKind::NodeRecovered {
                    node: node.to_string(),
                },
                Vec::new(),
            );
        }
        Ok(Outcome::Node {
            node: node.to_string(),
            health: self.state.cluster.node_at(idx).health(),
        })
    }

    fn check_heartbeats(&mut self, now_ms: u64) -> Outcome {
        let lost: Vec<u32> = (0..self.state.cluster.nodes().len() as u32)
            .filter(|&i| self.expired(self.state.cluster.node_at(i), now_ms))
            .collect();
        let mut names = Vec::new();
        for idx in lost {
            let name = self.state.cluster.node_at(idx).id().to_string();
            self.state.cluster.set_health(idx, NodeHealth::Unhealthy);
            self.emit(
                now_ms,
                None,
                None,
                EventKind::NodeUnhealthy { node: name.clone() },
                Vec::new(),
            );
            self.evict_node_residents(idx, EvictReason::NodeLost, now_ms);
            names.push(name);
        }
        if !names.is_empty() {
            self.state.generation += 1;
        }
        Outcome::Expired { nodes: names }
    }

    fn evict_node_residents(&mut self, idx: u32, reason: EvictReason, now_ms: u64) {
        let residents: Vec<u64> = self.state.cluster.node_at(idx).residents().collect();
        for r in residents {
            self.unplace(r);
            self.requeue(r, reason.clone(), now_ms);
        }
    }

    fn drain_node(&mut self, node: &str, now_ms: u64) -> Result<Outcome> {
        let idx = self.node_index(node)?;
        if self.state.cluster.node_at(idx).health() == NodeHealth::Healthy {
            self.state.cluster.set_health(idx, NodeHealth::Draining);
        }
        self.emit(
            now_ms,
            None,
            None,
            EventKind::NodeDrained {
                node: node.to_string(),
            },
            Vec::new(),
        );
        self.evict_node_residents(idx, EvictReason::NodeDrained, now_ms);
        self.state.generation += 1;
        Ok(Outcome::Node {
            node: node.to_string(),
            health: self.state.cluster.node_at(idx).health(),
        })
    }

    fn uncordon(&mut self, node: &str, now_ms: u64) -> Result<Outcome> {
        let idx = self.node_index(node)?;
        if self.state.cluster.node_at(idx).health() == NodeHealth::Draining {
            self.state.cluster.set_health(idx, NodeHealth::Healthy);
            self.state.generation += 1;
            self.emit(
                now_ms,
                None,
                None,
                EventKind::NodeUncordoned {
                    node: node.to_string(),
                },
                Vec::new(),
            );
        }
        Ok(Outcome::Node {
            node: node.to_string(),
            health: self.state.cluster.node_at(idx).health(),
        })
    }

    fn demand_of(&mut self, req: &ScheduleRequest) -> Demand {
        self.state.cluster.demand_of(req)
    }

    fn schedule(&mut self, req: ScheduleRequest, now_ms: u64) -> Result<Outcome> {
        req.validate()?;
        let tenant = self.intern(&req.tenant_id);
        if let Some(key) = &req.idempotency_key
            && let Some(&id) = self
                .state
                .idempotency
                .get(&(tenant.clone(), Box::from(key.as_str())))
            && let Some(r) = self.state.requests.get(&id)
        {
            return Ok(Outcome::Existing {
                request_id: RequestId(id),
                phase: r.phase,
            });
        }
        let mut decisions = match deploy_decisions(&req, self.config.simulation_mode) {
            Ok(d) => d,
            Err((policy, reason)) => return Err(self.reject(&tenant, policy, reason, now_ms)),
        };
        if let Err((policy, reason)) = budget_check(&req) {
            return Err(self.reject(&tenant, policy, reason, now_ms));
        }
        let demand = self.demand_of(&req);
        let total = demand_vector(&demand).times(u64::from(req.replicas));
        let ceiling = self.tenant_mut(&tenant).quota.ceiling();
        if let Some(i) = (0..4).find(|&i| total.get(i) > ceiling.get(i)) {
            let reason = format!(
                "needs {} {} in all, above the tenant's quota ceiling {}",
                total.get(i),
                RESOURCES[i],
                ceiling.get(i)
            );
            return Err(self.reject(&tenant, PolicyId::P5, reason, now_ms));
        }
        decisions.push(Decision::Allow {
            policy: PolicyId::P5,
        });
        decisions.push(Decision::Allow {
            policy: PolicyId::P6,
        });
        let id = self.state.next_request;
        self.state.next_request += 1;
        let seq = self.state.next_seq;
        self.state.next_seq += 1;
        for _ in 0..req.replicas.min(64) {
            self.state.workload.observe(&demand);
        }
        let key: Option<Box<str>> = req.idempotency_key.as_deref().map(Box::from);
        if let Some(k) = &key {
            self.state
                .idempotency
                .insert((tenant.clone(), k.clone()), id);
        }
        let record = RequestRecord {
            id,
            tenant: tenant.clone(),
            model_id: self.intern(&req.model_id),
            model_version: self.intern(&req.model_version),
            demand,
            replicas: req.replicas,
            constraints: if req.constraints.is_empty() {
                None
            } else {
                Some(Box::new(req.constraints))
            },
            priority: req.priority,
            idempotency_key: key,
            phase: Phase::Queued,
            reason: None,
            slots: Vec::new(),
            borrowed: false,
            submitted_ms: now_ms,
            placed_ms: None,
            running_ms: None,
            finished_ms: None,
            evictions: 0,
            seq,
            tried_gen: 0,
        };
        let qkey = record.queue_key();
        self.state.requests.insert(id, Box::new(record));
        self.tenant_mut(&tenant).queue.insert(qkey, id);
        Ok(match self.attempt(id, now_ms, decisions) {
            Ok(placement) => Outcome::Placed {
                request_id: RequestId(id),
                placement,
            },
            Err((reason, detail)) => Outcome::Queued {
                request_id: RequestId(id),
                reason,
                detail,
            },
        })
    }

    fn reject(
        &mut self,
        tenant: &Arc<str>,
        policy: PolicyId,
        reason: String,
        now_ms: u64,
    ) -> FabricError {
        let t = tenant.clone();
        self.emit(
            now_ms,
            Some(&t),
            None,
            EventKind::Rejected {
                detail: reason.clone(),
            },
            vec![Decision::Deny {
                policy,
                reason: reason.clone(),
            }],
        );
        FabricError::PolicyDenied { policy, reason }
    }
}

static EMPTY_CONSTRAINTS: Constraints = Constraints {
    latency_ms: None,
    region: None,
    gpu_model: None,
    labels: BTreeMap::new(),
};

type Founds = Vec<(u32, u64, Option<crate::model::ScoreBreakdown>)>;

impl Scheduler {
    /// Places all replicas or none; commits the allocations on success.
    fn place_gang(&mut self, id: u64, explain: bool) -> Option<Founds> {
        let r = &self.state.requests[&id];
        let demand = r.demand.clone();
        let cons = r.constraints.clone();
        let model = r.model_id.clone();
        let replicas = r.replicas;
        let cons_ref: &Constraints = cons.as_deref().unwrap_or(&EMPTY_CONSTRAINTS);
        let filter = Filter {
            constraints: cons_ref,
            latency: &self.config.latency,
        };
        let mut placed: Founds = Vec::with_capacity(replicas as usize);
        for _ in 0..replicas {
            let found = self.state.cluster.find(
                &demand,
                &filter,
                &self.scorers,
                &self.state.workload,
                &model,
                self.config.max_candidates,
                &mut self.scratch,
            );
            let Some(f) = found else {
                for &(node, mask, _) in &placed {
                    self.state.cluster.release(node, &demand, mask);
                    self.state.cluster.remove_resident(node, id);
                }
                return None;
            };
            let breakdown = explain.then(|| {
                let ctx = ScoreContext {
                    stats: self.state.cluster.stats(),
                    workload: &self.state.workload,
                    latency: &self.config.latency,
                    constraints: cons_ref,
                    model_id: &model,
                };
                let mut b = self.scorers.breakdown(
                    self.state.cluster.node_at(f.node),
                    &demand,
                    f.mask,
                    &ctx,
                    &mut self.scratch,
                );
                b.candidates = f.candidates;
                b
            });
            self.state.cluster.allocate(f.node, &demand, f.mask, id);
            placed.push((f.node, f.mask, breakdown));
        }
        Some(placed)
    }

    fn cohort_totals(&self, cohort: &str, i: usize) -> (u64, u64) {
        self.cohorts
            .get(cohort)
            .map_or((0, 0), |(u, n)| (u.get(i), n.get(i)))
    }

    /// Recomputes the per-cohort sums of use and nominal quota (after quota changes).
    fn rebuild_cohorts(&mut self) {
        self.cohorts.clear();
        for t in self.state.tenants.values() {
            let e = self
                .cohorts
                .entry(t.quota.cohort.clone())
                .or_insert((ResourceVector::ZERO, ResourceVector::ZERO));
            e.0 = e.0.saturating_add(t.usage);
            e.1 = e.1.saturating_add(t.quota.nominal);
        }
    }

    fn cohort_use(&mut self, tenant: &Arc<str>, delta: ResourceVector, add: bool) {
        let Some(t) = self.state.tenants.get(tenant) else {
            return;
        };
        if let Some(e) = self.cohorts.get_mut(&t.quota.cohort) {
            e.0 = if add {
                e.0.saturating_add(delta)
            } else {
                e.0.saturating_sub(delta)
            };
        }
    }

    /// Whether the tenant may take `add` more: Ok(borrowing) or the resource that blocks.
    fn quota_check(
        &self,
        tenant: &str,
        add: &ResourceVector,
    ) -> std::result::Result<bool, &'static str> {
        let Some(t) = self.state.tenants.get(tenant) else {
            return Err("tenant");
        };
        let q = &t.quota;
        let borrows = q.admits(&t.usage, add)?;
        for (i, name) in RESOURCES.iter().enumerate() {
            let a = add.get(i);
            if a == 0 {
                continue;
            }
            let (used, nominal) = self.cohort_totals(&q.cohort, i);
            if used.saturating_add(a) > nominal {
                return Err(name);
            }
        }
        Ok(borrows)
    }

    fn try_admit(&mut self, id: u64) -> std::result::Result<(Founds, bool), PlaceError> {
        let r = &self.state.requests[&id];
        let total = r.total();
        let tenant = r.tenant.clone();
        let borrowed = self
            .quota_check(&tenant, &total)
            .map_err(PlaceError::Quota)?;
        match self.place_gang(id, true) {
            Some(f) => Ok((f, borrowed)),
            None => {
                let r = &self.state.requests[&id];
                let cons: &Constraints = r.constraints.as_deref().unwrap_or(&EMPTY_CONSTRAINTS);
                let filter = Filter {
                    constraints: cons,
                    latency: &self.config.latency,
                };
                if self.state.cluster.any_static_ok(&r.demand, &filter) {
                    Err(PlaceError::Capacity)
                } else {
                    Err(PlaceError::Constraint)
                }
            }
        }
    }

    fn commit(
        &mut self,
        id: u64,
        founds: Founds,
        borrowed: bool,
        now_ms: u64,
        decisions: Vec<Decision>,
    ) -> Arc<Placement> {
        let total = self.state.requests[&id].total();
        let r = self
            .state
            .requests
            .get_mut(&id)
            .expect("request exists while being placed");
        r.slots = founds.iter().map(|&(n, m, _)| (n, m)).collect();
        r.phase = Phase::Placed;
        r.reason = None;
        r.placed_ms = Some(now_ms);
        r.borrowed = borrowed;
        let key = r.queue_key();
        let tenant = r.tenant.clone();
        let model = r.model_id.clone();
        let wait_ms = now_ms.saturating_sub(r.submitted_ms);
        self.cohort_use(&tenant, total, true);
        let t = self
            .state
            .tenants
            .get_mut(&tenant)
            .expect("tenant exists for its request");
        t.queue.remove(&key);
        t.usage = t.usage.saturating_add(total);
        t.placed.insert(id);
        if borrowed {
            t.borrowed.insert(id);
        }
        let mut replicas = Vec::with_capacity(founds.len());
        for (node, mask, score) in founds {
            self.state.cluster.cache_model(node, &model);
            replicas.push(ReplicaPlacement {
                node: self.state.cluster.node_at(node).id().to_string(),
                devices: mask_devices(mask),
                score,
            });
        }
        let placement = Arc::new(Placement { replicas, borrowed });
        self.emit(
            now_ms,
            Some(&tenant),
            Some(id),
            EventKind::Placed {
                placement: Arc::clone(&placement),
                wait_ms,
            },
            decisions,
        );
        placement
    }

    /// Tries to place a queued request (with preemption if allowed). On failure records why.
    fn attempt(
        &mut self,
        id: u64,
        now_ms: u64,
        decisions: Vec<Decision>,
    ) -> std::result::Result<Arc<Placement>, (QueueReason, String)> {
        let err = match self.try_admit(id) {
            Ok((f, b)) => return Ok(self.commit(id, f, b, now_ms, decisions)),
            Err(e) => e,
        };
        if let Some(victims) = self.try_preempt(id) {
            for (v, reason) in victims {
                self.requeue(v, reason, now_ms);
            }
            if let Ok((f, b)) = self.try_admit(id) {
                return Ok(self.commit(id, f, b, now_ms, decisions));
            }
        }
        let (reason, detail) = match err {
            PlaceError::Quota(res) => (
                QueueReason::Quota,
                format!("tenant quota (with cohort borrowing) exhausted for {res}"),
            ),
            PlaceError::Capacity => (
                QueueReason::Capacity,
                "no free capacity for all replicas on nodes that satisfy the constraints"
                    .to_string(),
            ),
            PlaceError::Constraint => (
                QueueReason::Constraint,
                "no registered node satisfies the constraints".to_string(),
            ),
        };
        let cur_gen = self.state.generation;
        let r = self
            .state
            .requests
            .get_mut(&id)
            .expect("request exists while being placed");
        r.tried_gen = cur_gen;
        let changed = r.reason != Some(reason);
        r.reason = Some(reason);
        let tenant = r.tenant.clone();
        if changed {
            let decisions = if reason == QueueReason::Quota {
                vec![Decision::Deny {
                    policy: PolicyId::P5,
                    reason: detail.clone(),
                }]
            } else {
                vec![Decision::Allow {
                    policy: PolicyId::P5,
                }]
            };
            self.emit(
                now_ms,
                Some(&tenant),
                Some(id),
                EventKind::Queued {
                    reason,
                    detail: detail.clone(),
                },
                decisions,
            );
        }
        Err((reason, detail))
    }

    /// Frees a placed request's capacity and quota use (keeps its slots for [`Self::replace`]).
    fn unplace(&mut self, id: u64) {
        let r = &self.state.requests[&id];
        let demand = r.demand.clone();
        let slots = r.slots.clone();
        let total = r.total();
        let tenant = r.tenant.clone();
        for &(node, mask) in &slots {
            self.state.cluster.release(node, &demand, mask);
            self.state.cluster.remove_resident(node, id);
        }
        self.cohort_use(&tenant, total, false);
        if let Some(t) = self.state.tenants.get_mut(&tenant) {
            t.usage = t.usage.saturating_sub(total);
            t.placed.remove(&id);
            t.borrowed.remove(&id);
        }
    }

    /// Undoes [`Self::unplace`] (the same devices are still free).
    fn replace(&mut self, id: u64) {
        let r = &self.state.requests[&id];
        let demand = r.demand.clone();
        let slots = r.slots.clone();
        let total = r.total();
        let tenant = r.tenant.clone();
        let borrowed = r.borrowed;
        for &(node, mask) in &slots {
            self.state.cluster.allocate(node, &demand, mask, id);
        }
        self.cohort_use(&tenant, total, true);
        if let Some(t) = self.state.tenants.get_mut(&tenant) {
            t.usage = t.usage.saturating_add(total);
            t.placed.insert(id);
            if borrowed {
                t.borrowed.insert(id);
            }
        }
    }

    /// Puts an unplaced request back in its queue.
    fn requeue(&mut self, id: u64, reason: EvictReason, now_ms: u64) {
        let r = self
            .state
            .requests
            .get_mut(&id)
            .expect("evicted request exists");
        r.phase = Phase::Queued;
        r.slots.clear();
        r.borrowed = false;
        r.evictions += 1;
        r.tried_gen = 0;
        r.reason = None;
        let key = r.queue_key();
        let tenant = r.tenant.clone();
        let t = self
            .state
            .tenants
            .get_mut(&tenant)
            .expect("tenant exists for its request");
        t.queue.insert(key, id);
        t.all_tried_gen = 0;
        let decisions = match &reason {
            EvictReason::Reclaim { .. } | EvictReason::QuotaLowered => vec![Decision::Allow {
                policy: PolicyId::P5,
            }],
            _ => Vec::new(),
        };
        self.emit(
            now_ms,
            Some(&tenant),
            Some(id),
            EventKind::Evicted {
                reason,
                requeued: true,
            },
            decisions,
        );
    }

    /// Whether the request could be admitted now (dry run; leaves no trace).
    fn feasible(&mut self, id: u64) -> bool {
        let r = &self.state.requests[&id];
        let total = r.total();
        let tenant = r.tenant.clone();
        if self.quota_check(&tenant, &total).is_err() {
            return false;
        }
        match self.place_gang(id, false) {
            Some(founds) => {
                let demand = self.state.requests[&id].demand.clone();
                for (node, mask, _) in founds {
                    self.state.cluster.release(node, &demand, mask);
                    self.state.cluster.remove_resident(node, id);
                }
                true
            }
            None => false,
        }
    }

    /// Finds victims whose eviction lets the request in: lower-priority work of the same tenant,
    /// and (when the request fits its tenant's nominal quota) borrowed work of its cohort.
    /// On success the victims are unplaced (not yet re-queued).
    fn try_preempt(&mut self, id: u64) -> Option<Vec<(u64, EvictReason)>> {
        let r = &self.state.requests[&id];
        let (tenant, prio, total) = (r.tenant.clone(), r.priority, r.total());
        let t = self.state.tenants.get(&tenant)?;
        let within_nominal = t.usage.saturating_add(total).fits_in(&t.quota.nominal);
        let cohort = t.quota.cohort.clone();
        let mut cands: Vec<(
            i32,
            std::cmp::Reverse<u64>,
            std::cmp::Reverse<u64>,
            EvictReason,
        )> = Vec::new();
        for &v in &t.placed {
            let vr = &self.state.requests[&v];
            if vr.priority < prio {
                cands.push((
                    vr.priority,
                    std::cmp::Reverse(vr.placed_ms.unwrap_or(0)),
                    std::cmp::Reverse(v),
                    EvictReason::Priority { by: RequestId(id) },
                ));
            }
        }
        if within_nominal {
            for (name, other) in &self.state.tenants {
                if *name == tenant || other.quota.cohort != cohort {
                    continue;
                }
                for &v in &other.borrowed {
                    let vr = &self.state.requests[&v];
                    cands.push((
                        vr.priority,
                        std::cmp::Reverse(vr.placed_ms.unwrap_or(0)),
                        std::cmp::Reverse(v),
                        EvictReason::Reclaim { by: RequestId(id) },
                    ));
                }
            }
        }
        if cands.is_empty() {
            return None;
        }
        cands.sort_by_key(|a| (a.0, a.1, a.2));
        let mut removed: Vec<(u64, EvictReason)> = Vec::new();
        let mut ok = false;
        for (_, _, std::cmp::Reverse(v), reason) in cands {
            self.unplace(v);
            removed.push((v, reason));
            if self.feasible(id) {
                ok = true;
                break;
            }
        }
        if !ok {
            for (v, _) in removed.iter().rev() {
                self.replace(*v);
            }
            return None;
        }
        // Keep the victim set minimal: give back any earlier victim the request does not need.
        let mut k = removed.len().saturating_sub(1);
        while k > 0 {
            k -= 1;
            let v = removed[k].0;
            self.replace(v);
            if self.feasible(id) {
                removed.remove(k);
            } else {
                self.unplace(v);
            }
        }
        Some(removed)
    }

    fn dominant_share(&self, t: &TenantState) -> f64 {
        let s = self.state.cluster.stats();
        let caps = [s.gpu_milli, s.cpu, s.mem, s.tpu];
        (0..4)
            .filter(|&i| caps[i] > 0)
            .map(|i| t.usage.get(i) as f64 / caps[i] as f64)
            .fold(0.0, f64::max)
    }

    /// Serves the queues: repeatedly the tenant with the lowest dominant share offers its first
    /// request not yet tried since capacity last changed, until no request can be tried.
    fn drain_queues(&mut self, now_ms: u64) {
        loop {
            let cur_gen = self.state.generation;
            let mut best: Option<(f64, u64)> = None;
            let mut exhausted: Vec<Arc<str>> = Vec::new();
            for (name, t) in &self.state.tenants {
                if t.queue.is_empty() || t.all_tried_gen == cur_gen {
                    continue;
                }
                let next = t
                    .queue
                    .values()
                    .copied()
                    .find(|id| self.state.requests[id].tried_gen != cur_gen);
                let Some(id) = next else {
                    exhausted.push(name.clone());
                    continue;
                };
                let share = self.dominant_share(t);
                if best.is_none_or(|(s, _)| share < s) {
                    best = Some((share, id));
                }
            }
            for name in exhausted {
                if let Some(t) = self.state.tenants.get_mut(&name) {
                    t.all_tried_gen = cur_gen;
                }
            }
            let Some((_, id)) = best else {
                break;
            };
            let decisions = vec![
                Decision::Allow {
                    policy: PolicyId::P5,
                },
                Decision::Allow {
                    policy: PolicyId::P6,
                },
            ];
            let _ = self.attempt(id, now_ms, decisions);
        }
    }

    fn scoped(&self, tenant: &str, id: RequestId) -> Result<&RequestRecord> {
        match self.state.requests.get(&id.0) {
            Some(r) if &*r.tenant == tenant => Ok(r),
            _ => Err(FabricError::RequestNotFound(id.to_string())),
        }
    }

    fn mark_running(&mut self, tenant: &str, id: RequestId, now_ms: u64) -> Result<Outcome> {
        let r = self.scoped(tenant, id)?;
        match r.phase {
            Phase::Running => {
                return Ok(Outcome::Phase {
                    request_id: id,
                    phase: Phase::Running,
                });
            }
            Phase::Placed => {}
            p => {
                return Err(FabricError::InvalidTransition {
                    id: id.to_string(),
                    phase: p.to_string(),
                    action: "mark running",
                });
            }
        }
        let r = self
            .state
            .requests
            .get_mut(&id.0)
            .expect("scoped request exists");
        r.phase = Phase::Running;
        r.running_ms = Some(now_ms);
        self.emit(
            now_ms,
            Some(tenant),
            Some(id.0),
            EventKind::Running,
            Vec::new(),
        );
        Ok(Outcome::Phase {
            request_id: id,
            phase: Phase::Running,
        })
    }

    fn finish(
        &mut self,
        tenant: &str,
        id: RequestId,
        phase: Phase,
        allow_queued: bool,
        now_ms: u64,
    ) -> Result<Outcome> {
        let r = self.scoped(tenant, id)?;
        let current = r.phase;
        let ok = current.holds_capacity() || (allow_queued && current == Phase::Queued);
        if !ok {
            let action = if phase == Phase::Failed {
                "fail"
            } else if allow_queued {
                "release"
            } else {
                "complete"
            };
            return Err(FabricError::InvalidTransition {
                id: id.to_string(),
                phase: current.to_string(),
                action,
            });
        }
        self.terminate(id.0, phase, now_ms);
        self.emit(
            now_ms,
            Some(tenant),
            Some(id.0),
            EventKind::Finished { phase },
            Vec::new(),
        );
        Ok(Outcome::Phase {
            request_id: id,
            phase,
        })
    }

    fn terminate(&mut self, id: u64, phase: Phase, now_ms: u64) {
        let r = &self.state.requests[&id];
        if r.phase.holds_capacity() {
            self.unplace(id);
        } else if r.phase == Phase::Queued {
            let (key, tenant) = (r.queue_key(), r.tenant.clone());
            if let Some(t) = self.state.tenants.get_mut(&tenant) {
                t.queue.remove(&key);
            }
        }
        let r = self
            .state
            .requests
            .get_mut(&id)
            .expect("terminated request exists");
        r.phase = phase;
        r.slots.clear();
        r.reason = None;
        r.finished_ms = Some(now_ms);
        self.state.terminal.push_back(id);
        self.state.generation += 1;
    }

    fn operator_evict(&mut self, id: RequestId, reason: String, now_ms: u64) -> Result<Outcome> {
        let r = self
            .state
            .requests
            .get(&id.0)
            .ok_or_else(|| FabricError::RequestNotFound(id.to_string()))?;
        if r.phase.is_terminal() {
            return Err(FabricError::InvalidTransition {
                id: id.to_string(),
                phase: r.phase.to_string(),
                action: "evict",
            });
        }
        let tenant = r.tenant.clone();
        self.terminate(id.0, Phase::Evicted, now_ms);
        self.emit(
            now_ms,
            Some(&tenant),
            Some(id.0),
            EventKind::Evicted {
                reason: EvictReason::Operator { reason },
                requeued: false,
            },
            Vec::new(),
        );
        Ok(Outcome::Phase {
            request_id: id,
            phase: Phase::Evicted,
        })
    }

    fn set_quota(&mut self, tenant_id: &str, quota: Quota, now_ms: u64) -> Result<Outcome> {
        if tenant_id.is_empty() || quota.cohort.is_empty() {
            return Err(FabricError::InvalidInput(
                "tenant_id and quota.cohort must not be empty".into(),
            ));
        }
        let tenant = self.intern(tenant_id);
        self.tenant_mut(&tenant).quota = quota.clone();
        self.rebuild_cohorts();
        self.emit(
            now_ms,
            Some(tenant_id),
            None,
            EventKind::QuotaSet { quota },
            vec![Decision::Allow {
                policy: PolicyId::P5,
            }],
        );
        self.enforce_quotas(now_ms);
        self.state.generation += 1;
        for t in self.state.tenants.values_mut() {
            t.all_tried_gen = 0;
        }
        Ok(Outcome::QuotaSet {
            tenant_id: tenant_id.to_string(),
        })
    }

    fn pick_victim<'a>(&self, ids: impl Iterator<Item = &'a u64>) -> Option<u64> {
        ids.map(|&v| {
            let r = &self.state.requests[&v];
            (
                r.priority,
                std::cmp::Reverse(r.placed_ms.unwrap_or(0)),
                std::cmp::Reverse(v),
            )
        })
        .min()
        .map(|(_, _, std::cmp::Reverse(v))| v)
    }

    /// After a quota change: evict (and re-queue) until every tenant is within its ceiling and
    /// every cohort within the sum of its nominal quotas.
    fn enforce_quotas(&mut self, now_ms: u64) {
        let names: Vec<Arc<str>> = self.state.tenants.keys().cloned().collect();
        for name in &names {
            loop {
                let t = &self.state.tenants[name];
                if t.usage.fits_in(&t.quota.ceiling()) {
                    break;
                }
                let Some(v) = self.pick_victim(t.placed.iter()) else {
                    break;
                };
                self.unplace(v);
                self.requeue(v, EvictReason::QuotaLowered, now_ms);
            }
        }
        let cohorts: BTreeSet<String> = self
            .state
            .tenants
            .values()
            .map(|t| t.quota.cohort.clone())
            .collect();
        for cohort in cohorts {
            loop {
                let over = (0..4).any(|i| {
                    let (u, n) = self.cohort_totals(&cohort, i);
                    u > n
                });
                if !over {
                    break;
                }
                let borrowers: Vec<u64> = self
                    .state
                    .tenants
                    .values()
                    .filter(|t| t.quota.cohort == cohort && !t.usage.fits_in(&t.quota.nominal))
                    .flat_map(|t| t.placed.iter().copied())
                    .collect();
                let Some(v) = self.pick_victim(borrowers.iter()) else {
                    break;
                };
                self.unplace(v);
                self.requeue(v, EvictReason::QuotaLowered, now_ms);
            }
        }
    }

    fn prune_terminal(&mut self) {
        while self.state.terminal.len() > self.config.terminal_retention {
            let Some(id) = self.state.terminal.pop_front() else {
                break;
            };
            if let Some(r) = self.state.requests.remove(&id)
                && let Some(k) = r.idempotency_key
            {
                let key = (r.tenant.clone(), k);
                if self.state.idempotency.get(&key) == Some(&id) {
                    self.state.idempotency.remove(&key);
                }
            }
        }
    }

    fn status_of(&self, r: &RequestRecord) -> RequestStatus {
        let placement = r.phase.holds_capacity().then(|| Placement {
            replicas: r
                .slots
                .iter()
                .map(|&(n, m)| ReplicaPlacement {
                    node: self.state.cluster.node_at(n).id().to_string(),
                    devices: mask_devices(m),
                    score: None,
                })
                .collect(),
            borrowed: r.borrowed,
        });
        RequestStatus {
            id: RequestId(r.id),
            tenant_id: r.tenant.to_string(),
            model_id: r.model_id.to_string(),
            model_version: r.model_version.to_string(),
            replicas: r.replicas,
            phase: r.phase,
            queue_reason: if r.phase == Phase::Queued {
                r.reason
            } else {
                None
            },
            placement,
            priority: r.priority,
            submitted_ms: r.submitted_ms,
            placed_ms: r.placed_ms,
            running_ms: r.running_ms,
            finished_ms: r.finished_ms,
            evictions: r.evictions,
        }
    }

    /// A request's status, visible only to its own tenant.
    pub fn status(&self, tenant_id: &str, id: RequestId) -> Result<RequestStatus> {
        self.scoped(tenant_id, id).map(|r| self.status_of(r))
    }

    /// All known requests of one tenant, oldest first.
    pub fn requests_of(&self, tenant_id: &str) -> Vec<RequestStatus> {
        self.state
            .requests
            .values()
            .filter(|r| &*r.tenant == tenant_id)
            .map(|r| self.status_of(r))
            .collect()
    }

    /// Tenants known to the scheduler.
    pub fn tenants(&self) -> Vec<String> {
        self.state.tenants.keys().map(|t| t.to_string()).collect()
    }

    /// A tenant's quota and current use.
    pub fn tenant_usage(&self, tenant_id: &str) -> Option<(Quota, ResourceVector)> {
        self.state
            .tenants
            .get(tenant_id)
            .map(|t| (t.quota.clone(), t.usage))
    }

    /// How many more replicas of `resources` the tenant's quota admits now (its nominal quota,
    /// its borrow limit and its cohort's idle quota), up to `cap`. A tenant not seen yet has the
    /// default quota and no use.
    pub fn quota_headroom(&self, tenant_id: &str, resources: &Resources, cap: u32) -> u32 {
        let per = ResourceVector {
            gpu_milli: resources.gpu_milli_total(),
            cpu: resources.cpu,
            mem: resources.mem,
            tpu: u64::from(resources.tpu),
        };
        let admits = |k: u32| -> bool {
            let add = per.times(u64::from(k));
            if self.state.tenants.contains_key(tenant_id) {
                self.quota_check(tenant_id, &add).is_ok()
            } else {
                Quota::gpus(self.config.max_tenant_gpus)
                    .admits(&ResourceVector::ZERO, &add)
                    .is_ok()
            }
        };
        // Admission is monotone in the amount added: binary search the largest k admitted.
        let (mut lo, mut hi) = (0u32, cap);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if admits(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// A tenant's queue length.
    pub fn queue_depth(&self, tenant_id: &str) -> usize {
        self.state
            .tenants
            .get(tenant_id)
            .map_or(0, |t| t.queue.len())
    }

    /// A tenant's dominant share: its largest share of any resource of the healthy nodes.
    pub fn dominant_share_of(&self, tenant_id: &str) -> f64 {
        self.state
            .tenants
            .get(tenant_id)
            .map_or(0.0, |t| self.dominant_share(t))
    }

    /// Allocated and allocatable resources over healthy nodes.
    pub fn allocation(&self) -> (ResourceVector, ResourceVector) {
        let mut used = ResourceVector::ZERO;
        for n in self
            .state
            .cluster
            .nodes()
            .iter()
            .filter(|n| n.health() == NodeHealth::Healthy)
        {
            used.gpu_milli += n.gpu_capacity() - n.gpu_free_total();
            used.cpu += n.spec().cpu_milli - n.cpu_free();
            used.mem += n.spec().memory_mib - n.mem_free();
            used.tpu += u64::from(n.spec().tpus - n.tpu_free());
        }
        let s = self.state.cluster.stats();
        (
            used,
            ResourceVector {
                gpu_milli: s.gpu_milli,
                cpu: s.cpu,
                mem: s.mem,
                tpu: s.tpu,
            },
        )
    }

    /// Requests currently held (any phase, including retained terminal ones).
    pub fn request_count(&self) -> usize {
        self.state.requests.len()
    }

    /// Checks every invariant from scratch: no node or device over-committed, allocations equal
    /// the sum of placements, no tenant over its ceiling, no cohort over its nominal sum, every
    /// request in exactly one place (queue, nodes, or terminal). Returns what is broken.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let c = &self.state.cluster;
        let nodes = c.nodes();
        let mut cpu = vec![0u64; nodes.len()];
        let mut mem = vec![0u64; nodes.len()];
        let mut tpu = vec![0u32; nodes.len()];
        let mut gpu: Vec<Vec<u32>> = nodes.iter().map(|n| vec![0; n.gpu_count()]).collect();
        let mut residents: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); nodes.len()];
        let mut usage: BTreeMap<Arc<str>, ResourceVector> = BTreeMap::new();
        let mut queued = 0usize;
        for r in self.state.requests.values() {
            let t = self
                .state
                .tenants
                .get(&r.tenant)
                .ok_or(format!("request {} has no tenant state", r.id))?;
            match r.phase {
                Phase::Placed | Phase::Running => {
                    if r.slots.len() != r.replicas as usize {
                        return Err(format!(
                            "request {} holds {} of {} replicas",
                            r.id,
                            r.slots.len(),
                            r.replicas
                        ));
                    }
                    for &(n, mask) in &r.slots {
                        let i = n as usize;
                        let node = nodes
                            .get(i)
                            .ok_or(format!("request {} on unknown node {n}", r.id))?;
                        if node.health() != NodeHealth::Healthy {
                            return Err(format!(
                                "request {} placed on {:?} node {}",
                                r.id,
                                node.health(),
                                node.id()
                            ));
                        }
                        cpu[i] += r.demand.cpu;
                        mem[i] += r.demand.mem;
                        tpu[i] += r.demand.tpu;
                        if mask.count_ones() != r.demand.gpus {
                            return Err(format!(
                                "request {} replica has {} devices, wants {}",
                                r.id,
                                mask.count_ones(),
                                r.demand.gpus
                            ));
                        }
                        for (d, g) in gpu[i].iter_mut().enumerate() {
                            if mask & (1u64 << d) != 0 {
                                if !r.demand.model_ok(node.gpu_model(d)) {
                                    return Err(format!(
                                        "request {} on a device of the wrong model",
                                        r.id
                                    ));
                                }
                                *g += r.demand.milli;
                            }
                        }
                        if mask >> nodes[i].gpu_count().min(63) > 0 && nodes[i].gpu_count() < 64 {
                            return Err(format!(
                                "request {} uses a device index beyond node {}",
                                r.id,
                                node.id()
                            ));
                        }
                        residents[i].insert(r.id);
                    }
                    let u = usage.entry(r.tenant.clone()).or_default();
                    *u = u.saturating_add(r.total());
                    if !t.placed.contains(&r.id) || (r.borrowed != t.borrowed.contains(&r.id)) {
                        return Err(format!(
                            "request {} missing from its tenant's placed/borrowed sets",
                            r.id
                        ));
                    }
                }
                Phase::Queued => {
                    queued += 1;
                    if t.queue.get(&r.queue_key()) != Some(&r.id) || !r.slots.is_empty() {
                        return Err(format!(
                            "queued request {} is not in its tenant's queue",
                            r.id
                        ));
                    }
                }
                _ => {
                    if !r.slots.is_empty() {
                        return Err(format!("terminal request {} still holds slots", r.id));
                    }
                }
            }
        }
        c.check_indexes()?;
        for (i, n) in nodes.iter().enumerate() {
            if cpu[i] != n.spec().cpu_milli - n.cpu_free()
                || mem[i] != n.spec().memory_mib - n.mem_free()
                || tpu[i] != n.spec().tpus - n.tpu_free()
            {
                return Err(format!(
                    "node {} counters differ from its placements",
                    n.id()
                ));
            }
            if cpu[i] > n.spec().cpu_milli || mem[i] > n.spec().memory_mib || tpu[i] > n.spec().tpus
            {
                return Err(format!("node {} over-committed", n.id()));
            }
            for (d, &g) in gpu[i].iter().enumerate() {
                if g > 1000 || g != 1000 - n.gpu_free(d) {
                    return Err(format!(
                        "node {} device {d}: {g} milli placed, counter says {}",
                        n.id(),
                        1000 - n.gpu_free(d)
                    ));
                }
            }
            if residents[i] != n.residents().collect::<BTreeSet<u64>>() {
                return Err(format!(
                    "node {} resident set differs from placements",
                    n.id()
                ));
            }
        }
        let mut in_queues = 0usize;
        for (name, t) in &self.state.tenants {
            let u = usage.get(name).copied().unwrap_or_default();
            if u != t.usage {
                return Err(format!(
                    "tenant {name} usage {} differs from placements {u}",
                    t.usage
                ));
            }
            if !u.fits_in(&t.quota.ceiling()) {
                return Err(format!(
                    "tenant {name} uses {u}, above its ceiling {}",
                    t.quota.ceiling()
                ));
            }
            if t.placed.iter().any(|id| {
                !self
                    .state
                    .requests
                    .get(id)
                    .is_some_and(|r| r.phase.holds_capacity())
            }) {
                return Err(format!(
                    "tenant {name} lists a placed request that is not placed"
                ));
            }
            in_queues += t.queue.len();
        }
        if in_queues != queued {
            return Err(format!(
                "{in_queues} queue entries for {queued} queued requests"
            ));
        }
        let cohorts: BTreeSet<&str> = self
            .state
            .tenants
            .values()
            .map(|t| t.quota.cohort.as_str())
            .collect();
        for cohort in cohorts {
            for (i, res) in RESOURCES.iter().enumerate() {
                let (u, n) = self.cohort_totals(cohort, i);
                if u > n {
                    return Err(format!(
                        "cohort {cohort} uses {u} {res}, above its nominal sum {n}"
                    ));
                }
            }
        }
        Ok(())
    }
}
