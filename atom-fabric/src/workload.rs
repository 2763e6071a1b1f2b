//! The workload's distribution of GPU requests, learned online, and the expected GPU
//! fragmentation of a node against it (in the spirit of FGD, USENIX ATC '23).
//!
//! A node's fragmentation for one task type is the free GPU share the task cannot use there:
//! everything free when the task does not fit on the node at all (CPU, memory or GPUs short),
//! otherwise the free share of devices that cannot take one of its GPU slices (wrong model, or
//! less free than the slice; for whole-GPU tasks, every partly used device), plus the GPUs
//! stranded when the free CPU or memory holds fewer of its requests than the devices could take.
//! Each type keeps the distribution of its requests' CPU and memory, so a 12-core request is
//! not judged by a 4-core one of the same GPU shape. The expected fragmentation weights these
//! by the type's share of the requests seen so far.

use serde::{Deserialize, Serialize};

use crate::cluster::Demand;

/// Most task types tracked; later new shapes are ignored (rare in practice).
pub const MAX_TASK_TYPES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TaskType {
    gpus: u32,
    milli: u32,
    models: Option<Vec<u32>>,
    count: u64,
    cpu_sum: u64,
    mem_sum: u64,
    /// Exact `(cpu, mem, count)` of the requests of this shape (at most `MAX_DEMANDS` entries;
    /// beyond, a new value is merged into the nearest entry).
    #[serde(default)]
    demands: Vec<(u64, u64, u64)>,
}

/// Distinct `(cpu, mem)` demands remembered per task type.
const MAX_DEMANDS: usize = 32;

/// Representative `(cpu, mem)` demands per task type used for scoring: enough to tell a 4-core
/// request from a 12-core one of the same GPU shape, few enough to keep scoring cheap.
const SUB_DEMANDS: usize = 6;

/// A CPU and memory demand of a task type with its share of the type's requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SubDemand {
    pub q: f64,
    pub cpu: u64,
    pub mem: u64,
}

/// A task type as used for scoring: probability and the mean CPU and memory of its requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FrozenType {
    pub p: f64,
    pub gpus: u32,
    pub milli: u32,
    pub models: Option<Vec<u32>>,
    pub cpu: u64,
    pub mem: u64,
    #[serde(default)]
    pub subs: Vec<SubDemand>,
}

impl FrozenType {
    pub(crate) fn model_ok(&self, m: u32) -> bool {
        self.models.as_ref().is_none_or(|ms| ms.contains(&m))
    }
}

/// The distribution of request shapes `(GPUs, milli per GPU, accepted models)` seen so far.
///
/// Probabilities are refreshed when a new shape appears or the count grew by 1/32 since the
/// last refresh, so cached fragmentation values stay valid between refreshes.
///
/// ```
/// use atom_fabric::cluster::Demand;
/// use atom_fabric::workload::WorkloadDistribution;
/// let half = Demand { gpus: 1, milli: 500, cpu: 1000, mem: 0, tpu: 0, qubits: 0, models: None };
/// let whole = Demand { milli: 1000, ..half.clone() };
/// let mut w = WorkloadDistribution::new();
/// w.observe(&half);
/// w.observe(&half);
/// w.observe(&whole);
/// assert_eq!((w.total(), w.shapes()), (3, 2));
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkloadDistribution {
    types: Vec<TaskType>,
    total: u64,
    // The probabilities in use are part of the state: they change only at refresh points, so a
    // restored scheduler must use the same ones to decide the same way.
    frozen: Vec<FrozenType>,
    frozen_total: u64,
    #[serde(skip)]
    version: u64,
}

impl PartialEq for WorkloadDistribution {
    fn eq(&self, other: &Self) -> bool {
        self.types == other.types && self.total == other.total
    }
}

impl WorkloadDistribution {
    /// An empty distribution.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests observed.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Distinct shapes tracked.
    pub fn shapes(&self) -> usize {
        self.types.len()
    }

    /// Learns one request shape (one replica).
    pub fn observe(&mut self, d: &Demand) {
        self.total += 1;
        let pos = self
            .types
            .iter()
            .position(|t| t.gpus == d.gpus && t.milli == d.milli && t.models == d.models);
        let new_type = match pos {
            Some(i) => {
                let t = &mut self.types[i];
                t.count += 1;
                t.cpu_sum = t.cpu_sum.saturating_add(d.cpu);
                t.mem_sum = t.mem_sum.saturating_add(d.mem);
                note_demand(&mut t.demands, d.cpu, d.mem);
                false
            }
            None if self.types.len() < MAX_TASK_TYPES => {
                self.types.push(TaskType {
                    gpus: d.gpus,
                    milli: d.milli,
                    models: d.models.clone(),
                    count: 1,
                    cpu_sum: d.cpu,
                    mem_sum: d.mem,
                    demands: vec![(d.cpu, d.mem, 1)],
                });
                true
            }
            None => false,
        };
        if new_type || self.total - self.frozen_total >= (self.frozen_total / 32).max(1) {
            self.refresh();
        }
    }

    /// Recomputes the probabilities used for scoring.
    pub(crate) fn refresh(&mut self) {
        self.frozen_total = self.total;
        self.version += 1;
        let total = self.total.max(1) as f64;
        self.frozen = self
            .types
            .iter()
            .filter(|t| t.gpus > 0)
            .map(|t| FrozenType {
                p: t.count as f64 / total,
                gpus: t.gpus,
                milli: t.milli,
                models: t.models.clone(),
                cpu: t.cpu_sum / t.count.max(1),
                mem: t.mem_sum / t.count.max(1),
                subs: compress(&t.demands, SUB_DEMANDS),
            })
            .collect();
    }

    /// After deserialisation: new cache version, same probabilities.
    pub(crate) fn restored(&mut self) {
        self.version += 1;
    }

    pub(crate) fn frozen(&self) -> &[FrozenType] {
        &self.frozen
    }

    pub(crate) fn version(&self) -> u64 {
        self.version
    }
}

/// Counts one request's `(cpu, mem)` in a type's exact demands.
fn note_demand(ds: &mut Vec<(u64, u64, u64)>, cpu: u64, mem: u64) {
    if let Some(e) = ds.iter_mut().find(|e| e.0 == cpu && e.1 == mem) {
        e.2 += 1;
        return;
    }
    if ds.len() < MAX_DEMANDS {
        ds.push((cpu, mem, 1));
        return;
    }
    // Full: count it with the nearest remembered demand (ties: the first).
    let dist = |e: &(u64, u64, u64)| e.0.abs_diff(cpu) + e.1.abs_diff(mem) / 4;
    if let Some(e) = ds.iter_mut().min_by_key(|e| dist(e)) {
        e.2 += 1;
    }
}

/// At most `k` representative demands: the exact ones sorted by (cpu, mem), cut into groups of
/// about equal count; each group is represented by its count-weighted mean.
fn compress(ds: &[(u64, u64, u64)], k: usize) -> Vec<SubDemand> {
    let mut v: Vec<(u64, u64, u64)> = ds.to_vec();
    v.sort_unstable();
    let total: u64 = v.iter().map(|e| e.2).sum();
    if total == 0 {
        return Vec::new();
    }
    let k = k.max(1);
    if v.len() <= k {
        return v
            .iter()
            .map(|&(c, m, n)| SubDemand {
                q: n as f64 / total as f64,
                cpu: c,
                mem: m,
            })
            .collect();
    }
    let mut out = Vec::with_capacity(k);
    let (mut n, mut cs, mut ms) = (0u64, 0u128, 0u128);
    let mut cum = 0u64;
    let mut group = 1u64;
    for &(c, m, cnt) in &v {
        n += cnt;
        cs += u128::from(c) * u128::from(cnt);
        ms += u128::from(m) * u128::from(cnt);
        cum += cnt;
        if cum * k as u64 >= group * total {
            out.push(SubDemand {
                q: n as f64 / total as f64,
                cpu: (cs / u128::from(n)) as u64,
                mem: (ms / u128::from(n)) as u64,
            });
            (n, cs, ms) = (0, 0, 0);
            while cum * k as u64 >= group * total {
                group += 1;
            }
        }
    }
    if n > 0 {
        out.push(SubDemand {
            q: n as f64 / total as f64,
            cpu: (cs / u128::from(n)) as u64,
            mem: (ms / u128::from(n)) as u64,
        });
    }
    out
}

/// Contention of each GPU model: the demand of model-constrained task types that accept it,
/// as a share of all GPU demand, over the share of GPU capacity their accepted models hold.
/// Near 1, constrained work needs nearly all of that model; near 0, the model is free to use.
pub(crate) fn model_contention<'a>(
    types: &'a [FrozenType],
    model_milli: &'a [u64],
) -> impl Fn(u32) -> f64 + 'a {
    let constrained = types.iter().any(|t| t.models.is_some());
    let total_cap: u64 = if constrained {
        model_milli.iter().sum()
    } else {
        0
    };
    let total_demand: f64 = if constrained {
        types
            .iter()
            .map(|t| t.p * f64::from(t.gpus) * f64::from(t.milli))
            .sum()
    } else {
        0.0
    };
    move |model: u32| {
        if total_cap == 0 || total_demand <= 0.0 {
            return 0.0;
        }
        let mut c = 0.0;
        for t in types {
            let Some(models) = &t.models else { continue };
            if !models.contains(&model) {
                continue;
            }
            let cap: u64 = models
                .iter()
                .filter_map(|&m| model_milli.get(m as usize))
                .sum();
            if cap > 0 {
                let demand_share = t.p * f64::from(t.gpus) * f64::from(t.milli) / total_demand;
                c += demand_share / (cap as f64 / total_cap as f64);
            }
        }
        c
    }
}

/// Expected fragmentation (milli-GPUs) of a node with devices `(model, free milli)` and
/// `cpu_free` / `mem_free` left: the free GPU share the workload could not use there, weighted
/// by each task type's frequency.
///
/// For one task type, the share it can use is the free share of the devices that can take one
/// of its slices (accepted model, enough free; whole free devices for whole-GPU types, and at
/// least as many as it asks for). It can use nothing when one request does not fit the node's
/// free CPU or memory; when CPU or memory allow fewer requests than the devices could take, it
/// can use only what those requests would take (the rest is stranded). This is evaluated per
/// representative CPU / memory demand of the type ([`SubDemand`]). Free devices of a model a
/// type does not accept are fragments from its point of view (as in FGD): flexible tasks are
/// thus steered onto GPU models that constrained tasks cannot use.
pub(crate) fn expected_fragmentation(
    devs: &[(u32, u32)],
    cpu_free: u64,
    mem_free: u64,
    types: &[FrozenType],
) -> f64 {
    let total: u64 = devs.iter().map(|&(_, f)| u64::from(f)).sum();
    if total == 0 {
        return 0.0;
    }
    let gpu: Vec<(u64, u64)> = types.iter().map(|t| gpu_usable(devs, t)).collect();
    fragmentation_with(total, &gpu, cpu_free, mem_free, types)
}

/// The GPU side of [`expected_fragmentation`] for one type: `(usable, slots)`, the free share
/// of the devices the type can use and how many of its requests they could take (the usable
/// share is 0 when they cannot take one). It depends only on the devices, so callers cache it
/// per GPU shape.
pub(crate) fn gpu_usable(devs: &[(u32, u32)], t: &FrozenType) -> (u64, u64) {
    let g = u64::from(t.gpus.max(1));
    let need = t.milli.clamp(1, 1000);
    let (mut usable, mut slots) = (0u64, 0u64);
    if need >= 1000 {
        let ok = devs
            .iter()
            .filter(|&&(m, f)| f >= 1000 && t.model_ok(m))
            .count() as u64;
        slots = ok / g;
        usable = if slots > 0 { ok * 1000 } else { 0 };
    } else if g == 1 {
        for &(m, f) in devs {
            if f >= need && t.model_ok(m) {
                usable += u64::from(f);
                slots += u64::from(f / need);
            }
        }
    } else {
        let (mut ok, mut free) = (0u64, 0u64);
        for &(m, f) in devs {
            if f >= need && t.model_ok(m) {
                ok += 1;
                free += u64::from(f);
            }
        }
        slots = ok / g;
        usable = if slots > 0 { free } else { 0 };
    }
    (usable, slots)
}

/// The CPU and memory side of [`expected_fragmentation`]: `total` free milli-GPUs, `gpu[i]`
/// the [`gpu_usable`] of `types[i]`.
pub(crate) fn fragmentation_with(
    total: u64,
    gpu: &[(u64, u64)],
    cpu_free: u64,
    mem_free: u64,
    types: &[FrozenType],
) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let mut sum = 0.0;
    for (t, &(usable, slots)) in types.iter().zip(gpu) {
        if slots == 0 {
            sum += t.p * total as f64;
            continue;
        }
        let per_request = u64::from(t.gpus.max(1)) * u64::from(t.milli.clamp(1, 1000));
        let single = [SubDemand {
            q: 1.0,
            cpu: t.cpu,
            mem: t.mem,
        }];
        let subs: &[SubDemand] = if t.subs.is_empty() { &single } else { &t.subs };
        let mut used = 0.0;
        for s in subs {
            if s.cpu > cpu_free || s.mem > mem_free {
                continue;
            }
            // Multiplications first: the division is needed only when CPU or memory binds.
            let cap = if cpu_free >= slots.saturating_mul(s.cpu)
                && mem_free >= slots.saturating_mul(s.mem)
            {
                usable
            } else {
                let by_cpu = cpu_free.checked_div(s.cpu).unwrap_or(u64::MAX);
                let by_mem = mem_free.checked_div(s.mem).unwrap_or(u64::MAX);
                (by_cpu.min(by_mem) * per_request).min(usable)
            };
            used += s.q * cap as f64;
        }
        sum += t.p * (total as f64 - used);
    }
    sum
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn d(gpus: u32, milli: u32, cpu: u64) -> Demand {
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
    fn fragmentation_matches_hand_computed_cases() {
        // Workload: half 1x500 milli, half 1 whole GPU; each needs 4 cores.
        let mut w = WorkloadDistribution::new();
        w.observe(&d(1, 500, 4000));
        w.observe(&d(1, 1000, 4000));
        let types = w.frozen();
        assert_eq!(types.len(), 2);
        // Node: device A 300 free, device B 1000 free, plenty of CPU.
        let devs = [(0, 300), (0, 1000)];
        // 500-type: A (300 < 500) is a fragment -> 300. whole-type: A partly used -> 300.
        let f = expected_fragmentation(&devs, 64_000, 0, types);
        assert!((f - 300.0).abs() < 1e-9, "{f}");
        // With too little CPU for either type, all 1300 free milli are fragments.
        let f = expected_fragmentation(&devs, 1000, 0, types);
        assert!((f - 1300.0).abs() < 1e-9, "{f}");
        // Two devices of 600 free: 500-type uses both (0), whole-type can use none (1200).
        let f = expected_fragmentation(&[(0, 600), (0, 600)], 64_000, 0, types);
        assert!((f - 600.0).abs() < 1e-9, "{f}");
        // Two whole free devices but CPU for one request only: each type can use 500 or 1000
        // of the 2000 free (the rest is stranded): 0.5 * 1500 + 0.5 * 1000.
        let f = expected_fragmentation(&[(0, 1000), (0, 1000)], 4000, 0, types);
        assert!((f - 1250.0).abs() < 1e-9, "{f}");
    }

    #[test]
    fn cpu_demands_are_kept_per_type() {
        // One GPU shape asked with 2 cores (3 times) and 12 cores (once).
        let mut w = WorkloadDistribution::new();
        for cpu in [2000, 2000, 12_000, 2000] {
            w.observe(&d(1, 1000, cpu));
        }
        let t = &w.frozen()[0];
        assert_eq!(t.subs.len(), 2);
        assert!((t.subs[0].q - 0.75).abs() < 1e-12 && t.subs[0].cpu == 2000);
        // 8 cores free: the 2-core requests fit (0 fragment), the 12-core ones do not (1000).
        let f = expected_fragmentation(&[(0, 1000)], 8000, 0, w.frozen());
        assert!((f - 250.0).abs() < 1e-9, "{f}");
        // Representative demands are capped; their shares still sum to 1.
        let many: Vec<(u64, u64, u64)> = (1..=20).map(|c| (c * 1000, 0, 1)).collect();
        let subs = compress(&many, SUB_DEMANDS);
        assert_eq!(subs.len(), SUB_DEMANDS);
        assert!((subs.iter().map(|s| s.q).sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn cpu_only_requests_dilute_but_are_not_types() {
        let mut w = WorkloadDistribution::new();
        w.observe(&d(0, 0, 1000));
        w.observe(&d(1, 1000, 0));
        assert_eq!(w.frozen().len(), 1);
        assert!((w.frozen()[0].p - 0.5).abs() < 1e-12);
    }
}
