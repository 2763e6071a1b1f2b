//! The policy matrix: for a run, how often each policy passed, blocked or was relaxed, and why.

use super::{Decision, PolicyId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One policy's row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixRow {
    /// Decisions that allowed.
    pub pass: u64,
    /// Decisions that denied.
    pub block: u64,
    /// Decisions allowed only because of simulation.
    pub simulated: u64,
    /// Distinct reasons for blocks and simulated passes, in first-seen order.
    pub reasons: Vec<String>,
}

/// Counts of decisions per policy.
///
/// ```
/// use atom_policy::policy::{Decision, PolicyId, PolicyMatrix};
/// let mut m = PolicyMatrix::new();
/// m.record(&Decision::Allow { policy: PolicyId::P2 });
/// m.record(&Decision::Deny { policy: PolicyId::P6, reason: "too big".into() });
/// assert_eq!(m.row(PolicyId::P6).block, 1);
/// assert!(m.to_markdown().contains("| P6 |"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyMatrix {
    rows: BTreeMap<PolicyId, MatrixRow>,
}

impl PolicyMatrix {
    /// An empty matrix with a row for every policy.
    pub fn new() -> Self {
        Self {
            rows: PolicyId::ALL
                .into_iter()
                .map(|p| (p, MatrixRow::default()))
                .collect(),
        }
    }

    /// Counts one decision.
    pub fn record(&mut self, d: &Decision) {
        let row = self.rows.entry(d.policy()).or_default();
        let reason = match d {
            Decision::Allow { .. } => {
                row.pass += 1;
                None
            }
            Decision::Deny { reason, .. } => {
                row.block += 1;
                Some(reason)
            }
            Decision::AllowInSimulation { reason, .. } => {
                row.simulated += 1;
                Some(reason)
            }
        };
        if let Some(r) = reason
            && !row.reasons.contains(r)
        {
            row.reasons.push(r.clone());
        }
    }

    /// Counts many decisions.
    pub fn record_all<'a>(&mut self, ds: impl IntoIterator<Item = &'a Decision>) {
        for d in ds {
            self.record(d);
        }
    }

    /// One policy's row.
    pub fn row(&self, p: PolicyId) -> MatrixRow {
        self.rows.get(&p).cloned().unwrap_or_default()
    }

    /// The overall status of a row: `block` if anything blocked, else `simulated` if anything was
    /// relaxed, else `pass` (or `not exercised`).
    pub fn status(&self, p: PolicyId) -> &'static str {
        let r = self.row(p);
        if r.block > 0 {
            "block"
        } else if r.simulated > 0 {
            "simulated"
        } else if r.pass > 0 {
            "pass"
        } else {
            "not exercised"
        }
    }

    /// The matrix as JSON: `{"P1": {"status": .., "pass": .., "block": .., "simulated": .., "reasons": [..]}, ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        for p in PolicyId::ALL {
            let r = self.row(p);
            obj.insert(
                p.to_string(),
                serde_json::json!({
                    "status": self.status(p),
                    "pass": r.pass,
                    "block": r.block,
                    "simulated": r.simulated,
                    "reasons": r.reasons,
                }),
            );
        }
        serde_json::Value::Object(obj)
    }

    /// The matrix as a Markdown table.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from(
            "| policy | status | pass | block | simulated | reasons |\n|---|---|---|---|---|---|\n",
        );
        for p in PolicyId::ALL {
            let r = self.row(p);
            let reasons = r.reasons.join("; ").replace('|', "\\|");
            out.push_str(&format!(
                "| {p} | {} | {} | {} | {} | {} |\n",
                self.status(p),
                r.pass,
                r.block,
                r.simulated,
                reasons
            ));
        }
        out
    }
}
