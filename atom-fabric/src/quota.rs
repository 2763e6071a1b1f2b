//! Tenant quotas with cohort borrowing (Kueue's semantics, simplified to one level of cohorts).
//!
//! A tenant may use up to its `nominal` quota; beyond it, it may borrow up to `borrow_limit`
//! of its cohort's idle nominal quota (the cohort's total use never exceeds the sum of its
//! members' nominal quotas). Work admitted by borrowing is marked and is the first to be
//! preempted when a lender needs its nominal quota back.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount of each quota-tracked resource. `u64::MAX` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceVector {
    /// Milli-GPUs.
    pub gpu_milli: u64,
    /// CPU millicores.
    pub cpu: u64,
    /// Memory MiB.
    pub mem: u64,
    /// TPUs.
    pub tpu: u64,
}

/// Names of the resources, in [`ResourceVector::get`] order.
pub const RESOURCES: [&str; 4] = ["gpu_milli", "cpu", "mem", "tpu"];

impl ResourceVector {
    /// Nothing.
    pub const ZERO: Self = Self {
        gpu_milli: 0,
        cpu: 0,
        mem: 0,
        tpu: 0,
    };
    /// Unlimited in every resource.
    pub const UNLIMITED: Self = Self {
        gpu_milli: u64::MAX,
        cpu: u64::MAX,
        mem: u64::MAX,
        tpu: u64::MAX,
    };

    /// Resource `i` (see [`RESOURCES`]).
    pub fn get(&self, i: usize) -> u64 {
        match i {
            0 => self.gpu_milli,
            1 => self.cpu,
            2 => self.mem,
            _ => self.tpu,
        }
    }

    fn slot(&mut self, i: usize) -> &mut u64 {
        match i {
            0 => &mut self.gpu_milli,
            1 => &mut self.cpu,
            2 => &mut self.mem,
            _ => &mut self.tpu,
        }
    }

    /// Saturating sum.
    pub fn saturating_add(self, o: Self) -> Self {
        let mut r = self;
        for i in 0..4 {
            *r.slot(i) = self.get(i).saturating_add(o.get(i));
        }
        r
    }

    /// Saturating difference.
    pub fn saturating_sub(self, o: Self) -> Self {
        let mut r = self;
        for i in 0..4 {
            *r.slot(i) = self.get(i).saturating_sub(o.get(i));
        }
        r
    }

    /// Scaled by `k` (saturating).
    pub fn times(self, k: u64) -> Self {
        let mut r = self;
        for i in 0..4 {
            *r.slot(i) = self.get(i).saturating_mul(k);
        }
        r
    }

    /// True when every resource is `<=` the other's.
    pub fn fits_in(&self, o: &Self) -> bool {
        (0..4).all(|i| self.get(i) <= o.get(i))
    }
}

impl fmt::Display for ResourceVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: u64| {
            if v == u64::MAX {
                "unlimited".to_string()
            } else {
                v.to_string()
            }
        };
        write!(
            f,
            "gpu_milli={} cpu={} mem={} tpu={}",
            show(self.gpu_milli),
            show(self.cpu),
            show(self.mem),
            show(self.tpu)
        )
    }
}

/// A tenant's quota.
///
/// ```
/// use atom_fabric::quota::{Quota, ResourceVector};
/// let q = Quota::gpus(4).with_borrow_limit(ResourceVector { gpu_milli: 2000, ..ResourceVector::ZERO });
/// assert_eq!(q.nominal.gpu_milli, 4000);
/// assert_eq!(q.cohort, "default");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Guaranteed amounts (lent to the cohort while idle).
    pub nominal: ResourceVector,
    /// Most that may be borrowed beyond `nominal`.
    #[serde(default)]
    pub borrow_limit: ResourceVector,
    /// The cohort whose idle quota may be borrowed.
    #[serde(default = "default_cohort")]
    pub cohort: String,
}

fn default_cohort() -> String {
    "default".to_string()
}

impl Quota {
    /// Whether a tenant using `used` may take `add` more: `Ok(borrowing)` (above nominal, within
    /// the borrow limit) or the first resource (of [`RESOURCES`]) that would exceed its limit.
    pub fn admits(
        &self,
        used: &ResourceVector,
        add: &ResourceVector,
    ) -> std::result::Result<bool, &'static str> {
        let mut borrows = false;
        for (i, name) in RESOURCES.iter().enumerate() {
            let a = add.get(i);
            if a == 0 {
                continue;
            }
            let new = used.get(i).saturating_add(a);
            if new > self.nominal.get(i) {
                if new - self.nominal.get(i) > self.borrow_limit.get(i) {
                    return Err(name);
                }
                borrows = true;
            }
        }
        Ok(borrows)
    }

    /// `gpus` whole GPUs, other resources unlimited, no borrowing, cohort `default`.
    pub fn gpus(gpus: u64) -> Self {
        Self {
            nominal: ResourceVector {
                gpu_milli: gpus.saturating_mul(1000),
                ..ResourceVector::UNLIMITED
            },
            borrow_limit: ResourceVector::ZERO,
            cohort: default_cohort(),
        }
    }

    /// Sets the borrow limit.
    pub fn with_borrow_limit(mut self, limit: ResourceVector) -> Self {
        self.borrow_limit = limit;
        self
    }

    /// Sets the cohort.
    pub fn with_cohort(mut self, cohort: &str) -> Self {
        self.cohort = cohort.to_string();
        self
    }

    /// Usage ceiling: nominal plus the borrow limit.
    pub fn ceiling(&self) -> ResourceVector {
        self.nominal.saturating_add(self.borrow_limit)
    }
}
