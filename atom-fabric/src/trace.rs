//! Replay of GPU-sharing cluster traces in the Alibaba `openb` CSV format, and a generator of
//! synthetic traces of the same shape.
//!
//! Semantics (as the FGD paper's measure): pods in `creation_time` order (file order when the
//! column is absent) are placed onto the trace's nodes and never released; a pod that fits
//! nowhere counts as failed and is skipped. The report gives the share of GPU capacity
//! allocated at the first failure and at the end, the pods failed, and decisions per second.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Instant;

use crate::cluster::{Cluster, Demand, Filter};
use crate::error::{FabricError, Result};
use crate::model::{Constraints, NodeSpec};
use crate::scoring::{LatencyTable, ScoreScratch, ScorerSet};
use crate::workload::WorkloadDistribution;

/// A node row: `sn,cpu_milli,memory_mib,gpu,model`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceNode {
    /// Node name (`sn`).
    pub name: String,
    /// CPU millicores.
    pub cpu_milli: u64,
    /// Memory MiB.
    pub memory_mib: u64,
    /// GPU devices.
    pub gpus: u32,
    /// GPU model (empty without GPUs).
    pub model: String,
}

/// A pod row: `name,cpu_milli,memory_mib,num_gpu,gpu_milli[,gpu_spec][,...,creation_time,...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracePod {
    /// Pod name.
    pub name: String,
    /// CPU millicores.
    pub cpu_milli: u64,
    /// Memory MiB.
    pub memory_mib: u64,
    /// GPU devices.
    pub num_gpu: u32,
    /// Milli-GPU per device (`< 1000` with one device = a shared GPU).
    pub gpu_milli: u32,
    /// Accepted GPU models, `|`-separated; empty = any.
    pub gpu_spec: String,
    /// Creation time, when the trace has it.
    pub creation_time: Option<u64>,
}

struct Table<'a> {
    file: &'a str,
    cols: HashMap<String, usize>,
    rows: Vec<(usize, Vec<&'a str>)>,
}

impl<'a> Table<'a> {
    fn parse(text: &'a str, file: &'a str) -> Result<Self> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or_else(|| FabricError::Trace {
            file: file.to_string(),
            line: 1,
            detail: "empty file (no header)".into(),
        })?;
        let cols: HashMap<String, usize> = header
            .split(',')
            .enumerate()
            .map(|(i, c)| (c.trim().to_string(), i))
            .collect();
        let mut rows = Vec::new();
        for (i, line) in lines {
            if line.contains('"') {
                return Err(FabricError::Trace {
                    file: file.into(),
                    line: i + 1,
                    detail: "quoted fields are not supported".into(),
                });
            }
            rows.push((i + 1, line.split(',').map(str::trim).collect()));
        }
        Ok(Self { file, cols, rows })
    }

    fn col(&self, name: &str) -> Result<usize> {
        self.cols
            .get(name)
            .copied()
            .ok_or_else(|| FabricError::Trace {
                file: self.file.to_string(),
                line: 1,
                detail: format!("missing column {name:?}"),
            })
    }

    fn field<'r>(&self, row: &'r (usize, Vec<&'a str>), col: usize) -> Result<&'a str> {
        row.1.get(col).copied().ok_or_else(|| FabricError::Trace {
            file: self.file.to_string(),
            line: row.0,
            detail: format!(
                "row has {} fields, expected at least {}",
                row.1.len(),
                col + 1
            ),
        })
    }

    fn num(&self, row: &(usize, Vec<&'a str>), col: usize, name: &str) -> Result<u64> {
        let v = self.field(row, col)?;
        if v.is_empty() {
            return Ok(0);
        }
        v.parse::<u64>().map_err(|_| FabricError::Trace {
            file: self.file.to_string(),
            line: row.0,
            detail: format!("{name} = {v:?} is not a non-negative integer"),
        })
    }
}

/// Parses a node list (`sn,cpu_milli,memory_mib,gpu,model`).
pub fn parse_nodes(text: &str, file: &str) -> Result<Vec<TraceNode>> {
    let t = Table::parse(text, file)?;
    let (sn, cpu, mem, gpu, model) = (
        t.col("sn")?,
        t.col("cpu_milli")?,
        t.col("memory_mib")?,
        t.col("gpu")?,
        t.col("model")?,
    );
    let mut out = Vec::with_capacity(t.rows.len());
    for row in &t.rows {
        let gpus = t.num(row, gpu, "gpu")?;
        if gpus > crate::model::MAX_GPUS_PER_NODE as u64 {
            return Err(FabricError::Trace {
                file: file.into(),
                line: row.0,
                detail: format!("gpu = {gpus} exceeds 64"),
            });
        }
        out.push(TraceNode {
            name: t.field(row, sn)?.to_string(),
            cpu_milli: t.num(row, cpu, "cpu_milli")?,
            memory_mib: t.num(row, mem, "memory_mib")?,
            gpus: gpus as u32,
            model: row.1.get(model).copied().unwrap_or("").to_string(),
        });
    }
    Ok(out)
}

/// Parses a pod list and orders it by `creation_time` when present (stable: file order breaks ties).
pub fn parse_pods(text: &str, file: &str) -> Result<Vec<TracePod>> {
    let t = Table::parse(text, file)?;
    let (name, cpu, mem, ngpu, milli) = (
        t.col("name")?,
        t.col("cpu_milli")?,
        t.col("memory_mib")?,
        t.col("num_gpu")?,
        t.col("gpu_milli")?,
    );
    let spec = t.cols.get("gpu_spec").copied();
    let created = t.cols.get("creation_time").copied();
    let mut out = Vec::with_capacity(t.rows.len());
    for row in &t.rows {
        let num_gpu = t.num(row, ngpu, "num_gpu")?;
        let gpu_milli = t.num(row, milli, "gpu_milli")?;
        if gpu_milli > 1000 || num_gpu > 64 || (num_gpu == 0 && gpu_milli > 0) {
            return Err(FabricError::Trace {
                file: file.into(),
                line: row.0,
                detail: format!(
                    "num_gpu = {num_gpu}, gpu_milli = {gpu_milli} is not a valid GPU request"
                ),
            });
        }
        out.push(TracePod {
            name: t.field(row, name)?.to_string(),
            cpu_milli: t.num(row, cpu, "cpu_milli")?,
            memory_mib: t.num(row, mem, "memory_mib")?,
            num_gpu: num_gpu as u32,
            gpu_milli: gpu_milli as u32,
            gpu_spec: spec
                .and_then(|c| row.1.get(c).copied())
                .unwrap_or("")
                .to_string(),
            creation_time: match created {
                Some(c) => Some(t.num(row, c, "creation_time")?),
                None => None,
            },
        });
    }
    out.sort_by_key(|p| p.creation_time.unwrap_or(0));
    Ok(out)
}

/// Writes nodes in the trace's CSV format.
pub fn nodes_to_csv(nodes: &[TraceNode]) -> String {
    let mut s = String::from("sn,cpu_milli,memory_mib,gpu,model\n");
    for n in nodes {
        s.push_str(&format!(
            "{},{},{},{},{}\n",
            n.name, n.cpu_milli, n.memory_mib, n.gpus, n.model
        ));
    }
    s
}

/// Writes pods in the trace's CSV format (with `gpu_spec` and `creation_time`).
pub fn pods_to_csv(pods: &[TracePod]) -> String {
    let mut s =
        String::from("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,creation_time\n");
    for p in pods {
        s.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            p.name,
            p.cpu_milli,
            p.memory_mib,
            p.num_gpu,
            p.gpu_milli,
            p.gpu_spec,
            p.creation_time.unwrap_or(0)
        ));
    }
    s
}

/// Figures of one replay run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// Scorer set name.
    pub scorer: String,
    /// Allocated share of GPU capacity when the first pod failed (None: no pod failed).
    pub share_at_first_failure: Option<f64>,
    /// Allocated share of GPU capacity after the last pod.
    pub share_at_end: f64,
    /// Pods that fit nowhere.
    pub pods_failed: u64,
    /// Pods in the trace.
    pub pods_total: u64,
    /// Placement decisions per second of wall time.
    pub decisions_per_s: f64,
}

/// Replays a trace with one scorer set.
///
/// ```
/// use atom_fabric::trace::{replay, TraceNode, TracePod};
/// use atom_fabric::ScorerSet;
/// let nodes = vec![TraceNode { name: "n".into(), cpu_milli: 8000, memory_mib: 1024, gpus: 2, model: "T4".into() }];
/// let pod = |g, m| TracePod { name: "p".into(), cpu_milli: 1000, memory_mib: 10, num_gpu: g, gpu_milli: m, gpu_spec: String::new(), creation_time: None };
/// let pods = vec![pod(1, 500), pod(1, 1000), pod(2, 1000)];
/// let r = replay(&nodes, &pods, &ScorerSet::by_name("best-fit").unwrap()).unwrap();
/// assert_eq!((r.pods_failed, r.share_at_end, r.share_at_first_failure), (1, 0.75, Some(0.75)));
/// ```
pub fn replay(nodes: &[TraceNode], pods: &[TracePod], scorers: &ScorerSet) -> Result<ReplayReport> {
    let mut cluster = Cluster::new();
    for n in nodes {
        let spec = NodeSpec::new(n.name.clone(), n.cpu_milli, n.memory_mib).with_gpus(
            &n.model,
            n.gpus as usize,
            0,
        );
        cluster.register(spec, 0)?;
    }
    let capacity = cluster.stats().gpu_milli.max(1) as f64;
    let latency = LatencyTable::default();
    let constraints = Constraints::default();
    let filter = Filter {
        constraints: &constraints,
        latency: &latency,
    };
    let mut workload = WorkloadDistribution::new();
    let mut scratch = ScoreScratch::default();
    let mut spec_cache: HashMap<String, Option<Vec<u32>>> = HashMap::new();
    let mut allocated = 0u64;
    let mut failed = 0u64;
    let mut first_failure = None;
    let start = Instant::now();
    for (i, p) in pods.iter().enumerate() {
        let models = if p.gpu_spec.is_empty() || p.num_gpu == 0 {
            None
        } else if let Some(m) = spec_cache.get(&p.gpu_spec) {
            m.clone()
        } else {
            let mut ids: Vec<u32> = p
                .gpu_spec
                .split('|')
                .map(|m| cluster.intern_model(m.trim()))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            spec_cache.insert(p.gpu_spec.clone(), Some(ids.clone()));
            Some(ids)
        };
        let d = Demand {
            gpus: p.num_gpu,
            milli: if p.num_gpu == 0 {
                0
            } else if p.gpu_milli == 0 {
                1000
            } else {
                p.gpu_milli
            },
            cpu: p.cpu_milli,
            mem: p.memory_mib,
            tpu: 0,
            qubits: 0,
            models,
        };
        workload.observe(&d);
        match cluster.find(&d, &filter, scorers, &workload, "", None, &mut scratch) {
            Some(f) => {
                cluster.allocate(f.node, &d, f.mask, i as u64);
                allocated += d.gpu_total();
            }
            None => {
                failed += 1;
                if first_failure.is_none() {
                    first_failure = Some(allocated as f64 / capacity);
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    Ok(ReplayReport {
        scorer: scorers.name().to_string(),
        share_at_first_failure: first_failure,
        share_at_end: allocated as f64 / capacity,
        pods_failed: failed,
        pods_total: pods.len() as u64,
        decisions_per_s: pods.len() as f64 / secs,
    })
}

/// The mix of a synthetic trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceMix {
    /// GPU nodes.
    pub nodes: usize,
    /// Total GPU demand as a multiple of GPU capacity (pods are generated until it is reached).
    pub load: f64,
    /// Share of pods with no GPU.
    pub cpu_only: f64,
    /// Share of GPU pods with a fractional GPU (shared device).
    pub sharing: f64,
    /// Share of GPU pods with 2, 4 or 8 whole GPUs.
    pub multi_gpu: f64,
    /// Share of GPU pods with a `gpu_spec` model constraint.
    pub gpu_spec: f64,
    /// RNG seed.
    pub seed: u64,
}

impl Default for TraceMix {
    /// Roughly the `openb` default trace's mix: 13% CPU-only, ~60% of GPU pods shared, ~1% multi-GPU.
    fn default() -> Self {
        Self {
            nodes: 120,
            load: 1.0,
            cpu_only: 0.13,
            sharing: 0.6,
            multi_gpu: 0.01,
            gpu_spec: 0.0,
            seed: 1,
        }
    }
}

impl TraceMix {
    /// The mix of the small trace shipped in `atom-fabric/tests/data/` (40 nodes, seed 2023);
    /// regenerate it with `cargo run -p atom-fabric --example synth_trace -- atom-fabric/tests/data`.
    pub fn shipped() -> Self {
        Self {
            nodes: 40,
            seed: 2023,
            ..Self::default()
        }
    }

    /// A point of the evaluation grid of docs/scheduler.md: `[load, cpu_only, sharing,
    /// multi_gpu, gpu_spec]` on `nodes` nodes with `seed`.
    ///
    /// ```
    /// use atom_fabric::trace::TraceMix;
    /// let m = TraceMix::grid(200, 7, [1.3, 0.6, 0.55, 0.0, 0.0]);
    /// assert_eq!((m.nodes, m.seed, m.cpu_only), (200, 7, 0.6));
    /// ```
    pub fn grid(nodes: usize, seed: u64, p: [f64; 5]) -> Self {
        Self {
            nodes,
            load: p[0],
            cpu_only: p[1],
            sharing: p[2],
            multi_gpu: p[3],
            gpu_spec: p[4],
            seed,
        }
    }
}

/// SplitMix64: a small, portable, seeded generator (the output must not change across versions).
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn pick<T: Copy>(&mut self, items: &[(T, f64)]) -> T {
        let total: f64 = items.iter().map(|x| x.1).sum();
        let mut r = self.unit() * total;
        for &(v, w) in items {
            if r < w {
                return v;
            }
            r -= w;
        }
        items[items.len() - 1].0
    }
}

/// (GPUs, CPU millicores, memory MiB, GPU model) of a synthetic node.
type NodeShape = (u32, u64, u64, &'static str);

/// Generates a synthetic trace with the `openb` shape: node types like the trace's (8-GPU,
/// 4-GPU, 2-GPU and 1-GPU machines of several models) and pods drawn from `mix`.
pub fn synthesize(mix: &TraceMix) -> (Vec<TraceNode>, Vec<TracePod>) {
    let mut rng = SplitMix(mix.seed);
    // (gpus, cpu_milli, memory_mib, model, weight): the most common shapes of the openb node list.
    let shapes: [(NodeShape, f64); 6] = [
        ((8, 96_000, 393_216, "G2"), 0.45),
        ((2, 104_000, 524_288, "T4"), 0.30),
        ((2, 64_000, 262_144, "P100"), 0.10),
        ((4, 96_000, 393_216, "V100M16"), 0.06),
        ((8, 128_000, 786_432, "V100M32"), 0.05),
        ((1, 16_000, 122_880, "A10"), 0.04),
    ];
    let mut nodes = Vec::with_capacity(mix.nodes);
    let mut capacity = 0u64;
    for i in 0..mix.nodes {
        let (g, c, m, model) = rng.pick(&shapes);
        capacity += u64::from(g) * 1000;
        nodes.push(TraceNode {
            name: format!("syn-node-{i:04}"),
            cpu_milli: c,
            memory_mib: m,
            gpus: g,
            model: model.into(),
        });
    }
    let shares: [(u32, f64); 8] = [
        (810, 0.25),
        (470, 0.18),
        (320, 0.08),
        (650, 0.06),
        (230, 0.04),
        (460, 0.2),
        (590, 0.1),
        (110, 0.09),
    ];
    let specs: [(&str, f64); 4] = [
        ("V100M16|V100M32", 0.4),
        ("T4", 0.3),
        ("G2", 0.2),
        ("P100|T4", 0.1),
    ];
    let target = (capacity as f64 * mix.load) as u64;
    let mut demand = 0u64;
    let mut pods = Vec::new();
    while demand < target {
        let i = pods.len();
        let (num_gpu, gpu_milli, cpu) = if rng.unit() < mix.cpu_only {
            (
                0,
                0,
                rng.pick(&[
                    (2000u64, 0.3),
                    (4000, 0.3),
                    (8000, 0.25),
                    (16_000, 0.1),
                    (32_000, 0.05),
                ]),
            )
        } else if rng.unit() < mix.multi_gpu {
            let g = rng.pick(&[(2u32, 0.4), (4, 0.3), (8, 0.3)]);
            (
                g,
                1000,
                u64::from(g) * rng.pick(&[(4000u64, 0.3), (8000, 0.5), (12_000, 0.2)]),
            )
        } else if rng.unit() < mix.sharing {
            (
                1,
                rng.pick(&shares),
                rng.pick(&[(2000u64, 0.3), (4000, 0.3), (6000, 0.3), (12_000, 0.1)]),
            )
        } else {
            (
                1,
                1000,
                rng.pick(&[(4000u64, 0.3), (8000, 0.4), (12_000, 0.3)]),
            )
        };
        let gpu_spec = if num_gpu > 0 && rng.unit() < mix.gpu_spec {
            rng.pick(&specs).to_string()
        } else {
            String::new()
        };
        let memory_mib = cpu * rng.pick(&[(2u64, 0.5), (3, 0.3), (4, 0.2)]);
        demand += u64::from(num_gpu) * u64::from(gpu_milli);
        // CPU-only pods add no GPU demand; cap the trace so a CPU-heavy mix still ends.
        if pods.len() > 40 * mix.nodes + 1000 {
            break;
        }
        pods.push(TracePod {
            name: format!("syn-pod-{i:05}"),
            cpu_milli: cpu,
            memory_mib,
            num_gpu,
            gpu_milli,
            gpu_spec,
            creation_time: Some(i as u64 * 1000),
        });
    }
    (nodes, pods)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trip_and_time_order() {
        let text = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,creation_time\n\
                    b,1000,10,1,500,T4,20\na,2000,20,0,0,,10\n";
        let pods = parse_pods(text, "p.csv").unwrap();
        assert_eq!(pods[0].name, "a");
        assert_eq!(pods[1].gpu_spec, "T4");
        let again = parse_pods(&pods_to_csv(&pods), "p2.csv").unwrap();
        assert_eq!(again, pods);
    }

    #[test]
    fn columns_may_be_missing_then_file_order_holds() {
        let text = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\nz,1,1,0,0\ny,1,1,1,1000\n";
        let pods = parse_pods(text, "p.csv").unwrap();
        assert_eq!(
            pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["z", "y"]
        );
        assert!(pods[0].creation_time.is_none() && pods[1].gpu_spec.is_empty());
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let err = parse_pods(
            "name,cpu_milli,memory_mib,num_gpu,gpu_milli\nx,1,1,1,1500\n",
            "p.csv",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "trace p.csv line 2: num_gpu = 1, gpu_milli = 1500 is not a valid GPU request"
        );
        let err = parse_nodes("sn,cpu_milli,memory_mib,gpu\n", "n.csv").unwrap_err();
        assert!(
            err.to_string().contains("missing column \"model\""),
            "{err}"
        );
    }

    #[test]
    fn gpu_spec_is_honoured() {
        let nodes = vec![
            TraceNode {
                name: "a".into(),
                cpu_milli: 8000,
                memory_mib: 100,
                gpus: 1,
                model: "T4".into(),
            },
            TraceNode {
                name: "b".into(),
                cpu_milli: 8000,
                memory_mib: 100,
                gpus: 1,
                model: "V100".into(),
            },
        ];
        let pod = |spec: &str| TracePod {
            name: "p".into(),
            cpu_milli: 1,
            memory_mib: 1,
            num_gpu: 1,
            gpu_milli: 1000,
            gpu_spec: spec.into(),
            creation_time: None,
        };
        let r = replay(
            &nodes,
            &[pod("V100"), pod("V100"), pod("T4|A10")],
            &ScorerSet::by_name("first-fit").unwrap(),
        )
        .unwrap();
        assert_eq!(r.pods_failed, 1);
        assert_eq!(r.share_at_end, 1.0);
    }
}
