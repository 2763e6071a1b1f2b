//! The chaos report: JSON (serde) and a Markdown summary.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Nearest-rank percentile of sorted samples (`None` when empty).
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Counts of one job kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindStats {
    /// Accepted by the scheduler.
    pub accepted: u64,
    /// Completed.
    pub completed: u64,
    /// Failed with a reason.
    pub failed: u64,
    /// Completed within the SLO budget.
    pub slo_met: u64,
    /// The budget (ms).
    pub slo_budget_ms: u64,
    /// `slo_met / accepted` (1 when nothing was accepted).
    pub slo_attainment: f64,
}

/// Failover figures of a set of faults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailoverStats {
    /// Faults injected.
    pub faults: u64,
    /// Jobs whose work the faults interrupted.
    pub affected_jobs: u64,
    /// Interrupted jobs running again on a healthy target (the failover samples).
    pub recovered: u64,
    /// Interrupted jobs that ended failed, or completed by a stale result, before running again.
    pub unrecovered: u64,
    /// Median failover time (ms).
    pub failover_ms_p50: Option<u64>,
    /// 99th percentile failover time (ms).
    pub failover_ms_p99: Option<u64>,
    /// Longest failover (ms).
    pub failover_ms_max: Option<u64>,
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRow {
    /// Position in the fault schedule (fixed and generated faults, by start time).
    pub id: usize,
    /// Kind.
    pub kind: String,
    /// Node, provider, or `all`.
    pub target: String,
    /// Start (ms).
    pub at_ms: u64,
    /// Duration or restart delay (ms; `None`: a crash without restart).
    pub duration_ms: Option<u64>,
    /// Factor (latency spike, slow node).
    pub factor: f64,
    /// Generated from the seed.
    pub generated: bool,
    /// Runs slowed (latency spike, slow node) or jobs interrupted (other kinds).
    pub affected: u64,
    /// Failover figures of this fault.
    pub failover: FailoverStats,
}

/// One quantum provider's calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderRow {
    /// Name.
    pub name: String,
    /// Calls submitted.
    pub calls: u64,
    /// Calls that returned a result.
    pub completed: u64,
    /// Calls that failed (outage detected).
    pub failed: u64,
    /// Calls cancelled because their run stopped.
    pub cancelled: u64,
}

/// What the scheduler did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchedulerStats {
    /// Commands applied.
    pub commands: u64,
    /// Placements (first and re-placements).
    pub placements: u64,
    /// Requests re-queued because their node was lost.
    pub node_lost_evictions: u64,
    /// Nodes marked unhealthy.
    pub nodes_marked_unhealthy: u64,
    /// Nodes that came back.
    pub nodes_recovered: u64,
    /// `check_invariants()` calls that passed.
    pub invariant_checks: u64,
    /// The first broken scheduler invariant, if any (`None` is the only good value).
    pub invariant_violation: Option<String>,
}

/// The result of a chaos run. Everything but `wall_seconds` depends only on plan and seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Plan name.
    pub plan: String,
    /// Seed.
    pub seed: u64,
    /// Fencing (leases and epoch checks) on.
    pub fencing: bool,
    /// Virtual time simulated (s).
    pub simulated_seconds: f64,
    /// Jobs submitted.
    pub jobs_submitted: u64,
    /// Jobs the scheduler accepted.
    pub jobs_accepted: u64,
    /// Jobs the scheduler refused (policy), with the reasons in `rejected_reasons`.
    pub jobs_rejected: u64,
    /// Accepted jobs completed.
    pub jobs_completed: u64,
    /// Accepted jobs failed with a reason.
    pub jobs_failed: u64,
    /// Failure reasons and counts.
    pub failed_reasons: BTreeMap<String, u64>,
    /// Refusal reasons and counts.
    pub rejected_reasons: BTreeMap<String, u64>,
    /// Accepted jobs neither completed nor failed at the end of the run (must be 0).
    pub lost_work: u64,
    /// Results accepted beyond the first for a job (must be 0 with fencing).
    pub duplicate_executions: u64,
    /// Jobs with more than one accepted result.
    pub jobs_with_duplicates: u64,
    /// Jobs whose end in the coordinator differs from their phase in the scheduler (must be 0).
    pub state_mismatches: u64,
    /// Runs the agents stopped themselves (lease lost, or no longer assigned).
    pub fenced_runs: u64,
    /// Results refused because they carried an old placement epoch.
    pub discarded_results: u64,
    /// Runs killed by node crashes.
    pub killed_runs: u64,
    /// Node work thrown away by fenced, discarded and killed runs (ms).
    pub wasted_work_ms: u64,
    /// Accepted jobs completed within their SLO budget / accepted jobs.
    pub slo_attainment: f64,
    /// Per job kind.
    pub by_kind: BTreeMap<String, KindStats>,
    /// End-to-end latency of completed jobs, median (ms).
    pub latency_ms_p50: Option<u64>,
    /// End-to-end latency of completed jobs, 99th percentile (ms).
    pub latency_ms_p99: Option<u64>,
    /// Failover time over all interrupted jobs, median (ms); `None` without failovers.
    pub failover_ms_p50: Option<u64>,
    /// Failover time, 99th percentile (ms).
    pub failover_ms_p99: Option<u64>,
    /// All faults together.
    pub failover: FailoverStats,
    /// Per fault kind.
    pub by_fault_kind: BTreeMap<String, FailoverStats>,
    /// Every fault.
    pub faults: Vec<FaultRow>,
    /// Quantum providers.
    pub providers: Vec<ProviderRow>,
    /// Quantum stages run on the classical fallback.
    pub quantum_fallbacks: u64,
    /// Scheduler figures.
    pub scheduler: SchedulerStats,
    /// Wall-clock time of the run (s): the one field that differs between equal runs.
    pub wall_seconds: f64,
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| v.to_string())
}

impl Report {
    /// The JSON without `wall_seconds`: byte-identical for the same plan and seed.
    pub fn deterministic_json(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(o) = v.as_object_mut() {
            o.remove("wall_seconds");
        }
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    /// The full JSON report.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A Markdown summary.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Chaos report: {} (seed {})\n", self.plan, self.seed);
        let _ = writeln!(
            s,
            "Simulated {:.0} s in {:.2} s wall; fencing {}.\n",
            self.simulated_seconds,
            self.wall_seconds,
            if self.fencing { "on" } else { "OFF" }
        );
        let _ = writeln!(s, "| figure | value |\n| --- | --- |");
        let rows: Vec<(&str, String)> = vec![
            ("jobs submitted", self.jobs_submitted.to_string()),
            ("jobs accepted", self.jobs_accepted.to_string()),
            ("jobs rejected", self.jobs_rejected.to_string()),
            ("jobs completed", self.jobs_completed.to_string()),
            ("jobs failed (with reason)", self.jobs_failed.to_string()),
            ("**lost work**", format!("**{}**", self.lost_work)),
            (
                "**duplicate executions**",
                format!("**{}**", self.duplicate_executions),
            ),
            ("fenced runs", self.fenced_runs.to_string()),
            (
                "discarded stale results",
                self.discarded_results.to_string(),
            ),
            ("runs killed by crashes", self.killed_runs.to_string()),
            ("wasted work (ms)", self.wasted_work_ms.to_string()),
            (
                "SLO attainment",
                format!("{:.2} %", self.slo_attainment * 100.0),
            ),
            (
                "latency p50 / p99 (ms)",
                format!(
                    "{} / {}",
                    opt(self.latency_ms_p50),
                    opt(self.latency_ms_p99)
                ),
            ),
            (
                "failover p50 / p99 / max (ms)",
                format!(
                    "{} / {} / {}",
                    opt(self.failover_ms_p50),
                    opt(self.failover_ms_p99),
                    opt(self.failover.failover_ms_max)
                ),
            ),
            (
                "interrupted jobs (recovered / unrecovered)",
                format!(
                    "{} ({} / {})",
                    self.failover.affected_jobs, self.failover.recovered, self.failover.unrecovered
                ),
            ),
            ("quantum fallbacks", self.quantum_fallbacks.to_string()),
        ];
        for (k, v) in rows {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        if !self.failed_reasons.is_empty() {
            let _ = writeln!(
                s,
                "\n## Failure reasons\n\n| reason | jobs |\n| --- | --- |"
            );
            for (r, n) in &self.failed_reasons {
                let _ = writeln!(s, "| {r} | {n} |");
            }
        }
        let _ = writeln!(
            s,
            "\n## Per job kind\n\n| kind | accepted | completed | failed | SLO budget (ms) | SLO attainment |\n| --- | --- | --- | --- | --- | --- |"
        );
        for (k, v) in &self.by_kind {
            let _ = writeln!(
                s,
                "| {k} | {} | {} | {} | {} | {:.2} % |",
                v.accepted,
                v.completed,
                v.failed,
                v.slo_budget_ms,
                v.slo_attainment * 100.0
            );
        }
        if !self.by_fault_kind.is_empty() {
            let _ = writeln!(
                s,
                "\n## Per fault kind\n\n| kind | faults | interrupted jobs | recovered | unrecovered | failover p50 (ms) | p99 (ms) | max (ms) |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
            );
            for (k, v) in &self.by_fault_kind {
                let _ = writeln!(
                    s,
                    "| {k} | {} | {} | {} | {} | {} | {} | {} |",
                    v.faults,
                    v.affected_jobs,
                    v.recovered,
                    v.unrecovered,
                    opt(v.failover_ms_p50),
                    opt(v.failover_ms_p99),
                    opt(v.failover_ms_max)
                );
            }
        }
        if !self.faults.is_empty() {
            let _ = writeln!(
                s,
                "\n## Faults\n\n| # | kind | target | at (s) | duration (s) | affected | failover p50 (ms) | p99 (ms) |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
            );
            const MAX_ROWS: usize = 60;
            for f in self.faults.iter().take(MAX_ROWS) {
                let _ = writeln!(
                    s,
                    "| {} | {}{} | {} | {:.1} | {} | {} | {} | {} |",
                    f.id,
                    f.kind,
                    if f.factor != 1.0 {
                        format!(" ×{}", f.factor)
                    } else {
                        String::new()
                    },
                    f.target,
                    f.at_ms as f64 / 1000.0,
                    f.duration_ms.map_or_else(
                        || "never restarts".into(),
                        |d| format!("{:.1}", d as f64 / 1000.0)
                    ),
                    f.affected,
                    opt(f.failover.failover_ms_p50),
                    opt(f.failover.failover_ms_p99)
                );
            }
            if self.faults.len() > MAX_ROWS {
                let _ = writeln!(
                    s,
                    "\n({} more faults in the JSON report)",
                    self.faults.len() - MAX_ROWS
                );
            }
        }
        if !self.providers.is_empty() {
            let _ = writeln!(
                s,
                "\n## Quantum providers\n\n| provider | calls | completed | failed | cancelled |\n| --- | --- | --- | --- | --- |"
            );
            for p in &self.providers {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |",
                    p.name, p.calls, p.completed, p.failed, p.cancelled
                );
            }
        }
        let sc = &self.scheduler;
        let _ = writeln!(
            s,
            "\nScheduler: {} commands, {} placements, {} node-lost evictions, {} nodes marked unhealthy, {} recovered, {} invariant checks passed.",
            sc.commands,
            sc.placements,
            sc.node_lost_evictions,
            sc.nodes_marked_unhealthy,
            sc.nodes_recovered,
            sc.invariant_checks
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[1, 2, 3], 50.0), Some(2));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
