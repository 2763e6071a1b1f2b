//! The workload's distribution of GPU requests, learned online, and the expected GPU
//! fragmentation of a node against it (in the spirit of FGD, USENIX ATC '23).
//!
//! A node's fragmentation for one task type is the free GPU share the task cannot use there:
//! everything free when the task does not fit on the node at all (CPU, memory or GPUs short),
//! otherwise the free share of devices that cannot take one of its GPU slices (wrong model, or
//! less free than the slice; for whole-GPU tasks, every partly used device). The expected
//! fragmentation weights these by the type's share of the requests seen so far.

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
}

impl FrozenType {
    fn model_ok(&self, m: u32) -> bool {
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

/// Bit i set when frozen type i fits the node's free CPU and memory.
pub(crate) fn cpu_fit_mask(types: &[FrozenType], cpu_free: u64, mem_free: u64) -> u64 {
    types
        .iter()
        .enumerate()
        .filter(|(_, t)| t.cpu <= cpu_free && t.mem <= mem_free)
        .fold(0u64, |m, (i, _)| m | (1u64 << i))
}

/// Expected fragmentation (milli-GPUs) of a node with devices `(model, free milli)`.
///
/// Free devices of a model a task type does not accept are fragments from its point of view
/// (as in FGD): flexible tasks are thus steered onto GPU models that constrained tasks cannot use.
pub(crate) fn expected_fragmentation(
    devs: &[(u32, u32)],
    fit_mask: u64,
    types: &[FrozenType],
) -> f64 {
    let total: u64 = devs.iter().map(|&(_, f)| u64::from(f)).sum();
    if total == 0 {
        return 0.0;
    }
    let mut sum = 0.0;
    for (i, t) in types.iter().enumerate() {
        let frag = if fit_mask & (1u64 << i) == 0 {
            total
        } else {
            let need = t.milli.min(1000);
            let mut usable = 0u32;
            let mut unusable_free = 0u64;
            for &(m, free) in devs {
                if free >= need && t.model_ok(m) {
                    usable += 1;
                } else {
                    unusable_free += u64::from(free);
                }
            }
            if usable >= t.gpus {
                unusable_free
            } else {
                total
            }
        };
        sum += t.p * frag as f64;
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
        let mask = cpu_fit_mask(types, 8000, 0);
        // 500-type: A (300 < 500) is a fragment -> 300. whole-type: A partly used -> 300.
        let f = expected_fragmentation(&devs, mask, types);
        assert!((f - 300.0).abs() < 1e-9, "{f}");
        // With too little CPU for either type, all 1300 free milli are fragments.
        let f = expected_fragmentation(&devs, cpu_fit_mask(types, 1000, 0), types);
        assert!((f - 1300.0).abs() < 1e-9, "{f}");
        // Two devices of 600 free: 500-type uses both (0), whole-type can use none (1200).
        let f = expected_fragmentation(&[(0, 600), (0, 600)], mask, types);
        assert!((f - 600.0).abs() < 1e-9, "{f}");
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
