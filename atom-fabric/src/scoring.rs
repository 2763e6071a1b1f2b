//! Scorers: the pluggable second half of filter-then-score, and their weighted combination.
//!
//! Every built-in scorer returns a value where higher is better (0..=100 for the normalised
//! ones). A [`ScorerSet`] combines scorers by weight and says in which order to scan nodes.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// A small multiplicative hasher for the fragmentation cache (keys are plain integers; SipHash's
/// flooding resistance buys nothing here and costs most of a lookup).
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Eight bytes per round: slices of small integers (a node's free shares) hash in a few
        // multiplications instead of one per byte.
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

use crate::cluster::{ClusterStats, Demand, Node};
use crate::model::{Constraints, ScoreBreakdown, ScorePart};
use crate::workload::{
    WorkloadDistribution, expected_fragmentation, fragmentation_with, gpu_usable, model_contention,
};

/// Round-trip times between regions, for the latency filter and scorer.
///
/// ```
/// use atom_fabric::LatencyTable;
/// let t = LatencyTable::new(2).with("eu-west", "us-east", 80);
/// assert_eq!(t.rtt_ms("us-east", "eu-west"), Some(80));
/// assert_eq!(t.rtt_ms("eu-west", "eu-west"), Some(2));
/// assert_eq!(t.rtt_ms("eu-west", "ap-south"), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyTable {
    /// Round trip inside one region (ms).
    pub same_region_ms: u32,
    /// Round trips between regions (ms); looked up in both directions.
    pub rtt_ms: BTreeMap<String, BTreeMap<String, u32>>,
}

impl LatencyTable {
    /// A table with only the intra-region round trip.
    pub fn new(same_region_ms: u32) -> Self {
        Self {
            same_region_ms,
            rtt_ms: BTreeMap::new(),
        }
    }

    /// Adds a symmetric round trip.
    pub fn with(mut self, a: &str, b: &str, ms: u32) -> Self {
        self.rtt_ms
            .entry(a.to_string())
            .or_default()
            .insert(b.to_string(), ms);
        self
    }

    /// The round trip between two regions, if known.
    pub fn rtt_ms(&self, a: &str, b: &str) -> Option<u32> {
        if a == b {
            return Some(self.same_region_ms);
        }
        self.rtt_ms
            .get(a)
            .and_then(|m| m.get(b))
            .or_else(|| self.rtt_ms.get(b).and_then(|m| m.get(a)))
            .copied()
    }
}

/// What a scorer may look at besides the node.
#[derive(Debug, Clone, Copy)]
pub struct ScoreContext<'a> {
    /// Cluster-wide maxima and totals.
    pub stats: &'a ClusterStats,
    /// The workload's GPU request distribution.
    pub workload: &'a WorkloadDistribution,
    /// Region round-trip table.
    pub latency: &'a LatencyTable,
    /// The request's constraints.
    pub constraints: &'a Constraints,
    /// The request's model id (for locality).
    pub model_id: &'a str,
}

/// Reusable scratch space: candidate buffers and the fragmentation cache.
#[derive(Debug, Default)]
pub struct ScoreScratch {
    pub(crate) candidates: Vec<u64>,
    frag_memo: HashMap<FragKey, f64, BuildHasherDefault<FastHasher>>,
    /// Per GPU shape (model, count, sorted free shares): each type's `gpu_usable`.
    gpu_memo: HashMap<GpuShape, Vec<(u64, u64)>, BuildHasherDefault<FastHasher>>,
    memo_version: u64,
}

/// A node's GPU shape: its one model, device count and sorted free shares.
type GpuShape = (u32, u8, [u16; 8]);

/// A node's GPU shape (one model, sorted free shares) and free CPU and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FragKey {
    model: u32,
    n: u8,
    free: [u16; 8],
    cpu: u64,
    mem: u64,
}

impl std::hash::Hash for FragKey {
    // Five words instead of the derive's field-by-field (and, for the shares, byte-by-byte) feed:
    // this hash is on every candidate node's score.
    fn hash<H: Hasher>(&self, h: &mut H) {
        let word = |q: &[u16]| q.iter().fold(0u64, |acc, &v| (acc << 16) | u64::from(v));
        h.write_u64(u64::from(self.model) << 8 | u64::from(self.n));
        h.write_u64(word(&self.free[..4]));
        h.write_u64(word(&self.free[4..]));
        h.write_u64(self.cpu);
        h.write_u64(self.mem);
    }
}

/// A scoring function for one replica on one node with a chosen device set.
///
/// Implement it to plug in a new criterion; combine with [`ScorerSet::with`].
pub trait Scorer: fmt::Debug + Send + Sync {
    /// A short name used in score breakdowns.
    fn name(&self) -> &str;
    /// Higher is better. `devices` is a bit mask of the node's GPU devices the replica would use.
    fn score(
        &self,
        node: &Node,
        demand: &Demand,
        devices: u64,
        ctx: &ScoreContext<'_>,
        scratch: &mut ScoreScratch,
    ) -> f64;
}

fn utilisation_after(node: &Node, d: &Demand) -> f64 {
    let spec = node.spec();
    let mut sum = 0.0;
    let mut k = 0.0;
    if spec.cpu_milli > 0 {
        sum += (spec.cpu_milli - node.cpu_free() + d.cpu) as f64 / spec.cpu_milli as f64;
        k += 1.0;
    }
    if spec.memory_mib > 0 {
        sum += (spec.memory_mib - node.mem_free() + d.mem) as f64 / spec.memory_mib as f64;
        k += 1.0;
    }
    if node.gpu_count() > 0 {
        let cap = node.gpu_capacity() as f64;
        sum += (cap - node.gpu_free_total() as f64 + d.gpu_total() as f64) / cap;
        k += 1.0;
    }
    if k == 0.0 { 0.0 } else { 100.0 * sum / k }
}

/// Most-allocated (kube-scheduler `MostAllocated`): prefers nodes that end up fullest.
#[derive(Debug, Clone, Copy, Default)]
pub struct BinPack;
impl Scorer for BinPack {
    fn name(&self) -> &str {
        "bin_pack"
    }
    fn score(
        &self,
        node: &Node,
        d: &Demand,
        _: u64,
        _: &ScoreContext<'_>,
        _: &mut ScoreScratch,
    ) -> f64 {
        utilisation_after(node, d)
    }
}

/// Least-allocated (kube-scheduler `LeastAllocated`): prefers the emptiest nodes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spread;
impl Scorer for Spread {
    fn name(&self) -> &str {
        "spread"
    }
    fn score(
        &self,
        node: &Node,
        d: &Demand,
        _: u64,
        _: &ScoreContext<'_>,
        _: &mut ScoreScratch,
    ) -> f64 {
        100.0 - utilisation_after(node, d)
    }
}

/// How much taking contended GPU models weighs against fragmentation, tuned on synthetic traces
/// with model-constrained requests: 0 loses most of them, 1 leaves flexible work on scarce models
/// too often, 4 and 6 measure alike (docs/scheduler.md).
const CONTENTION_WEIGHT: f64 = 4.0;

/// GPU-fragmentation-aware (FGD, Weng et al., USENIX ATC '23): prefers the placement that least
/// increases the node's expected GPU fragmentation against the learned workload distribution
/// (`expected_fragmentation`: GPU share the workload could not use, including GPUs
/// stranded because CPU or memory ran out). 50 means no change; each milli-GPU of added
/// fragmentation costs 0.05 points (a whole GPU: 50). Taking GPUs of a model that
/// model-constrained requests contend for adds `CONTENTION_WEIGHT` × its contention (see
/// `model_contention`) per milli-GPU taken, so flexible work leaves scarce models to the work
/// that needs them. A CPU-only request scores by the GPU share it strands.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fragmentation;

/// Sorts up to eight shares in place (insertion sort: the keys are tiny and mostly sorted,
/// and this runs twice per scored candidate).
fn sort_shares(v: &mut [u16]) {
    for i in 1..v.len() {
        let x = v[i];
        let mut j = i;
        while j > 0 && v[j - 1] > x {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = x;
    }
}

impl Fragmentation {
    /// Expected fragmentation of a node whose devices are all of `model`, with the free
    /// shares `free[..n]` (any order), through the memo.
    fn frag_uniform(
        model: u32,
        free: &[u16; 8],
        n: usize,
        cpu_free: u64,
        mem_free: u64,
        w: &WorkloadDistribution,
        scratch: &mut ScoreScratch,
    ) -> f64 {
        if scratch.memo_version != w.version()
            || scratch.frag_memo.len() > 1 << 16
            || scratch.gpu_memo.len() > 1 << 14
        {
            scratch.frag_memo.clear();
            scratch.gpu_memo.clear();
            scratch.memo_version = w.version();
        }
        // Devices of one model are interchangeable: the sorted free shares identify the node.
        let mut sorted = *free;
        sort_shares(&mut sorted[..n]);
        let key = FragKey {
            model,
            n: n as u8,
            free: sorted,
            cpu: cpu_free,
            mem: mem_free,
        };
        if let Some(&v) = scratch.frag_memo.get(&key) {
            return v;
        }
        // Many nodes share a GPU shape with different free CPU and memory: reuse its GPU side.
        let mut devs = [(model, 0u32); 8];
        for (d, &f) in devs.iter_mut().zip(&sorted[..n]) {
            d.1 = u32::from(f);
        }
        let devs = &devs[..n];
        let total: u64 = devs.iter().map(|&(_, f)| u64::from(f)).sum();
        let types = w.frozen();
        let gpu = scratch
            .gpu_memo
            .entry((key.model, key.n, key.free))
            .or_insert_with(|| types.iter().map(|t| gpu_usable(devs, t)).collect());
        let v = fragmentation_with(total, gpu, cpu_free, mem_free, types);
        scratch.frag_memo.insert(key, v);
        v
    }
}

impl Scorer for Fragmentation {
    fn name(&self) -> &str {
        "fragmentation"
    }
    fn score(
        &self,
        node: &Node,
        d: &Demand,
        devices: u64,
        ctx: &ScoreContext<'_>,
        scratch: &mut ScoreScratch,
    ) -> f64 {
        let n = node.gpu_count();
        if n == 0 {
            return 50.0;
        }
        let (cpu, mem) = (node.cpu_free(), node.mem_free());
        let model = node.gpu_model(0);
        let uniform = n <= 8 && (1..n).all(|i| node.gpu_model(i) == model);
        let (before, after) = if uniform {
            let mut free = [0u16; 8];
            for (i, f) in free.iter_mut().enumerate().take(n) {
                *f = node.gpu_free(i) as u16;
            }
            let before = Self::frag_uniform(model, &free, n, cpu, mem, ctx.workload, scratch);
            for (i, f) in free.iter_mut().enumerate().take(n) {
                if devices & (1u64 << i) != 0 {
                    *f -= d.milli as u16;
                }
            }
            let after = Self::frag_uniform(
                model,
                &free,
                n,
                cpu - d.cpu,
                mem - d.mem,
                ctx.workload,
                scratch,
            );
            (before, after)
        } else {
            // Mixed models (or more than eight devices): no memo, the full computation.
            let mut devs = [(0u32, 0u32); crate::model::MAX_GPUS_PER_NODE];
            for (i, slot) in devs.iter_mut().enumerate().take(n) {
                *slot = (node.gpu_model(i), node.gpu_free(i));
            }
            let types = ctx.workload.frozen();
            let before = expected_fragmentation(&devs[..n], cpu, mem, types);
            for (i, slot) in devs.iter_mut().enumerate().take(n) {
                if devices & (1u64 << i) != 0 {
                    slot.1 -= d.milli;
                }
            }
            let after = expected_fragmentation(&devs[..n], cpu - d.cpu, mem - d.mem, types);
            (before, after)
        };
        let mut contention = 0.0;
        if devices != 0 {
            let contention_of = model_contention(ctx.workload.frozen(), &ctx.stats.model_milli);
            for i in 0..n {
                if devices & (1u64 << i) != 0 {
                    contention += contention_of(node.gpu_model(i)) * f64::from(d.milli);
                }
            }
        }
        let scarcity = whole_scarcity(node, devices, ctx);
        50.0 - (after - before + CONTENTION_WEIGHT * contention + scarcity) / 20.0
    }
}

/// How much more than its frequency a lost whole-GPU slot weighs as the fleet runs short of
/// them (0: as FGD; tuned on the published `openb` variants, docs/scheduler.md).
const SCARCITY_WEIGHT: f64 = 0.3;

/// The extra cost (milli-GPUs) of taking wholly free devices that multi-GPU work needs: for
/// each whole-GPU task type of `g` GPUs, the slots of `g` wholly free devices this placement
/// removes, × the type's share × its size, × how far the fleet's remaining such slots have
/// fallen below what it had empty (`empty / left − 1`). FGD weighs a type by its frequency
/// alone, so a rare 8-GPU shape loses every idle node to small work one at a time; this term
/// grows as the last hosts of a shape go.
fn whole_scarcity(node: &Node, devices: u64, ctx: &ScoreContext<'_>) -> f64 {
    if devices == 0 {
        return 0.0;
    }
    let n = node.gpu_count();
    let (mut w0, mut taken) = (0u64, 0u64);
    for i in 0..n {
        if node.gpu_free(i) >= 1000 {
            w0 += 1;
            if devices & (1u64 << i) != 0 {
                taken += 1;
            }
        }
    }
    if taken == 0 {
        return 0.0;
    }
    let w1 = w0 - taken;
    let model = node.gpu_model(0);
    let mut cost = 0.0;
    for t in ctx.workload.frozen() {
        if t.milli < 1000 || t.gpus < 2 || !t.model_ok(model) {
            continue;
        }
        let g = u64::from(t.gpus);
        let lost = w0 / g - w1 / g;
        if lost == 0 {
            continue;
        }
        let (left, empty) = ctx.stats.whole_slots(t.gpus);
        if left == 0 {
            continue;
        }
        let short = (empty as f64 / left as f64 - 1.0).max(0.0);
        cost += t.p * (g * 1000 * lost) as f64 * short;
    }
    SCARCITY_WEIGHT * cost
}

/// Cost: cheaper devices score higher (`price_per_device_hour` label; unpriced nodes score 100).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost;
impl Scorer for Cost {
    fn name(&self) -> &str {
        "cost"
    }
    fn score(
        &self,
        node: &Node,
        _: &Demand,
        _: u64,
        ctx: &ScoreContext<'_>,
        _: &mut ScoreScratch,
    ) -> f64 {
        match node.price() {
            Some(p) if ctx.stats.max_price > 0.0 => 100.0 * (1.0 - p / ctx.stats.max_price),
            _ => 100.0,
        }
    }
}

/// Locality: 100 when the model is already cached on the node, else 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct Locality;
impl Scorer for Locality {
    fn name(&self) -> &str {
        "locality"
    }
    fn score(
        &self,
        node: &Node,
        _: &Demand,
        _: u64,
        ctx: &ScoreContext<'_>,
        _: &mut ScoreScratch,
    ) -> f64 {
        if !ctx.model_id.is_empty() && node.spec().cached_models.contains(ctx.model_id) {
            100.0
        } else {
            0.0
        }
    }
}

/// Latency: `100 × (1 − rtt / latency_ms)` from the caller's region; 100 without a budget.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency;
impl Scorer for Latency {
    fn name(&self) -> &str {
        "latency"
    }
    fn score(
        &self,
        node: &Node,
        _: &Demand,
        _: u64,
        ctx: &ScoreContext<'_>,
        _: &mut ScoreScratch,
    ) -> f64 {
        let c = ctx.constraints;
        // The node's region label is looked up only for a request with a budget.
        let (Some(from), Some(budget)) = (&c.region, c.latency_ms) else {
            return 100.0;
        };
        match node.region() {
            Some(to) if budget > 0 => match ctx.latency.rtt_ms(from, to) {
                Some(rtt) => 100.0 * (1.0 - f64::from(rtt) / f64::from(budget)).max(0.0),
                None => 0.0,
            },
            _ => 100.0,
        }
    }
}

/// Baseline Best-fit: the node with the least remaining resources after placement (CPU,
/// memory and GPU, each normalised by the largest node), then the device with least free share.
#[derive(Debug, Clone, Copy, Default)]
pub struct BestFit;
impl Scorer for BestFit {
    fn name(&self) -> &str {
        "best_fit"
    }
    fn score(
        &self,
        node: &Node,
        d: &Demand,
        devices: u64,
        ctx: &ScoreContext<'_>,
        _: &mut ScoreScratch,
    ) -> f64 {
        let s = ctx.stats;
        let norm = |free: u64, max: u64| {
            if max == 0 {
                0.0
            } else {
                free as f64 / max as f64
            }
        };
        let rem = norm(node.cpu_free() - d.cpu, s.max_node_cpu)
            + norm(node.mem_free() - d.mem, s.max_node_mem)
            + norm(node.gpu_free_total() - d.gpu_total(), s.max_node_gpu_milli);
        let dev_free: u32 = (0..node.gpu_count())
            .filter(|i| devices & (1u64 << i) != 0)
            .map(|i| node.gpu_free(i) - d.milli)
            .sum();
        -rem - 1e-6 * f64::from(dev_free)
    }
}

/// Baseline First-fit: every feasible placement scores the same; the scan stops at the first.
#[derive(Debug, Clone, Copy, Default)]
pub struct FirstFit;
impl Scorer for FirstFit {
    fn name(&self) -> &str {
        "first_fit"
    }
    fn score(
        &self,
        _: &Node,
        _: &Demand,
        _: u64,
        _: &ScoreContext<'_>,
        _: &mut ScoreScratch,
    ) -> f64 {
        0.0
    }
}

/// In which order the search visits feasible nodes (matters when the candidate limit stops it
/// early, and for First-fit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanOrder {
    /// Least free capacity first (packing scorers).
    LeastFreeFirst,
    /// Most free capacity first (spreading scorers).
    MostFreeFirst,
    /// Registration order (First-fit).
    NodeOrder,
}

/// Weights of the built-in scorers; zero leaves a scorer out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreWeights {
    /// Most-allocated.
    pub bin_pack: f64,
    /// Least-allocated.
    pub spread: f64,
    /// GPU-fragmentation-aware.
    pub fragmentation: f64,
    /// Price per device-hour.
    pub cost: f64,
    /// Model already cached.
    pub locality: f64,
    /// Region round trip.
    pub latency: f64,
    /// Best-fit (least remaining CPU, memory and GPU); absent in older configurations (0).
    #[serde(default)]
    pub best_fit: f64,
}

impl Default for ScoreWeights {
    /// Fragmentation first, Best-fit only to break its near-ties (its whole range is worth less
    /// than 0.1 milli-GPU of fragmentation), and the placement preferences.
    fn default() -> Self {
        Self {
            bin_pack: 0.0,
            spread: 0.0,
            fragmentation: 10.0,
            cost: 1.0,
            locality: 1.0,
            latency: 1.0,
            best_fit: 0.01,
        }
    }
}

/// Scorers combined by weight: the total is the weighted mean of their scores.
///
/// ```
/// use atom_fabric::ScorerSet;
/// use atom_fabric::scoring::{Locality, ScoreWeights};
/// let set = ScorerSet::weighted("mine", &ScoreWeights::default()).with(Box::new(Locality), 5.0);
/// assert_eq!(set.name(), "mine");
/// assert!(ScorerSet::by_name("best-fit").is_some());
/// ```
#[derive(Debug)]
pub struct ScorerSet {
    name: String,
    parts: Vec<(Box<dyn Scorer>, f64)>,
    /// The scorers' names, shared by every breakdown (no allocation per placement).
    part_names: Vec<std::sync::Arc<str>>,
    weight_sum: f64,
    scan: ScanOrder,
    first_feasible: bool,
}

impl ScorerSet {
    /// Names accepted by [`ScorerSet::by_name`], the default first.
    pub const NAMES: [&'static str; 9] = [
        "default",
        "fgd",
        "bin-pack",
        "spread",
        "cost",
        "locality",
        "latency",
        "best-fit",
        "first-fit",
    ];

    /// The built-in scorers with the given weights.
    pub fn weighted(name: &str, w: &ScoreWeights) -> Self {
        let mut set = Self::empty(name);
        let parts: [(Box<dyn Scorer>, f64); 7] = [
            (Box::new(Fragmentation), w.fragmentation),
            (Box::new(BestFit), w.best_fit),
            (Box::new(BinPack), w.bin_pack),
            (Box::new(Spread), w.spread),
            (Box::new(Cost), w.cost),
            (Box::new(Locality), w.locality),
            (Box::new(Latency), w.latency),
        ];
        for (s, wt) in parts {
            if wt > 0.0 && wt.is_finite() {
                set = set.with(s, wt);
            }
        }
        set.scan = if w.spread > w.bin_pack + w.fragmentation + w.best_fit {
            ScanOrder::MostFreeFirst
        } else {
            ScanOrder::LeastFreeFirst
        };
        set
    }

    fn empty(name: &str) -> Self {
        Self {
            name: name.to_string(),
            parts: Vec::new(),
            part_names: Vec::new(),
            weight_sum: 0.0,
            scan: ScanOrder::LeastFreeFirst,
            first_feasible: false,
        }
    }

    /// One scorer alone.
    pub fn single(name: &str, scorer: Box<dyn Scorer>, scan: ScanOrder) -> Self {
        let mut s = Self::empty(name).with(scorer, 1.0);
        s.scan = scan;
        s
    }

    /// Adds a scorer with a weight (ignored unless positive and finite).
    pub fn with(mut self, scorer: Box<dyn Scorer>, weight: f64) -> Self {
        if weight > 0.0 && weight.is_finite() {
            self.weight_sum += weight;
            self.part_names.push(std::sync::Arc::from(scorer.name()));
            self.parts.push((scorer, weight));
        }
        self
    }

    /// A named set: `default` (the default weights), `fgd`, `bin-pack`, `spread`, `cost`,
    /// `locality`, `latency`, the baselines `best-fit` and `first-fit`, or explicit weights as
    /// `weights:fragmentation=10,bin_pack=1` (keys as in [`ScoreWeights`]).
    pub fn by_name(name: &str) -> Option<Self> {
        Some(match name {
            "default" => Self::weighted("default", &ScoreWeights::default()),
            "fgd" => Self::single("fgd", Box::new(Fragmentation), ScanOrder::LeastFreeFirst),
            "bin-pack" => Self::single("bin-pack", Box::new(BinPack), ScanOrder::LeastFreeFirst),
            "spread" => Self::single("spread", Box::new(Spread), ScanOrder::MostFreeFirst),
            "cost" => Self::single("cost", Box::new(Cost), ScanOrder::LeastFreeFirst),
            "locality" => Self::single("locality", Box::new(Locality), ScanOrder::LeastFreeFirst),
            "latency" => Self::single("latency", Box::new(Latency), ScanOrder::LeastFreeFirst),
            "best-fit" => Self::single("best-fit", Box::new(BestFit), ScanOrder::LeastFreeFirst),
            "first-fit" => {
                let mut s = Self::single("first-fit", Box::new(FirstFit), ScanOrder::NodeOrder);
                s.first_feasible = true;
                s
            }
            _ => return Self::parse_weights(name),
        })
    }

    /// Parses `weights:fragmentation=10,bin_pack=1,...` (unnamed weights are 0).
    fn parse_weights(spec: &str) -> Option<Self> {
        let body = spec.strip_prefix("weights:")?;
        let mut w = ScoreWeights {
            bin_pack: 0.0,
            spread: 0.0,
            fragmentation: 0.0,
            cost: 0.0,
            locality: 0.0,
            latency: 0.0,
            best_fit: 0.0,
        };
        for kv in body.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=')?;
            let v: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
            let slot = match k.trim() {
                "bin_pack" => &mut w.bin_pack,
                "spread" => &mut w.spread,
                "fragmentation" => &mut w.fragmentation,
                "cost" => &mut w.cost,
                "locality" => &mut w.locality,
                "latency" => &mut w.latency,
                "best_fit" => &mut w.best_fit,
                _ => return None,
            };
            *slot = v;
        }
        Some(Self::weighted(spec, &w))
    }

    /// The set's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Node visiting order.
    pub fn scan_order(&self) -> ScanOrder {
        self.scan
    }

    /// Whether the first feasible placement wins (First-fit).
    pub fn first_feasible_wins(&self) -> bool {
        self.first_feasible
    }

    /// The weighted mean score.
    pub fn total(
        &self,
        node: &Node,
        d: &Demand,
        devices: u64,
        ctx: &ScoreContext<'_>,
        scratch: &mut ScoreScratch,
    ) -> f64 {
        self.combine(
            self.parts
                .iter()
                .map(|(s, _)| s.score(node, d, devices, ctx, scratch)),
        )
    }

    /// The weighted mean of the parts' scores, given in the parts' order (one part: its score).
    fn combine(&self, mut scores: impl Iterator<Item = f64>) -> f64 {
        if self.parts.len() == 1 {
            return scores.next().unwrap_or(0.0);
        }
        let mut sum = 0.0;
        for ((_, w), score) in self.parts.iter().zip(scores) {
            sum += w * score;
        }
        if self.weight_sum > 0.0 {
            sum / self.weight_sum
        } else {
            0.0
        }
    }

    /// The per-scorer breakdown of one placement.
    pub fn breakdown(
        &self,
        node: &Node,
        d: &Demand,
        devices: u64,
        ctx: &ScoreContext<'_>,
        scratch: &mut ScoreScratch,
    ) -> ScoreBreakdown {
        let parts: Vec<ScorePart> = self
            .parts
            .iter()
            .zip(&self.part_names)
            .map(|((s, w), name)| ScorePart {
                scorer: std::sync::Arc::clone(name),
                score: s.score(node, d, devices, ctx, scratch),
                weight: *w,
            })
            .collect();
        let total = self.combine(parts.iter().map(|p| p.score));
        ScoreBreakdown {
            total,
            parts,
            candidates: 0,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cluster::Cluster;
    use crate::model::NodeSpec;

    fn whole(gpus: u32) -> Demand {
        Demand {
            gpus,
            milli: 1000,
            cpu: 1000,
            mem: 1,
            tpu: 0,
            qubits: 0,
            models: None,
        }
    }

    /// Two idle 8-GPU nodes; the workload is one 8-GPU request in four, the rest one GPU.
    fn fleet() -> (Cluster, WorkloadDistribution) {
        let mut c = Cluster::new();
        for id in ["a", "b"] {
            let spec = NodeSpec::new(id, 64_000, 65_536).with_gpus("G", 8, 0);
            c.register(spec, 0).unwrap();
        }
        let mut w = WorkloadDistribution::new();
        w.observe(&whole(8));
        for _ in 0..3 {
            w.observe(&whole(1));
        }
        (c, w)
    }

    fn scarcity(c: &Cluster, w: &WorkloadDistribution, node: u32, devices: u64) -> f64 {
        let ctx = ScoreContext {
            stats: c.stats(),
            workload: w,
            latency: &LatencyTable::default(),
            constraints: &Constraints::default(),
            model_id: "",
        };
        whole_scarcity(c.node_at(node), devices, &ctx)
    }

    #[test]
    fn scarcity_is_zero_while_the_fleet_has_every_slot() {
        let (c, w) = fleet();
        assert_eq!(c.stats().whole_slots(8), (2, 2));
        assert_eq!(scarcity(&c, &w, 1, 0b1), 0.0);
    }

    #[test]
    fn scarcity_prices_the_last_idle_node() {
        let (mut c, w) = fleet();
        c.allocate(0, &whole(8), 0xff, 1);
        // One 8-GPU slot left of two: short = 2/1 - 1 = 1. Taking one device of node b removes
        // it: share 1/4 x 8,000 milli x 1 slot x short 1 x weight.
        assert_eq!(c.stats().whole_slots(8), (1, 2));
        let want = SCARCITY_WEIGHT * 0.25 * 8000.0;
        assert!((scarcity(&c, &w, 1, 0b1) - want).abs() < 1e-9);
        // A CPU-only placement takes no device: no cost.
        assert_eq!(scarcity(&c, &w, 1, 0), 0.0);
        c.check_indexes().unwrap();
        // Released, the fleet is whole again.
        c.release(0, &whole(8), 0xff);
        assert_eq!(c.stats().whole_slots(8), (2, 2));
        c.check_indexes().unwrap();
    }
}
