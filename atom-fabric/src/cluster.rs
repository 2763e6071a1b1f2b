//! Nodes and their free capacity, indexed by free capacity, and the filter-then-score search.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::FabricError;
use crate::model::{Constraints, LABEL_PRICE, LABEL_REGION, NodeSpec};
use crate::scoring::{LatencyTable, ScanOrder, ScoreContext, ScoreScratch, ScorerSet};
use crate::workload::WorkloadDistribution;

/// Health of a node as the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeHealth {
    /// Heartbeats arrive; new work may be placed.
    Healthy,
    /// Heartbeat timeout passed; its work was re-queued.
    Unhealthy,
    /// Drained by an operator; no new work.
    Draining,
}

/// A registered node and its current allocations (read-only view for scorers and status).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    spec: NodeSpec,
    gpu_models: Vec<u32>,
    gpu_used: Vec<u32>,
    cpu_used: u64,
    mem_used: u64,
    tpu_used: u32,
    health: NodeHealth,
    last_heartbeat_ms: u64,
    residents: BTreeSet<u64>,
    price: Option<f64>,
}

impl Node {
    /// The node's id.
    pub fn id(&self) -> &str {
        &self.spec.id
    }
    /// What the node offers.
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }
    /// Current health.
    pub fn health(&self) -> NodeHealth {
        self.health
    }
    /// Time of the last heartbeat (ms).
    pub fn last_heartbeat_ms(&self) -> u64 {
        self.last_heartbeat_ms
    }
    /// Free CPU (millicores).
    pub fn cpu_free(&self) -> u64 {
        self.spec.cpu_milli - self.cpu_used
    }
    /// Free memory (MiB).
    pub fn mem_free(&self) -> u64 {
        self.spec.memory_mib - self.mem_used
    }
    /// Free TPUs.
    pub fn tpu_free(&self) -> u32 {
        self.spec.tpus - self.tpu_used
    }
    /// Number of GPU devices.
    pub fn gpu_count(&self) -> usize {
        self.gpu_used.len()
    }
    /// Free milli-GPUs of device `i` (0 for an unknown index).
    pub fn gpu_free(&self, i: usize) -> u32 {
        self.gpu_used.get(i).map_or(0, |u| 1000 - u)
    }
    /// Interned model id of device `i` (see [`Cluster::gpu_model_name`]).
    pub fn gpu_model(&self, i: usize) -> u32 {
        self.gpu_models.get(i).copied().unwrap_or(u32::MAX)
    }
    /// Free milli-GPUs over all devices.
    pub fn gpu_free_total(&self) -> u64 {
        self.gpu_used.iter().map(|u| u64::from(1000 - u)).sum()
    }
    /// Milli-GPU capacity over all devices.
    pub fn gpu_capacity(&self) -> u64 {
        self.gpu_used.len() as u64 * 1000
    }
    /// (fully free devices, largest free share): the keys of the GPU indexes.
    fn gpu_keys(&self) -> (u64, u64) {
        let whole = self.gpu_used.iter().filter(|&&u| u == 0).count() as u64;
        let best = self
            .gpu_used
            .iter()
            .map(|&u| u64::from(1000 - u))
            .max()
            .unwrap_or(0);
        (whole, best)
    }

    /// Price per device-hour from the `price_per_device_hour` label.
    pub fn price(&self) -> Option<f64> {
        self.price
    }
    /// Region label.
    pub fn region(&self) -> Option<&str> {
        self.spec.labels.get(LABEL_REGION).map(String::as_str)
    }
    /// Ids of the requests with replicas on this node.
    pub fn residents(&self) -> impl Iterator<Item = u64> + '_ {
        self.residents.iter().copied()
    }
    /// Whether new work may be placed here.
    pub fn schedulable(&self) -> bool {
        self.health == NodeHealth::Healthy
    }
}

/// One replica's needs, with GPU models resolved to interned ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Demand {
    /// GPU devices.
    pub gpus: u32,
    /// Milli-GPUs on each device (1000 = whole).
    pub milli: u32,
    /// CPU millicores.
    pub cpu: u64,
    /// Memory MiB.
    pub mem: u64,
    /// TPUs.
    pub tpu: u32,
    /// Qubits of quantum capacity needed.
    pub qubits: u32,
    /// Accepted GPU model ids (None = any).
    pub models: Option<Vec<u32>>,
}

impl Demand {
    /// Milli-GPUs of one replica.
    pub fn gpu_total(&self) -> u64 {
        u64::from(self.gpus) * u64::from(self.milli)
    }
    /// Whether a device of model `m` is acceptable.
    pub fn model_ok(&self, m: u32) -> bool {
        self.models.as_ref().is_none_or(|ms| ms.contains(&m))
    }
}

/// Cluster-wide figures the scorers and fairness need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterStats {
    /// Highest device-hour price seen.
    pub max_price: f64,
    /// Largest node GPU capacity seen (milli).
    pub max_node_gpu_milli: u64,
    /// Largest node CPU seen.
    pub max_node_cpu: u64,
    /// Largest node memory seen.
    pub max_node_mem: u64,
    /// Allocatable milli-GPUs on healthy nodes.
    pub gpu_milli: u64,
    /// Allocatable CPU on healthy nodes.
    pub cpu: u64,
    /// Allocatable memory on healthy nodes.
    pub mem: u64,
    /// Allocatable TPUs on healthy nodes.
    pub tpu: u64,
    /// Allocatable milli-GPUs per interned GPU model on healthy nodes.
    pub model_milli: Vec<u64>,
    /// Bumped whenever the totals change (for caches derived from them).
    pub epoch: u64,
    /// `whole_free[k]`: schedulable GPU nodes with exactly `k` wholly free devices.
    pub whole_free: Vec<u32>,
    /// `gpu_sizes[k]`: schedulable GPU nodes with exactly `k` devices.
    pub gpu_sizes: Vec<u32>,
}

impl ClusterStats {
    /// Placements of `g` whole GPUs the fleet could still take on wholly free devices, and how
    /// many it could take empty (nodes count `floor(devices / g)` each).
    ///
    /// ```
    /// let s = atom_fabric::cluster::ClusterStats { whole_free: vec![0, 1, 0, 2], gpu_sizes: vec![0, 0, 0, 3], ..Default::default() };
    /// assert_eq!(s.whole_slots(2), (2, 3));
    /// ```
    pub fn whole_slots(&self, g: u32) -> (u64, u64) {
        let g = u64::from(g.max(1));
        let slots = |hist: &[u32]| -> u64 {
            hist.iter()
                .enumerate()
                .map(|(k, &c)| k as u64 / g * u64::from(c))
                .sum()
        };
        (slots(&self.whole_free), slots(&self.gpu_sizes))
    }

    fn bump(hist: &mut Vec<u32>, k: u64, add: bool) {
        let k = k as usize;
        if hist.len() <= k {
            hist.resize(k + 1, 0);
        }
        if add {
            hist[k] += 1;
        } else {
            hist[k] = hist[k].saturating_sub(1);
        }
    }
}

/// A chosen node and devices for one replica.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Found {
    pub node: u32,
    pub mask: u64,
    pub total: f64,
    pub candidates: u32,
}

/// Per-request filter facts borrowed from its constraints.
pub(crate) struct Filter<'a> {
    pub constraints: &'a Constraints,
    pub latency: &'a LatencyTable,
}

/// The nodes, their allocations and the free-capacity indexes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cluster {
    nodes: Vec<Node>,
    by_id: BTreeMap<String, u32>,
    models: Vec<String>,
    #[serde(skip)]
    model_ids: HashMap<String, u32>,
    #[serde(skip)]
    whole_index: BTreeSet<(u64, u32)>,
    #[serde(skip)]
    share_index: BTreeSet<(u64, u32)>,
    #[serde(skip)]
    cpu_index: BTreeSet<(u64, u32)>,
    #[serde(skip)]
    stats: ClusterStats,
}

impl Cluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the derived indexes after deserialisation.
    pub(crate) fn rebuild(&mut self) {
        self.model_ids = self
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.clone(), i as u32))
            .collect();
        self.whole_index.clear();
        self.share_index.clear();
        self.cpu_index.clear();
        self.stats = ClusterStats::default();
        for i in 0..self.nodes.len() {
            self.note_maxima(i);
            self.add_totals(i);
            self.index_insert(i as u32);
        }
    }

    /// Interns a GPU model name.
    pub(crate) fn intern_model(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.model_ids.get(name) {
            return id;
        }
        let id = self.models.len() as u32;
        self.models.push(name.to_string());
        self.model_ids.insert(name.to_string(), id);
        id
    }

    /// One replica's needs for `req`, with its accepted GPU models (`"A100|H100"`) interned.
    pub(crate) fn demand_of(&mut self, req: &crate::model::ScheduleRequest) -> Demand {
        let models = req.constraints.gpu_model.as_ref().map(|spec| {
            let mut ids: Vec<u32> = spec
                .split('|')
                .map(|m| self.intern_model(m.trim()))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        });
        let r = &req.resources;
        Demand {
            gpus: r.gpu,
            milli: r.milli_per_device(),
            cpu: r.cpu,
            mem: r.mem,
            tpu: r.tpu,
            qubits: r.qubits,
            models,
        }
    }

    /// The name of an interned GPU model id.
    pub fn gpu_model_name(&self, id: u32) -> Option<&str> {
        self.models.get(id as usize).map(String::as_str)
    }

    /// All nodes in registration order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// A node by index.
    pub(crate) fn node_at(&self, idx: u32) -> &Node {
        &self.nodes[idx as usize]
    }

    /// The index of a node id.
    pub fn index_of(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// A node by id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.index_of(id).map(|i| &self.nodes[i as usize])
    }

    /// Cluster-wide figures.
    pub fn stats(&self) -> &ClusterStats {
        &self.stats
    }

    /// Registers a node or replaces the spec of a registered one (its allocations must still fit).
    /// Returns the node index and whether it was new.
    pub(crate) fn register(
        &mut self,
        spec: NodeSpec,
        now_ms: u64,
    ) -> Result<(u32, bool), FabricError> {
        spec.validate()?;
        let price = spec
            .labels
            .get(LABEL_PRICE)
            .and_then(|p| p.parse::<f64>().ok());
        if let Some(idx) = self.index_of(&spec.id) {
            let i = idx as usize;
            let old = &self.nodes[i];
            let same_gpus = old.spec.gpus.len() == spec.gpus.len()
                && old
                    .spec
                    .gpus
                    .iter()
                    .zip(&spec.gpus)
                    .all(|(a, b)| a.model == b.model);
            let fits = old.cpu_used <= spec.cpu_milli
                && old.mem_used <= spec.memory_mib
                && old.tpu_used <= spec.tpus
                && (same_gpus || old.gpu_used.iter().all(|&u| u == 0));
            if !fits {
                return Err(FabricError::NodeSpecConflict {
                    node: spec.id.clone(),
                    detail: "allocated CPU, memory, TPUs or GPU devices exceed the new spec".into(),
                });
            }
            let gpu_models: Vec<u32> = spec
                .gpus
                .iter()
                .map(|g| self.intern_model(&g.model))
                .collect();
            self.index_remove(idx);
            self.sub_totals(i);
            let node = &mut self.nodes[i];
            if !same_gpus {
                node.gpu_used = vec![0; spec.gpus.len()];
            }
            node.gpu_models = gpu_models;
            node.spec = spec;
            node.price = price;
            node.health = NodeHealth::Healthy;
            node.last_heartbeat_ms = now_ms;
            // The maxima are over the nodes as they are now (a restored cluster recomputes them
            // from its nodes), so a spec that shrinks lowers them here too: scorers normalised by
            // them then decide the same way before and after a restart.
            self.recompute_maxima();
            self.add_totals(i);
            self.index_insert(idx);
            return Ok((idx, false));
        }
        let gpu_models: Vec<u32> = spec
            .gpus
            .iter()
            .map(|g| self.intern_model(&g.model))
            .collect();
        let idx = self.nodes.len() as u32;
        self.by_id.insert(spec.id.clone(), idx);
        self.nodes.push(Node {
            gpu_used: vec![0; spec.gpus.len()],
            gpu_models,
            spec,
            cpu_used: 0,
            mem_used: 0,
            tpu_used: 0,
            health: NodeHealth::Healthy,
            last_heartbeat_ms: now_ms,
            residents: BTreeSet::new(),
            price,
        });
        self.note_maxima(idx as usize);
        self.add_totals(idx as usize);
        self.index_insert(idx);
        Ok((idx, true))
    }

    /// Recomputes the per-node maxima of the statistics from the registered nodes.
    fn recompute_maxima(&mut self) {
        let s = &mut self.stats;
        s.max_price = 0.0;
        s.max_node_gpu_milli = 0;
        s.max_node_cpu = 0;
        s.max_node_mem = 0;
        for i in 0..self.nodes.len() {
            self.note_maxima(i);
        }
    }

    fn note_maxima(&mut self, i: usize) {
        let n = &self.nodes[i];
        let s = &mut self.stats;
        s.max_price = s.max_price.max(n.price.unwrap_or(0.0));
        s.max_node_gpu_milli = s.max_node_gpu_milli.max(n.gpu_capacity());
        s.max_node_cpu = s.max_node_cpu.max(n.spec.cpu_milli);
        s.max_node_mem = s.max_node_mem.max(n.spec.memory_mib);
    }

    fn add_totals(&mut self, i: usize) {
        let n = &self.nodes[i];
        if n.health == NodeHealth::Healthy {
            let s = &mut self.stats;
            s.gpu_milli += n.gpu_capacity();
            s.cpu += n.spec.cpu_milli;
            s.mem += n.spec.memory_mib;
            s.tpu += u64::from(n.spec.tpus);
            s.epoch += 1;
            for &m in &n.gpu_models {
                if s.model_milli.len() <= m as usize {
                    s.model_milli.resize(m as usize + 1, 0);
                }
                s.model_milli[m as usize] += 1000;
            }
        }
    }

    fn sub_totals(&mut self, i: usize) {
        let n = &self.nodes[i];
        if n.health == NodeHealth::Healthy {
            let s = &mut self.stats;
            s.gpu_milli -= n.gpu_capacity();
            s.cpu -= n.spec.cpu_milli;
            s.mem -= n.spec.memory_mib;
            s.tpu -= u64::from(n.spec.tpus);
            s.epoch += 1;
            for &m in &n.gpu_models {
                if let Some(c) = s.model_milli.get_mut(m as usize) {
                    *c -= 1000;
                }
            }
        }
    }

    /// Sets a node's health, keeping indexes and totals in step.
    pub(crate) fn set_health(&mut self, idx: u32, health: NodeHealth) {
        self.index_remove(idx);
        self.sub_totals(idx as usize);
        self.nodes[idx as usize].health = health;
        self.add_totals(idx as usize);
        self.index_insert(idx);
    }

    /// Records a heartbeat.
    pub(crate) fn touch(&mut self, idx: u32, now_ms: u64) {
        let n = &mut self.nodes[idx as usize];
        n.last_heartbeat_ms = n.last_heartbeat_ms.max(now_ms);
    }

    /// Adds a model to the node's cache list.
    pub(crate) fn cache_model(&mut self, idx: u32, model: &str) {
        let n = &mut self.nodes[idx as usize];
        if !n.spec.cached_models.contains(model) {
            n.spec.cached_models.insert(model.to_string());
        }
    }

    /// Replaces the node's cached model list.
    pub(crate) fn set_cached_models(&mut self, idx: u32, models: BTreeSet<String>) {
        self.nodes[idx as usize].spec.cached_models = models;
    }

    fn index_remove(&mut self, idx: u32) {
        let n = &self.nodes[idx as usize];
        if n.schedulable() {
            if n.gpu_count() > 0 {
                let (whole, best) = n.gpu_keys();
                self.whole_index.remove(&(whole, idx));
                self.share_index.remove(&(best, idx));
                ClusterStats::bump(&mut self.stats.whole_free, whole, false);
                ClusterStats::bump(&mut self.stats.gpu_sizes, n.gpu_count() as u64, false);
            }
            self.cpu_index.remove(&(n.cpu_free(), idx));
        }
    }

    fn index_insert(&mut self, idx: u32) {
        let n = &self.nodes[idx as usize];
        if n.schedulable() {
            if n.gpu_count() > 0 {
                let (whole, best) = n.gpu_keys();
                self.whole_index.insert((whole, idx));
                self.share_index.insert((best, idx));
                ClusterStats::bump(&mut self.stats.whole_free, whole, true);
                ClusterStats::bump(&mut self.stats.gpu_sizes, n.gpu_count() as u64, true);
            }
            self.cpu_index.insert((n.cpu_free(), idx));
        }
    }

    /// Takes one replica's resources on a node. The caller found `mask` with [`Cluster::find`].
    pub(crate) fn allocate(&mut self, idx: u32, d: &Demand, mask: u64, request: u64) {
        let before = self.index_keys(idx);
        let n = &mut self.nodes[idx as usize];
        n.cpu_used += d.cpu;
        n.mem_used += d.mem;
        n.tpu_used += d.tpu;
        for (i, used) in n.gpu_used.iter_mut().enumerate() {
            if mask & (1u64 << i) != 0 {
                *used += d.milli;
            }
        }
        n.residents.insert(request);
        self.index_update(idx, before);
    }

    /// Whether the scan indexes hold exactly the schedulable nodes under their current keys
    /// (they are updated in place on every allocation; a stale key would hide a node from
    /// the scan or offer one that no longer fits).
    pub(crate) fn check_indexes(&self) -> std::result::Result<(), String> {
        let mut whole = BTreeSet::new();
        let mut share = BTreeSet::new();
        let mut cpu = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some((w, b, c)) = self.index_keys(i as u32) {
                if n.gpu_count() > 0 {
                    whole.insert((w, i as u32));
                    share.insert((b, i as u32));
                }
                cpu.insert((c, i as u32));
            }
        }
        let mut hist = vec![0u32; self.stats.whole_free.len()];
        for &(w, _) in &whole {
            if w as usize >= hist.len() {
                return Err(format!("no whole-free histogram slot for {w} devices"));
            }
            hist[w as usize] += 1;
        }
        if hist != self.stats.whole_free {
            return Err(format!(
                "whole-free histogram {:?}, nodes say {hist:?}",
                self.stats.whole_free
            ));
        }
        for (name, want, have) in [
            ("whole-device", &whole, &self.whole_index),
            ("share", &share, &self.share_index),
            ("cpu", &cpu, &self.cpu_index),
        ] {
            if want != have {
                let stale = have.symmetric_difference(want).next();
                return Err(format!(
                    "the {name} index differs from the nodes' free capacity (first difference: {stale:?})"
                ));
            }
        }
        Ok(())
    }

    /// A node's keys in the (whole, share, cpu) indexes, if it is indexed.
    fn index_keys(&self, idx: u32) -> Option<(u64, u64, u64)> {
        let n = &self.nodes[idx as usize];
        n.schedulable().then(|| {
            let (whole, best) = n.gpu_keys();
            (whole, best, n.cpu_free())
        })
    }

    /// Moves an indexed node whose allocation changed, touching only the keys that changed (a
    /// share taken on a partly used device leaves the whole-device key as it was).
    fn index_update(&mut self, idx: u32, before: Option<(u64, u64, u64)>) {
        let (Some((w0, b0, c0)), Some((w1, b1, c1))) = (before, self.index_keys(idx)) else {
            return;
        };
        if self.nodes[idx as usize].gpu_count() > 0 {
            if w0 != w1 {
                self.whole_index.remove(&(w0, idx));
                self.whole_index.insert((w1, idx));
                ClusterStats::bump(&mut self.stats.whole_free, w0, false);
                ClusterStats::bump(&mut self.stats.whole_free, w1, true);
            }
            if b0 != b1 {
                self.share_index.remove(&(b0, idx));
                self.share_index.insert((b1, idx));
            }
        }
        if c0 != c1 {
            self.cpu_index.remove(&(c0, idx));
            self.cpu_index.insert((c1, idx));
        }
    }

    /// Returns one replica's resources (see [`Cluster::remove_resident`]).
    pub(crate) fn release(&mut self, idx: u32, d: &Demand, mask: u64) {
        let before = self.index_keys(idx);
        let n = &mut self.nodes[idx as usize];
        n.cpu_used -= d.cpu;
        n.mem_used -= d.mem;
        n.tpu_used -= d.tpu;
        for (i, used) in n.gpu_used.iter_mut().enumerate() {
            if mask & (1u64 << i) != 0 {
                *used -= d.milli;
            }
        }
        self.index_update(idx, before);
    }

    /// Forgets that a request has replicas on a node.
    pub(crate) fn remove_resident(&mut self, idx: u32, request: u64) {
        self.nodes[idx as usize].residents.remove(&request);
    }

    /// Whether the node could ever hold the replica (capacity totals and constraints, ignoring
    /// current allocations and health).
    pub(crate) fn static_ok(&self, n: &Node, d: &Demand, f: &Filter<'_>) -> bool {
        if n.spec.cpu_milli < d.cpu
            || n.spec.memory_mib < d.mem
            || n.spec.tpus < d.tpu
            || n.spec.quantum_qubits < d.qubits
        {
            return false;
        }
        if d.gpus > 0 {
            let ok = if d.models.is_none() {
                n.gpu_models.len()
            } else {
                n.gpu_models.iter().filter(|&&m| d.model_ok(m)).count()
            };
            if ok < d.gpus as usize {
                return false;
            }
        }
        let c = f.constraints;
        if !c.labels.is_empty()
            && !c
                .labels
                .iter()
                .all(|(k, v)| n.spec.labels.get(k) == Some(v))
        {
            return false;
        }
        if let Some(region) = &c.region {
            let Some(node_region) = n.region() else {
                return false;
            };
            match c.latency_ms {
                None => {
                    if node_region != region {
                        return false;
                    }
                }
                Some(budget) => match f.latency.rtt_ms(region, node_region) {
                    Some(rtt) if rtt <= budget => {}
                    _ => return false,
                },
            }
        }
        true
    }

    /// Candidate device sets for one replica on a node as it is now (empty when it does not fit).
    pub(crate) fn candidates(n: &Node, d: &Demand, out: &mut Vec<u64>) {
        out.clear();
        if n.cpu_free() < d.cpu || n.mem_free() < d.mem || n.tpu_free() < d.tpu {
            return;
        }
        if d.gpus == 0 {
            out.push(0);
            return;
        }
        if d.milli >= 1000 {
            let mut mask = 0u64;
            let mut got = 0;
            for i in 0..n.gpu_count() {
                if n.gpu_used[i] == 0 && d.model_ok(n.gpu_models[i]) {
                    mask |= 1u64 << i;
                    got += 1;
                    if got == d.gpus {
                        out.push(mask);
                        return;
                    }
                }
            }
            return;
        }
        if d.gpus == 1 {
            // Devices with the same model and free share are interchangeable: one candidate each.
            let mut seen: [(u32, u32); crate::model::MAX_GPUS_PER_NODE] =
                [(u32::MAX, u32::MAX); crate::model::MAX_GPUS_PER_NODE];
            let mut nseen = 0;
            for i in 0..n.gpu_count() {
                let free = 1000 - n.gpu_used[i];
                let m = n.gpu_models[i];
                if free >= d.milli && d.model_ok(m) && !seen[..nseen].contains(&(m, free)) {
                    seen[nseen] = (m, free);
                    nseen += 1;
                    out.push(1u64 << i);
                }
            }
            return;
        }
        // Several fractional devices: the fullest devices that still fit, to keep whole ones free.
        let mut fit: Vec<(u32, usize)> = (0..n.gpu_count())
            .filter(|&i| 1000 - n.gpu_used[i] >= d.milli && d.model_ok(n.gpu_models[i]))
            .map(|i| (1000 - n.gpu_used[i], i))
            .collect();
        if fit.len() >= d.gpus as usize {
            fit.sort_unstable();
            out.push(
                fit.iter()
                    .take(d.gpus as usize)
                    .fold(0u64, |m, &(_, i)| m | (1u64 << i)),
            );
        }
    }

    /// Whether any registered node (healthy or not) could ever hold the replica.
    pub(crate) fn any_static_ok(&self, d: &Demand, f: &Filter<'_>) -> bool {
        self.nodes.iter().any(|n| self.static_ok(n, d, f))
    }

    /// Filter then score: the best node and devices for one replica, or None.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn find(
        &self,
        d: &Demand,
        f: &Filter<'_>,
        scorers: &ScorerSet,
        workload: &WorkloadDistribution,
        model_id: &str,
        limit: Option<usize>,
        scratch: &mut ScoreScratch,
    ) -> Option<Found> {
        let ctx = ScoreContext {
            stats: &self.stats,
            workload,
            latency: f.latency,
            constraints: f.constraints,
            model_id,
        };
        let mut state = ScanState {
            best: None,
            feasible: 0,
            cands: std::mem::take(&mut scratch.candidates),
        };
        let first_wins = scorers.first_feasible_wins();
        let limit = limit.unwrap_or(usize::MAX).max(1);
        let visit = |idx: u32, scratch: &mut ScoreScratch, st: &mut ScanState| -> bool {
            let n = &self.nodes[idx as usize];
            if !n.schedulable() || !self.static_ok(n, d, f) {
                return true;
            }
            Self::candidates(n, d, &mut st.cands);
            if st.cands.is_empty() {
                return true;
            }
            st.feasible += 1;
            for k in 0..st.cands.len() {
                let mask = st.cands[k];
                let s = scorers.total(n, d, mask, &ctx, scratch);
                let better = match st.best {
                    None => true,
                    Some((bs, bi, bm)) => s > bs || (s == bs && (idx, mask) < (bi, bm)),
                };
                if better {
                    st.best = Some((s, idx, mask));
                }
                if first_wins {
                    return false;
                }
            }
            (st.feasible as usize) < limit
        };
        match scorers.scan_order() {
            ScanOrder::NodeOrder => {
                for idx in 0..self.nodes.len() as u32 {
                    if !visit(idx, scratch, &mut state) {
                        break;
                    }
                }
            }
            order => {
                // Exact GPU feasibility keys (model constraints aside): whole devices by the
                // count of fully free devices, shares by the largest free share.
                let (index, lower) = if d.gpus == 0 {
                    (&self.cpu_index, d.cpu)
                } else if d.milli >= 1000 {
                    (&self.whole_index, u64::from(d.gpus))
                } else {
                    (&self.share_index, u64::from(d.milli))
                };
                let range = index.range((lower, 0)..);
                if order == ScanOrder::MostFreeFirst {
                    for &(_, idx) in range.rev() {
                        if !visit(idx, scratch, &mut state) {
                            break;
                        }
                    }
                } else {
                    for &(_, idx) in range {
                        if !visit(idx, scratch, &mut state) {
                            break;
                        }
                    }
                }
            }
        }
        scratch.candidates = state.cands;
        state.best.map(|(total, node, mask)| Found {
            node,
            mask,
            total,
            candidates: state.feasible,
        })
    }
}

struct ScanState {
    best: Option<(f64, u32, u64)>,
    feasible: u32,
    cands: Vec<u64>,
}

/// Device indices of a mask.
pub(crate) fn mask_devices(mask: u64) -> Vec<u32> {
    (0..64u32).filter(|i| mask & (1u64 << i) != 0).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn demand(gpus: u32, milli: u32, cpu: u64) -> Demand {
        Demand {
            gpus,
            milli,
            cpu,
            mem: 0,
            tpu: 0,
            qubits: 0,
            models: None,
        }
    }

    #[test]
    fn fractional_candidates_dedupe_equal_devices() {
        let mut c = Cluster::new();
        let (idx, _) = c
            .register(NodeSpec::new("n", 8000, 1000).with_gpus("T4", 4, 0), 0)
            .unwrap();
        c.allocate(idx, &demand(1, 300, 0), 0b0001, 1);
        let mut out = Vec::new();
        Cluster::candidates(c.node_at(idx), &demand(1, 500, 0), &mut out);
        // device 0 has 700 free, devices 1..3 have 1000 free: two distinct candidates.
        assert_eq!(out, vec![0b0001, 0b0010]);
        Cluster::candidates(c.node_at(idx), &demand(1, 800, 0), &mut out);
        assert_eq!(out, vec![0b0010]);
        Cluster::candidates(c.node_at(idx), &demand(4, 1000, 0), &mut out);
        assert!(out.is_empty(), "only three whole devices are free");
        Cluster::candidates(c.node_at(idx), &demand(3, 1000, 0), &mut out);
        assert_eq!(out, vec![0b1110]);
    }

    #[test]
    fn allocate_and_release_restore_indexes() {
        let mut c = Cluster::new();
        let (idx, _) = c
            .register(NodeSpec::new("n", 8000, 1000).with_gpus("T4", 2, 0), 0)
            .unwrap();
        c.allocate(idx, &demand(1, 250, 1000), 0b10, 7);
        assert_eq!(c.node_at(idx).gpu_free_total(), 1750);
        assert!(c.share_index.contains(&(1000, idx)) && c.whole_index.contains(&(1, idx)));
        assert!(c.cpu_index.contains(&(7000, idx)));
        c.release(idx, &demand(1, 250, 1000), 0b10);
        c.remove_resident(idx, 7);
        assert!(c.share_index.contains(&(1000, idx)) && c.whole_index.contains(&(2, idx)));
        assert_eq!(c.node_at(idx).residents().count(), 0);
    }

    #[test]
    fn unhealthy_nodes_leave_the_index() {
        let mut c = Cluster::new();
        let (idx, _) = c
            .register(NodeSpec::new("n", 8000, 1000).with_gpus("T4", 2, 0), 0)
            .unwrap();
        assert_eq!(c.stats().gpu_milli, 2000);
        c.set_health(idx, NodeHealth::Unhealthy);
        assert!(c.whole_index.is_empty() && c.share_index.is_empty() && c.cpu_index.is_empty());
        assert_eq!(c.stats().gpu_milli, 0);
    }
}
