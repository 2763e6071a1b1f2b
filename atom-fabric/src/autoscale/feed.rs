//! The fabric's own autoscaler inputs: per-replica reports pushed by node agents, turned into one
//! [`Observation`] per (tenant, model).
//!
//! An agent reports cumulative counters (requests, latency sum, a latency histogram) and the
//! requests in flight now. The feed keeps the last two reports of each replica; an observation
//! sums in-flight requests over the set's fresh replicas (concurrency), and takes the arrival rate,
//! the mean service time and the p95 latency from the counters' growth between the two reports.
//! Counters that go backwards (an agent restarted) restart the replica's history.
//!
//! ```
//! use atom_fabric::autoscale::feed::{ReplicaFeed, ReplicaReport, LATENCY_BOUNDS_MS};
//! use atom_fabric::RequestId;
//! let report = |at_ms, requests, in_flight| ReplicaReport {
//!     node: "n1".into(), replica_id: "7-0".into(), request_id: RequestId(7), tenant_id: "t1".into(),
//!     model_id: "bert".into(), model_version: "v1".into(), at_ms, requests_total: requests,
//!     latency_sum_ms: requests as f64 * 20.0, // 20 ms each
//!     latency_buckets: LATENCY_BOUNDS_MS.iter().map(|&b| if b >= 20.0 { requests } else { 0 })
//!         .chain([requests]).collect(),
//!     in_flight,
//! };
//! let mut feed = ReplicaFeed::new(30_000);
//! feed.ingest(report(0, 0, 0)).unwrap();
//! feed.ingest(report(10_000, 1_000, 3)).unwrap(); // 100 requests/s of 20 ms
//! let o = feed.observation("t1", "bert", 10_000).unwrap();
//! assert_eq!(o.concurrency, 3.0);
//! assert!((o.offered_load.unwrap() - 2.0).abs() < 1e-9); // 100/s x 0.02 s
//! assert_eq!(o.p95_latency_ms, Some(20.0));
//! ```

use super::Observation;
use crate::error::FabricError;
use crate::model::RequestId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Upper bounds (ms) of the latency histogram agents report, one more bucket for +Inf.
pub const LATENCY_BOUNDS_MS: [f64; 16] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0,
    20_000.0, 60_000.0,
];

/// One replica's serving counters, as its node agent reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaReport {
    /// The agent's node.
    pub node: String,
    /// `{request}-{replica}`.
    pub replica_id: String,
    /// The scheduler request the replica belongs to.
    pub request_id: RequestId,
    /// Owner tenant.
    pub tenant_id: String,
    /// Model id.
    pub model_id: String,
    /// Model version.
    pub model_version: String,
    /// When the agent read the counters (ms, the agent's clock).
    pub at_ms: u64,
    /// Inferences served since launch.
    pub requests_total: u64,
    /// Sum of their latencies (ms).
    pub latency_sum_ms: f64,
    /// Cumulative counts at or below each of [`LATENCY_BOUNDS_MS`], then the total (+Inf).
    pub latency_buckets: Vec<u64>,
    /// Inferences running or waiting on the replica now.
    pub in_flight: u64,
}

impl ReplicaReport {
    fn validate(&self) -> Result<(), FabricError> {
        let bad = |why: String| Err(FabricError::InvalidInput(format!("replica report: {why}")));
        if self.latency_buckets.len() != LATENCY_BOUNDS_MS.len() + 1 {
            return bad(format!(
                "latency_buckets has {} counts, expected {}",
                self.latency_buckets.len(),
                LATENCY_BOUNDS_MS.len() + 1
            ));
        }
        if self.latency_buckets.windows(2).any(|w| w[0] > w[1]) {
            return bad("latency_buckets must be cumulative (non-decreasing)".into());
        }
        if self.latency_buckets.last() != Some(&self.requests_total) {
            return bad("the +Inf bucket must equal requests_total".into());
        }
        if !self.latency_sum_ms.is_finite() || self.latency_sum_ms < 0.0 {
            return bad("latency_sum_ms must be a finite, non-negative number".into());
        }
        if self.tenant_id.is_empty() || self.model_id.is_empty() {
            return bad("tenant_id and model_id must not be empty".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct History {
    prev: Option<ReplicaReport>,
    last: ReplicaReport,
}

/// Reports of every replica, keyed by tenant, model and replica (so one tenant's reports never
/// shape another tenant's observations).
#[derive(Debug, Clone)]
pub struct ReplicaFeed {
    stale_after_ms: u64,
    replicas: BTreeMap<(String, String, String), History>,
}

impl ReplicaFeed {
    /// A feed that ignores replicas whose last report is older than `stale_after_ms`.
    pub fn new(stale_after_ms: u64) -> Self {
        Self {
            stale_after_ms,
            replicas: BTreeMap::new(),
        }
    }

    /// Records a report. Out-of-order reports (older than the last one) are ignored; malformed
    /// ones are an error and change nothing.
    pub fn ingest(&mut self, report: ReplicaReport) -> Result<(), FabricError> {
        report.validate()?;
        let key = (
            report.tenant_id.clone(),
            report.model_id.clone(),
            report.replica_id.clone(),
        );
        match self.replicas.get_mut(&key) {
            Some(h) if report.at_ms <= h.last.at_ms => {}
            Some(h) if report.requests_total < h.last.requests_total => {
                // The agent restarted: its counters began again.
                *h = History {
                    prev: None,
                    last: report,
                };
            }
            Some(h) => {
                let last = std::mem::replace(&mut h.last, report);
                h.prev = Some(last);
            }
            None => {
                self.replicas.insert(
                    key,
                    History {
                        prev: None,
                        last: report,
                    },
                );
            }
        }
        Ok(())
    }

    /// Forgets a replica (stopped).
    pub fn forget(&mut self, tenant_id: &str, model_id: &str, replica_id: &str) {
        self.replicas.remove(&(
            tenant_id.to_owned(),
            model_id.to_owned(),
            replica_id.to_owned(),
        ));
    }

    /// The set's observation at `now_ms` from its fresh replicas, or `None` when none reported.
    pub fn observation(&self, tenant_id: &str, model_id: &str, now_ms: u64) -> Option<Observation> {
        let mut any = false;
        let mut concurrency = 0.0;
        let (mut rate, mut service_ms_sum, mut served) = (0.0, 0.0, 0u64);
        let mut buckets = [0u64; LATENCY_BOUNDS_MS.len() + 1];
        for ((t, m, _), h) in self
            .replicas
            .range((tenant_id.to_owned(), model_id.to_owned(), String::new())..)
        {
            if t != tenant_id || m != model_id {
                break;
            }
            if now_ms.saturating_sub(h.last.at_ms) > self.stale_after_ms {
                continue;
            }
            any = true;
            concurrency += h.last.in_flight as f64;
            let Some(p) = &h.prev else { continue };
            let dt_s = (h.last.at_ms - p.at_ms) as f64 / 1e3;
            let dn = h.last.requests_total - p.requests_total;
            rate += dn as f64 / dt_s;
            service_ms_sum += (h.last.latency_sum_ms - p.latency_sum_ms).max(0.0);
            served += dn;
            for (i, b) in buckets.iter_mut().enumerate() {
                *b += h.last.latency_buckets[i].saturating_sub(p.latency_buckets[i]);
            }
        }
        if !any {
            return None;
        }
        let (offered_load, p95_latency_ms) = if served > 0 {
            let mean_s = service_ms_sum / served as f64 / 1e3;
            // The smallest bound holding 95 % of the interval's requests.
            let need = (served as f64 * 0.95).ceil() as u64;
            let p95 = buckets
                .iter()
                .position(|&c| c >= need)
                .map(|i| LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(f64::INFINITY));
            (Some(rate * mean_s), p95)
        } else {
            (None, None)
        };
        Some(Observation {
            t: now_ms as f64 / 1e3,
            concurrency,
            p95_latency_ms,
            offered_load,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn report(
        replica: &str,
        tenant: &str,
        at_ms: u64,
        lat: &[f64],
        in_flight: u64,
    ) -> ReplicaReport {
        let mut buckets = vec![0u64; LATENCY_BOUNDS_MS.len() + 1];
        for &l in lat {
            let i = LATENCY_BOUNDS_MS
                .iter()
                .position(|&b| l <= b)
                .unwrap_or(LATENCY_BOUNDS_MS.len());
            for b in &mut buckets[i..] {
                *b += 1;
            }
        }
        ReplicaReport {
            node: "n".into(),
            replica_id: replica.into(),
            request_id: RequestId(1),
            tenant_id: tenant.into(),
            model_id: "m".into(),
            model_version: "v1".into(),
            at_ms,
            requests_total: lat.len() as u64,
            latency_sum_ms: lat.iter().sum(),
            latency_buckets: buckets,
            in_flight,
        }
    }

    #[test]
    fn sums_replicas_of_one_set_and_never_another_tenants() {
        let mut f = ReplicaFeed::new(5_000);
        let fast: Vec<f64> = vec![3.0; 95];
        let mut mixed = fast.clone();
        mixed.extend(vec![150.0; 5]);
        f.ingest(report("1-0", "a", 0, &[], 0)).unwrap();
        f.ingest(report("1-0", "a", 1_000, &mixed, 4)).unwrap();
        f.ingest(report("2-0", "a", 1_000, &[], 2)).unwrap(); // one report: concurrency only
        f.ingest(report("9-0", "b", 1_000, &vec![900.0; 50], 40))
            .unwrap();
        let o = f.observation("a", "m", 1_500).unwrap();
        assert_eq!(o.concurrency, 6.0);
        // 100 requests in 1 s, mean (95x3 + 5x150)/100 = 10.35 ms: offered 1.035 busy slots.
        assert!((o.offered_load.unwrap() - 1.035).abs() < 1e-9);
        assert_eq!(o.p95_latency_ms, Some(5.0)); // 95 of 100 at or below the 5 ms bound
        assert!(f.observation("c", "m", 1_500).is_none());
        // Stale replicas drop out.
        assert!(f.observation("a", "m", 10_000).is_none());
    }

    #[test]
    fn restarts_and_bad_reports() {
        let mut f = ReplicaFeed::new(60_000);
        f.ingest(report("1-0", "a", 0, &[1.0; 10], 0)).unwrap();
        f.ingest(report("1-0", "a", 1_000, &[1.0; 20], 0)).unwrap();
        // Counters went back: history restarts, no negative rate.
        f.ingest(report("1-0", "a", 2_000, &[1.0; 3], 1)).unwrap();
        let o = f.observation("a", "m", 2_000).unwrap();
        assert_eq!((o.concurrency, o.offered_load), (1.0, None));
        let mut bad = report("1-0", "a", 3_000, &[1.0; 5], 0);
        bad.latency_buckets.pop();
        assert!(f.ingest(bad).is_err());
        let mut bad = report("1-0", "a", 3_000, &[1.0; 5], 0);
        bad.requests_total = 6;
        assert!(f.ingest(bad).is_err());
        // An old report after a newer one is ignored.
        f.ingest(report("1-0", "a", 500, &[1.0; 50], 9)).unwrap();
        assert_eq!(f.observation("a", "m", 2_000).unwrap().concurrency, 1.0);
    }
}
