//! Admission rules of the shared store, free of SQL: the policy checks a request must pass
//! before it is accepted, and the tenant half of the quota check (the cohort half is a
//! conditional `UPDATE` of the cohort row, see the replica).
//!
//! They follow the embedded scheduler's rules (`scheduler.rs`): request validation, P2/P3 for
//! production deploys (allowed in simulation mode), the P6 statevector memory budget, and the
//! P5 quota ceiling.

use atom_policy::policy::PolicyId;

use crate::error::{FabricError, Result};
use crate::model::ScheduleRequest;
use crate::quota::{Quota, RESOURCES, ResourceVector};
use crate::scheduler::SchedulerConfig;

/// A tenant's quota and what its placed work uses now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRow {
    /// The quota.
    pub quota: Quota,
    /// Current use.
    pub used: ResourceVector,
}

/// The resources of all replicas of a request.
pub(crate) fn request_total(req: &ScheduleRequest) -> ResourceVector {
    let r = &req.resources;
    ResourceVector {
        gpu_milli: r.gpu_milli_total(),
        cpu: r.cpu,
        mem: r.mem,
        tpu: u64::from(r.tpu),
    }
    .times(u64::from(req.replicas))
}

/// Checks a request before it is accepted: validation, P2 and P3 (production deploys need a
/// verified manifest and an approver, unless `simulation_mode`), P6 (a quantum request's memory
/// must hold its statevector) and P5 (the request alone must fit under the tenant's ceiling).
///
/// ```
/// use atom_fabric::pg::admission_check;
/// use atom_fabric::{Quota, Resources, ScheduleRequest, SchedulerConfig};
/// let req = ScheduleRequest::new("acme", "m", "v1", Resources { gpu: 3, ..Default::default() });
/// let err = admission_check(&req, &SchedulerConfig::default(), &Quota::gpus(2)).unwrap_err();
/// assert!(err.to_string().contains("P5"));
/// ```
pub fn admission_check(
    req: &ScheduleRequest,
    config: &SchedulerConfig,
    quota: &Quota,
) -> Result<()> {
    req.validate()?;
    let denied = |(policy, reason)| FabricError::PolicyDenied { policy, reason };
    crate::scheduler::deploy_decisions(req, config.simulation_mode).map_err(denied)?;
    crate::scheduler::budget_check(req).map_err(denied)?;
    let total = request_total(req);
    let ceiling = quota.ceiling();
    if let Some(i) = (0..4).find(|&i| total.get(i) > ceiling.get(i)) {
        return Err(FabricError::PolicyDenied {
            policy: PolicyId::P5,
            reason: format!(
                "needs {} {} in all, above the tenant's quota ceiling {}",
                total.get(i),
                RESOURCES[i],
                ceiling.get(i)
            ),
        });
    }
    Ok(())
}

/// The tenant half of the quota check: `Ok(borrows)` when `used + add` stays within nominal
/// plus the borrow limit in every resource (`borrows` when some resource goes above nominal),
/// else the name of the resource that blocks.
///
/// ```
/// use atom_fabric::pg::{QuotaRow, quota_check};
/// use atom_fabric::{Quota, quota::ResourceVector};
/// let row = QuotaRow { quota: Quota::gpus(2), used: ResourceVector { gpu_milli: 1500, ..ResourceVector::ZERO } };
/// let one_half = ResourceVector { gpu_milli: 500, ..ResourceVector::ZERO };
/// assert_eq!(quota_check(&row, &one_half), Ok(false));
/// assert_eq!(quota_check(&row, &one_half.times(2)), Err("gpu_milli"));
/// ```
pub fn quota_check(
    row: &QuotaRow,
    add: &ResourceVector,
) -> std::result::Result<bool, &'static str> {
    row.quota.admits(&row.used, add)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::{DeployApproval, Resources};

    fn req(gpu: u32) -> ScheduleRequest {
        ScheduleRequest::new(
            "t",
            "m",
            "v",
            Resources {
                gpu,
                cpu: 1000,
                mem: 1024,
                ..Default::default()
            },
        )
    }

    #[test]
    fn borrowing_is_reported_and_bounded() {
        let row = QuotaRow {
            quota: Quota::gpus(2).with_borrow_limit(ResourceVector {
                gpu_milli: 1000,
                ..ResourceVector::ZERO
            }),
            used: ResourceVector {
                gpu_milli: 2000,
                cpu: 5,
                ..ResourceVector::ZERO
            },
        };
        let one = ResourceVector {
            gpu_milli: 1000,
            cpu: 10,
            ..ResourceVector::ZERO
        };
        assert_eq!(quota_check(&row, &one), Ok(true));
        assert_eq!(quota_check(&row, &one.times(2)), Err("gpu_milli"));
        // Unlimited CPU never blocks, even near u64::MAX.
        let huge = ResourceVector {
            cpu: u64::MAX - 1,
            ..ResourceVector::ZERO
        };
        assert_eq!(quota_check(&row, &huge), Ok(false));
    }

    #[test]
    fn policies_refuse_what_the_embedded_scheduler_refuses() {
        let cfg = SchedulerConfig::default();
        let q = Quota::gpus(8);
        assert!(admission_check(&req(1), &cfg, &q).is_ok());
        let prod = req(1).with_deploy(DeployApproval {
            production: true,
            manifest_verified: false,
            approved_by: Some("ops".into()),
        });
        let e = admission_check(&prod, &cfg, &q).unwrap_err();
        assert!(matches!(
            e,
            FabricError::PolicyDenied {
                policy: PolicyId::P2,
                ..
            }
        ));
        let sim = SchedulerConfig {
            simulation_mode: true,
            ..SchedulerConfig::default()
        };
        assert!(admission_check(&prod, &sim, &q).is_ok());
        let unapproved = req(1).with_deploy(DeployApproval {
            production: true,
            manifest_verified: true,
            approved_by: Some(String::new()),
        });
        let e = admission_check(&unapproved, &cfg, &q).unwrap_err();
        assert!(matches!(
            e,
            FabricError::PolicyDenied {
                policy: PolicyId::P3,
                ..
            }
        ));
        let mut quantum = req(0);
        quantum.resources.qubits = 30;
        let e = admission_check(&quantum, &cfg, &q).unwrap_err();
        assert!(matches!(
            e,
            FabricError::PolicyDenied {
                policy: PolicyId::P6,
                ..
            }
        ));
        let e = admission_check(&req(9), &cfg, &q).unwrap_err();
        assert!(matches!(
            e,
            FabricError::PolicyDenied {
                policy: PolicyId::P5,
                ..
            }
        ));
        let mut bad = req(1);
        bad.replicas = 0;
        assert!(matches!(
            admission_check(&bad, &cfg, &q),
            Err(FabricError::InvalidInput(_))
        ));
    }
}
